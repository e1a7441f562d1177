#pragma once
// DeepSeek V4 prompt encoder: a C++ port of the official preview encoding_dsv4.py (encode_messages),
// byte-exact with tests/data/encoding/golden-chat.jsonl. The spec is tests/data/encoding/FORMAT.md.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "chat/pyjson.h"

namespace dsv4 {
class Tokenizer;
}

namespace dsv4::chat {

// A rendered prompt as alternating pieces: the encoder's own markers and fixed instructions (control:
// their special tokens are parsed) and everything the caller supplied (message content, reasoning,
// tool names, arguments and schemas, tool results: always encoded as text), so content that spells a
// marker cannot forge a turn boundary or a tool call.
struct PromptPiece {
  std::string text;
  bool control = false;
};

class Prompt {
 public:
  Prompt& control(std::string_view s) { return add(s, true); }
  Prompt& text(std::string_view s) { return add(s, false); }
  const std::vector<PromptPiece>& pieces() const { return pieces_; }
  std::string str() const;  // the concatenated prompt text

 private:
  Prompt& add(std::string_view s, bool control);  // merges with the last piece of the same kind
  std::vector<PromptPiece> pieces_;
};

struct EncodeOptions {
  bool thinking = false;        // thinking_mode "thinking" (true) or "chat" (false)
  bool drop_thinking = true;    // drop reasoning of turns before the last user turn (off when tools exist)
  bool add_bos = true;          // write BOS; never written when a context is given
  std::string reasoning_effort; // "", "high" or "max"; only "max" in thinking mode changes the prompt
  Json context;                 // null or an array of already-encoded earlier messages
};

// Renders OpenAI-style messages (roles system, developer, user, assistant, tool, latest_reminder) to the
// prompt text. Messages must be parsed as ordered_json: tool schemas are written in their key order.
// Throws dsv4::Error on a malformed message (the message index and field are named), an unknown role,
// an invalid task or reasoning effort.
//
// Deviations from the reference, all on input it would crash on or mangle: non-string content is
// rejected instead of being written with Python's str(); a tool call's `arguments` may also be a JSON
// object (treated as its JSON text); invalid tasks are rejected even where no transition uses them.
// The format does not require a called function to be declared in `tools`, so that is not checked.
std::string render_prompt(const Json& messages, const EncodeOptions& opt);
// The same prompt as pieces; render_prompt(...) == render_prompt_pieces(...).str().
Prompt render_prompt_pieces(const Json& messages, const EncodeOptions& opt);

// Token ids of a rendered prompt: added tokens are matched in control pieces only. For content without
// marker text the ids equal tok.encode(prompt.str(), /*parse_special=*/true).
std::vector<int32_t> encode_prompt(const Tokenizer& tok, const Prompt& prompt);

// The golden vectors' "options" object: thinking_mode ("chat"|"thinking"), drop_thinking,
// add_default_bos_token, reasoning_effort (null|"high"|"max"), context (null|array). Missing keys take
// the EncodeOptions defaults; unknown keys are rejected.
EncodeOptions options_from_json(const Json& options);

}  // namespace dsv4::chat
