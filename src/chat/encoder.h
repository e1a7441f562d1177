#pragma once
// DeepSeek V4 prompt encoder: a C++ port of the official preview encoding_dsv4.py (encode_messages),
// byte-exact with tests/data/encoding/golden-chat.jsonl. The spec is tests/data/encoding/FORMAT.md.
#include <string>

#include "chat/pyjson.h"

namespace dsv4::chat {

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

// The golden vectors' "options" object: thinking_mode ("chat"|"thinking"), drop_thinking,
// add_default_bos_token, reasoning_effort (null|"high"|"max"), context (null|array). Missing keys take
// the EncodeOptions defaults; unknown keys are rejected.
EncodeOptions options_from_json(const Json& options);

}  // namespace dsv4::chat
