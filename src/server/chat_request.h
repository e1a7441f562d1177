#pragma once
// From API requests to the DeepSeek V4 prompt: every chat-style route (chat completions, responses,
// messages) converts its body to OpenAI-style messages and tools, and renders them with the same
// encoder and tokenizer path as `dsv4 run`, so greedy answers match the CLI.
#include <optional>
#include <string>
#include <vector>

#include "chat/encoder.h"
#include "server/common.h"

namespace dsv4::server {

struct ChatInputs {
  Json messages = Json::array();  // encoder roles; content strings; tool_calls with function.arguments
  Json tools = Json::array();     // OpenAI chat format [{type: function, function: {...}}], after tool_choice
  Json response_format;           // null, or the object the encoder writes into the system prompt
  bool thinking = true;
  std::string effort;             // encoder effort: "", "high" or "max"
};

struct ChatPrompt {
  Json messages;  // exactly what the encoder rendered
  chat::EncodeOptions enc;
  std::string text;
  std::vector<int32_t> ids;
};

// Renders and tokenizes; encoder errors (a malformed message) are 400s naming the message.
ChatPrompt render_chat(const Context& ctx, ChatInputs in);

// OpenAI chat `messages` to encoder messages: content parts joined, `developer` read as `system`
// (its OpenAI meaning), tool_calls and tool results checked. `param` names the field in errors.
Json openai_messages(const Json& messages, const std::string& param);

// A conversation that ends in an assistant message continues it (Anthropic's prefill, DeepSeek's
// `prefix: true`, vLLM's continue_final_message): the turn is left open (no end-of-sentence), so the answer
// goes on from its text, with any reasoning it carries already closed. An empty one is dropped (a new
// answer, thinking as asked) unless marked `prefix`; one with tool calls is a 400 naming `param`.
// Returns whether it continues.
bool continue_final_message(Json& messages, const std::string& param);

// Text of an OpenAI/Responses/Anthropic content value: a string, or an array of text parts (joined with
// blank lines, as the encoder joins tool-result parts). Non-text parts are a 400.
std::string content_text(const Json& content, const std::string& param);

// OpenAI chat `tools` (validated) filtered by `tool_choice` ("none" removes them, a named function keeps
// only that one; "auto" and "required" keep all: nothing forces a call).
Json select_tools(const Json* tools, const Json* tool_choice, const std::string& param);

// Tool names the prompt can carry: [A-Za-z0-9_.:-]{1,64}. OpenAI's and Anthropic's rule plus '.' and ':'
// (namespaced MCP names such as "github.create_issue"); nothing that could close the DSML name="..."
// attribute or spell a marker. Anything else is a 400 naming `param`.
bool valid_tool_name(std::string_view name);
void check_tool_name(const std::string& name, const std::string& param);

// A history tool call's arguments text: must hold a JSON object ("" reads as "{}"); returns the text
// to render. Anything else is a 400 naming `param`, on every dialect.
std::string check_arguments(const std::string& args, const std::string& param);

// Thinking-mode controls of the DeepSeek API: thinking {type: enabled|disabled},
// chat_template_kwargs {thinking|enable_thinking: bool}, reasoning_effort (none|minimal|low|medium|
// high|xhigh|max; "none" turns thinking off). Sets in.thinking and in.effort.
void apply_thinking(const Context& ctx, const Json& body, ChatInputs& in);
// One effort value to the encoder's ("" for low, "high", "max"); false when it means "no thinking".
bool map_effort(const std::string& v, const std::string& param, std::string& out);

}  // namespace dsv4::server
