#pragma once
// HTTP glue shared by the route families: JSON and error responses, the handler wrapper (errors,
// metrics), and server-sent events with keep-alives and client-disconnect cancellation.
#include <httplib.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "server/common.h"
#include "server/generation.h"

namespace dsv4::server {

// Anthropic's shape on its routes; ByHeader: Anthropic's when the request carries `anthropic-version`
// (routes both clients call, such as /v1/models), else OpenAI's.
enum class ErrorStyle { OpenAI, Anthropic, ByHeader };
ErrorStyle style_of(const httplib::Request& req, ErrorStyle route_style);

void send_json(httplib::Response& res, const Json& j, int status = 200);
void send_error(httplib::Response& res, const ApiError& e, ErrorStyle style);
Json error_body(const ApiError& e, ErrorStyle style);

// 401 unless the request carries the server's key (Authorization: Bearer, or x-api-key).
void check_api_key(const Context& ctx, const httplib::Request& req);

using RouteFn = std::function<void(const httplib::Request&, httplib::Response&)>;
// Wraps a route: the API key is checked (except on /health), ApiError and dsv4::Error become error responses in the route's style, anything else a
// 500; every request is counted under `name` in /metrics.
httplib::Server::Handler route(Context& ctx, std::string name, ErrorStyle style, RouteFn fn);

// Registers route(fn) for METHOD ("GET" or "POST") on `pattern` (an httplib regex) and remembers the
// path, so another method on it gets 405 and OPTIONS lists what it allows.
void add_route(httplib::Server& svr, Context& ctx, const std::string& method, const std::string& pattern,
               std::string name, ErrorStyle style, RouteFn fn);
// The methods `path` answers, as an Allow header ("GET, HEAD" or "POST"); empty for an unknown path.
std::string allowed_methods(const Context& ctx, const std::string& path);

// Headers on every response httplib writes: the request id (x-request-id, and Anthropic's request-id
// on its routes: the client's x-request-id echoed, else a new one) and CORS (--cors-origin).
void common_headers(const Context& ctx, const httplib::Request& req, httplib::Response& res);
// OPTIONS on a known path: 204 with Allow (the CORS preflight; common_headers adds the rest).
void options_reply(const Context& ctx, const httplib::Request& req, httplib::Response& res);

class SseWriter {
 public:
  explicit SseWriter(httplib::DataSink& sink) : sink_(sink) {}
  bool data(const Json& j) { return text("data: " + dump(j) + "\n\n"); }
  bool event(std::string_view name, const Json& j) {
    return text("event: " + std::string(name) + "\ndata: " + dump(j) + "\n\n");
  }
  bool text(const std::string& s);
  double idle_seconds() const;
  bool ok() const { return ok_; }

 private:
  httplib::DataSink& sink_;
  bool ok_ = true;
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
};

// Streams a generation as SSE from a chunked content provider: `on_delta` writes each batch of output,
// `keep_alive` writes a ping when nothing was written for the configured interval (a long prefill or a
// full queue), `on_done` writes the closing events. A failed write cancels the generation at once.
struct StreamHooks {
  std::function<void(SseWriter&)> on_start;
  std::function<void(SseWriter&)> on_wait;  // after every wait, output or not (before on_delta)
  std::function<void(SseWriter&, Delta&)> on_delta;
  std::function<void(SseWriter&)> keep_alive;
  std::function<void(SseWriter&, const Outcome&)> on_done;
};
void stream_response(Context& ctx, httplib::Response& res, std::shared_ptr<Generation> gen, StreamHooks hooks);

// A generation that ended without an answer: the model failed (500 model_error) or the server is
// shutting down (503). Empty for every other outcome.
std::optional<ApiError> outcome_error(const Context& ctx, const Outcome& o);

// Runs a generation to its end for a non-streaming response; a client that leaves cancels it.
Delta run_to_end(Generation& gen);

// Logprobs of one token in the chat-completions shape {token, logprob, bytes, top_logprobs}.
Json token_logprob_json(const Tokenizer& tok, const TokenInfo& t);

}  // namespace dsv4::server
