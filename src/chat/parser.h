#pragma once
// Completion parser for DeepSeek V4: splits reasoning from content and turns the DSML tool-call block
// into OpenAI-style calls, with exactly the acceptance rules of the official
// parse_message_from_completion_text (FORMAT.md §7, tests/data/encoding/golden-parse.jsonl).
//
// The input is what the model generated after the prompt's `<｜Assistant｜><think>` (thinking) or
// `<｜Assistant｜></think>` (chat), decoded with special tokens kept, normally ending with EOS.
#include <string>
#include <string_view>
#include <vector>

#include "chat/pyjson.h"

namespace dsv4::chat {

struct ToolCall {
  std::string name;
  std::string arguments;  // JSON object text as the reference builds it: {"k": v, ...}
};

struct ParsedCompletion {
  std::string content;
  std::string reasoning_content;  // always "" in chat mode
  std::vector<ToolCall> tool_calls;
};

// One-shot parse. Throws dsv4::Error naming the problem on malformed text (missing </think> or EOS,
// special tokens in content, DSML syntax errors, text after EOS, ...).
ParsedCompletion parse_completion(std::string_view text, bool thinking);

// {"role": "assistant", "content", "reasoning_content", "tool_calls": [{"type": "function",
// "function": {"name", "arguments"}}]}: the shape of golden-parse.jsonl's "result".
Json to_json(const ParsedCompletion& p);

// Incremental parser: feed the completion chunk by chunk (chunks may split UTF-8 characters and
// markers anywhere). Deltas never contain markup, half a marker or half a UTF-8 character, tool calls
// are emitted once each invoke is closed, and the concatenated deltas equal parse_completion() on the
// whole text. Errors are thrown as soon as they are certain (or at finish()); after an error, or after
// finish(), every further call throws.
class StreamParser {
 public:
  explicit StreamParser(bool thinking);

  struct Delta {
    std::string content;
    std::string reasoning;
    std::vector<ToolCall> tool_calls;
    bool empty() const { return content.empty() && reasoning.empty() && tool_calls.empty(); }
  };

  Delta push(std::string_view chunk);
  // End of the completion: flushes held-back text and applies the end-of-text rules.
  Delta finish();
  // End of a completion cut short (token limit, client abort): returns the held-back reasoning or
  // content as it stands, without the end-of-text checks, up to the first whole marker in it (a
  // partial one at the very end is kept as text). A tool call still open is dropped.
  Delta finish_truncated();

  // True once the text is complete (EOS seen, or the tool-call block closed and followed by EOS).
  bool done() const { return state_ == State::End; }

 private:
  enum class State { Reasoning, Content, ToolsOpenOrEnd, InvokeHeader, Param, AfterParam, Tail, End };

  void run(Delta& d, bool final);
  bool step(Delta& d, bool final);  // false when more text is needed
  void emit_text(Delta& d, size_t upto, bool whole);
  void complete_call(Delta& d);
  void compact();
  [[noreturn]] void error(std::string msg);

  bool thinking_;
  State state_;
  bool failed_ = false;
  bool closed_ = false;
  std::string error_;
  std::string buf_;      // text not yet consumed; buf_[pos_..] is pending
  size_t pos_ = 0;       // start of the current read
  size_t scan_ = 0;      // no stop string starts in [pos_, scan_)
  size_t emitted_ = 0;   // Reasoning/Content: end of the text already emitted
  std::string call_name_;
  std::vector<std::pair<std::string, std::pair<std::string, bool>>> call_args_;  // key, (value, string)
};

}  // namespace dsv4::chat
