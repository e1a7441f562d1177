#pragma once
// One request's generation seen from its HTTP thread. The Scheduler calls back on its own thread; the
// callback only queues the event, and the HTTP thread drains the queue, runs the completion parser
// (reasoning / content / tool calls) and writes. A client that goes away cancels the request.
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "chat/parser.h"
#include "server/common.h"

namespace httplib {
struct Request;
}

namespace dsv4::server {

// The client's TCP connection: the socket of the worker serving the request (HttpServer); a peer
// that closed the connection reads as EOF. Unknown connections (no HttpServer) count as alive.
class ConnectionWatch {
 public:
  ConnectionWatch() = default;
  static ConnectionWatch of(const httplib::Request& req);
  bool alive() const;

 private:
  int fd_ = -1;
};

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

struct Outcome {
  // "stop" (EOS or a stop string), "length", "tool_calls", "cancelled" or "error".
  std::string finish_reason;
  bool eos = false;           // ended on the end-of-sentence token
  std::string stop_sequence;  // the stop string that ended it
  std::string error;
  Usage usage;
};

enum class OutputMode { Raw, Chat, ChatThinking };

// Scheduler events to API output: reasoning / content / tool calls (through the completion parser, fed as
// `dsv4 run` feeds it), usage and the finish reason. Kept apart from the queue so synthetic events can
// test it.
class OutputParser {
 public:
  OutputParser(const Tokenizer& tok, OutputMode mode, int32_t eos_id, int32_t think_close_id,
               std::vector<std::string> stops, bool logprobs, int64_t prompt_tokens);
  // Adds the event's output to `d`. Returns false once the model's text turned out malformed: what was
  // parsed stands, the rest cannot be shown (the caller stops the generation).
  bool event(const GenerationEvent& e, Delta& d);
  bool done() const { return done_; }
  bool broken() const { return broken_; }
  const Outcome& outcome() const { return out_; }

 private:
  void feed(std::string_view text, Delta& d);
  void finish(const GenerationEvent& e, Delta& d);

  Tokenizer tok_;
  int32_t eos_id_, think_close_id_;
  std::vector<std::string> stops_;
  bool logprobs_;
  std::unique_ptr<chat::StreamParser> parser_;
  bool broken_ = false, done_ = false, in_reasoning_ = false, any_call_ = false;
  std::vector<int32_t> generated_;
  std::string raw_;  // every text byte the scheduler emitted (stop strings held back)
  Outcome out_;
};

class Generation {
 public:
  // Submits at once: a request the scheduler refuses throws ApiError (400) before any byte is written.
  Generation(Context& ctx, GenerationRequest req, OutputMode mode, ConnectionWatch watch);
  ~Generation();  // cancels a generation still running
  Generation(const Generation&) = delete;
  Generation& operator=(const Generation&) = delete;

  enum class Status { Data, Idle, Done };
  // Waits up to `wait`. Data: `d` holds new output. Idle: nothing new (a prefill step or a timeout).
  // Done: finished; `d` may hold the last output and outcome() is final.
  Status next(Delta& d, std::chrono::milliseconds wait);
  void cancel();
  // The client went away: cancel, counted once in /metrics.
  void client_gone();
  bool done() const { return out_.done(); }
  const Outcome& outcome() const { return out_.outcome(); }
  // Seconds from submission to the first token (0 before it).
  double time_to_first_token() const { return ttft_; }

 private:
  struct Queue {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<GenerationEvent> events;
  };

  Context& ctx_;
  ConnectionWatch watch_;
  std::shared_ptr<Queue> q_;
  uint64_t id_ = 0;
  OutputParser out_;
  bool cancelled_ = false, gone_ = false;
  std::chrono::steady_clock::time_point t0_;
  double ttft_ = 0;
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

}  // namespace dsv4::server
