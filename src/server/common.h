#pragma once
// Shared by the server's route families: the request-level error type, typed field access that names
// the offending field, JSON output that never throws on odd bytes, and the server context.
#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

#include "chat/pyjson.h"
#include "core/error.h"
#include "runtime/scheduler.h"
#include "runtime/session.h"
#include "server/connections.h"
#include "server/metrics.h"
#include "server/server.h"

namespace dsv4::server {

using Json = chat::Json;  // ordered: tool schemas must keep their key order in the prompt

// A failed request: HTTP status plus the OpenAI error fields (Anthropic routes map `type` to theirs).
struct ApiError : Error {
  int status;
  std::string type, param, code;
  ApiError(int status, std::string message, std::string param = {}, std::string type = {}, std::string code = {})
      : Error(std::move(message)), status(status), type(std::move(type)), param(std::move(param)), code(std::move(code)) {
    if (this->type.empty()) this->type = default_type(status);
  }
  static std::string default_type(int status);
};

[[noreturn]] void bad_request(const std::string& param, const std::string& message);

// Typed optional fields of a JSON object; a present value of the wrong type is a 400 naming `where`.
const Json* field(const Json& obj, std::string_view key);  // null when absent or JSON null
std::optional<std::string> opt_string(const Json& obj, std::string_view key, const std::string& where);
std::optional<bool> opt_bool(const Json& obj, std::string_view key, const std::string& where);
std::optional<double> opt_number(const Json& obj, std::string_view key, const std::string& where);
std::optional<int64_t> opt_int(const Json& obj, std::string_view key, const std::string& where);
const Json* opt_object(const Json& obj, std::string_view key, const std::string& where);
const Json* opt_array(const Json& obj, std::string_view key, const std::string& where);
// "stop" in all its shapes: a string or an array of strings (none empty).
std::vector<std::string> opt_stop(const Json& obj, std::string_view key, const std::string& where);

// Parses a request body: valid UTF-8, valid JSON, an object at the top.
Json parse_body(const std::string& body);

// JSON text for the wire; bytes that are not UTF-8 (a token cut inside a character) become U+FFFD.
std::string dump(const Json& j);

std::string random_id(std::string_view prefix, size_t n = 24);
int64_t unix_time();

// A route the server registered: another method on its path is a 405, OPTIONS lists its methods.
struct KnownRoute {
  std::string method;
  std::regex path;
};

struct Context {
  Scheduler& sched;
  ServerOptions opt;
  Metrics metrics;
  std::atomic<bool> stopping{false};
  std::function<ConnectionStats()> connections;  // for /metrics; set by the Server
  std::vector<KnownRoute> routes;                 // filled while routes are registered, read-only after
  int64_t created;                                // /v1/models `created`: the model folder's mtime

  Context(Scheduler& s, ServerOptions o);
  const Tokenizer& tok() const { return sched.tokenizer(); }
  const std::string& model_id() const { return opt.model_names.front(); }
  // 404 for a model this server does not serve; absent means the served one.
  void check_model(const Json& body) const;
};

// Sampling fields shared by every generation route (OpenAI names; Anthropic passes the same keys).
// Starts from the server defaults (generation_config.json); a missing seed draws a random one.
// `logit_bias` is OpenAI's {"token id": bias in [-100, 100]}, accepted on every route alike.
// `temperature` must lie in [0, max_temperature]: 2 on OpenAI's routes, 1 on Anthropic's.
SamplingParams parse_sampling(const Context& ctx, const Json& body, double max_temperature = 2);

// vLLM's `ignore_eos` (for benchmarks: every request runs to max_tokens). Raw completions pass over
// EOS (its text is output). The chat routes instead ban EOS and the other markers that cannot occur
// inside an answer (BOS, which the model writes after EOS, <think>, the DSML marker, and </think> once
// reasoning is closed), as llama.cpp bans EOS: past any of them the completion could not be parsed,
// and would stop early. In thinking mode one </think> remains possible, and a second one still ends it.
void apply_ignore_eos(const Context& ctx, const Json& body, GenerationRequest& req, OutputMode mode);

// OpenAI's `logit_bias` of `body` (absent: empty): an object from token ids (decimal strings below
// `vocab`) to numbers in [-100, 100]; anything else is a 400 naming `logit_bias` or `logit_bias.<key>`.
std::vector<std::pair<int32_t, float>> parse_logit_bias(const Json& body, int64_t vocab);

// `n` (choices per request) must be absent or 1 on every route, whichever API defines it.
void check_n(const Json& body);

// The prompt must fit with room for one token; max_tokens defaults to the rest of the context.
void set_max_tokens(const Context& ctx, GenerationRequest& req, std::optional<int64_t> max_tokens, const char* param,
                    const char* prompt_param = "messages");

}  // namespace dsv4::server
