#pragma once
// One turn of generation as its consumer sees it: a request submitted to the Scheduler, whose events
// (delivered on the scheduler's thread) are queued and read back on the consumer's thread, run through
// the completion parser (reasoning / content / DSML tool calls) into typed deltas, and end in an
// Outcome with a FinishReason and usage. `dsv4 run`, `dsv4 chat` and every server route use it; they
// only print or translate deltas and outcomes.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "chat/parser.h"
#include "core/error.h"
#include "runtime/scheduler.h"
#include "tokenizer/tokenizer.h"

namespace dsv4 {

struct Usage {
  int64_t prompt_tokens = 0, completion_tokens = 0, cached_tokens = 0, reasoning_tokens = 0;
};

struct TokenInfo {
  int32_t id;
  float logprob;
  std::vector<TokenLogprob> top;
};

struct Delta {
  std::string reasoning, content;
  std::vector<chat::ToolCall> tool_calls;
  std::vector<TokenInfo> tokens;  // only when logprobs were asked for
  bool empty() const { return reasoning.empty() && content.empty() && tool_calls.empty() && tokens.empty(); }
};

inline Delta& operator+=(Delta& a, chat::StreamParser::Delta&& b) {
  a.reasoning += b.reasoning;
  a.content += b.content;
  for (auto& c : b.tool_calls) a.tool_calls.push_back(std::move(c));
  return a;
}
inline Delta& operator+=(Delta& a, Delta&& b) {
  a.reasoning += b.reasoning;
  a.content += b.content;
  for (auto& c : b.tool_calls) a.tool_calls.push_back(std::move(c));
  for (auto& t : b.tokens) a.tokens.push_back(std::move(t));
  return a;
}

struct Outcome {
  FinishReason finish_reason = FinishReason::Stop;
  bool eos = false;           // ended on the end-of-sentence token
  std::string stop_sequence;  // the stop string that ended it
  std::string error;          // FinishReason::Error: what failed
  bool unavailable = false;   // ... because a peer rank is gone (dsv4::Unavailable)
  Usage usage;
};

enum class OutputMode { Raw, Chat, ChatThinking };

// Scheduler events to output: deltas through the completion parser, usage and the finish reason. Kept
// apart from the queue so synthetic events can test it.
class OutputParser {
 public:
  OutputParser(const Tokenizer& tok, OutputMode mode, int32_t eos_id, int32_t think_close_id,
               std::vector<std::string> stops, bool logprobs, int64_t prompt_tokens);
  // Adds the event's output to `d`. Returns false once the model's text turned out malformed: what was
  // parsed stands, the rest cannot be shown (the caller stops the generation).
  bool event(const GenerationEvent& e, Delta& d);
  bool done() const { return done_; }
  bool broken() const { return broken_; }
  // Why the text became unreadable (empty while it parses).
  const std::string& parse_error() const { return parse_error_; }
  const Outcome& outcome() const { return out_; }

 private:
  void feed(std::string_view text, Delta& d);
  void finish(const GenerationEvent& e, Delta& d);
  void malformed(const Error& e);

  Tokenizer tok_;
  int32_t eos_id_, think_close_id_;
  std::vector<std::string> stops_;
  bool logprobs_;
  std::unique_ptr<chat::StreamParser> parser_;
  bool broken_ = false, done_ = false, in_reasoning_ = false, any_call_ = false;
  std::string parse_error_;
  std::vector<int32_t> generated_;
  std::string raw_;  // every text byte the scheduler emitted (stop strings held back)
  Outcome out_;
};

class Session {
 public:
  // Submits at once; a request the scheduler refuses throws dsv4::Error.
  Session(Scheduler& sched, GenerationRequest req, OutputMode mode);
  ~Session();  // cancels a generation still running
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  enum class Status { Data, Idle, Done };
  // Waits up to `wait`. Data: `d` holds new output. Idle: nothing new (a prefill step or a timeout).
  // Done: finished; `d` may hold the last output and outcome() is final. Malformed output cancels.
  Status next(Delta& d, std::chrono::milliseconds wait);
  // Thread-safe (e.g. from a signal-watching thread); the Done event still follows.
  void cancel();
  bool done() const { return out_.done(); }
  const Outcome& outcome() const { return out_.outcome(); }
  const OutputParser& output() const { return out_; }
  uint64_t id() const { return id_; }  // the Scheduler's request id
  // Seconds from submission to the first token (0 before it).
  double time_to_first_token() const { return ttft_; }

 private:
  struct Queue {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<GenerationEvent> events;
  };

  Scheduler& sched_;
  std::shared_ptr<Queue> q_;
  uint64_t id_ = 0;
  OutputParser out_;
  std::atomic<bool> cancelled_{false};
  std::chrono::steady_clock::time_point t0_;
  double ttft_ = 0;
};

}  // namespace dsv4
