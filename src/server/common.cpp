#include "server/common.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <random>

#include <sys/stat.h>

#include "chat/markers.h"
#include "core/json.h"

namespace dsv4::server {

std::string ApiError::default_type(int status) {
  switch (status) {
    case 401: return "invalid_request_error";  // OpenAI's type for a bad key (code: invalid_api_key)
    case 404: return "not_found_error";
    case 413: return "request_too_large";
    case 503: return "overloaded_error";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
  }
}

void bad_request(const std::string& param, const std::string& message) { throw ApiError(400, message, param); }

const Json* field(const Json& obj, std::string_view key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

namespace {
std::string name_of(const std::string& where, std::string_view key) {
  return where.empty() ? std::string(key) : where + "." + std::string(key);
}
[[noreturn]] void wrong_type(const std::string& where, std::string_view key, const char* want, const Json& v) {
  const std::string n = name_of(where, key);
  bad_request(n, fmt::format("'{}' must be {}, got {}", n, want, v.type_name()));
}
}  // namespace

std::optional<std::string> opt_string(const Json& obj, std::string_view key, const std::string& where) {
  const Json* v = field(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_string()) wrong_type(where, key, "a string", *v);
  return v->get<std::string>();
}

std::optional<bool> opt_bool(const Json& obj, std::string_view key, const std::string& where) {
  const Json* v = field(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) wrong_type(where, key, "a boolean", *v);
  return v->get<bool>();
}

std::optional<double> opt_number(const Json& obj, std::string_view key, const std::string& where) {
  const Json* v = field(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_number()) wrong_type(where, key, "a number", *v);
  const double d = v->get<double>();
  if (!std::isfinite(d)) wrong_type(where, key, "a finite number", *v);
  return d;
}

std::optional<int64_t> opt_int(const Json& obj, std::string_view key, const std::string& where) {
  const Json* v = field(obj, key);
  if (!v) return std::nullopt;
  // 5.0 is an integer to JavaScript clients; 5.5 is not.
  if (v->is_number_float()) {
    const double d = v->get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9e15) return int64_t(d);
  }
  if (!v->is_number_integer()) wrong_type(where, key, "an integer", *v);
  if (v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(INT64_MAX)) wrong_type(where, key, "a 64-bit integer", *v);
  return v->get<int64_t>();
}

const Json* opt_object(const Json& obj, std::string_view key, const std::string& where) {
  const Json* v = field(obj, key);
  if (v && !v->is_object()) wrong_type(where, key, "an object", *v);
  return v;
}

const Json* opt_array(const Json& obj, std::string_view key, const std::string& where) {
  const Json* v = field(obj, key);
  if (v && !v->is_array()) wrong_type(where, key, "an array", *v);
  return v;
}

std::vector<std::string> opt_stop(const Json& obj, std::string_view key, const std::string& where) {
  const Json* v = field(obj, key);
  std::vector<std::string> out;
  if (!v) return out;
  const std::string n = name_of(where, key);
  if (v->is_string()) {
    out.push_back(v->get<std::string>());
  } else if (v->is_array()) {
    for (const auto& s : *v) {
      if (!s.is_string()) bad_request(n, fmt::format("'{}' must be a string or an array of strings", n));
      out.push_back(s.get<std::string>());
    }
  } else {
    wrong_type(where, key, "a string or an array of strings", *v);
  }
  for (const auto& s : out)
    if (s.empty()) bad_request(n, fmt::format("'{}' must not contain an empty string", n));
  if (out.size() > 16) bad_request(n, fmt::format("'{}' may hold at most 16 sequences", n));
  return out;
}

Json parse_body(const std::string& body) {
  if (const size_t at = chat::utf8_error_offset(body); at != std::string_view::npos)
    throw ApiError(400, fmt::format("the request body is not valid UTF-8 (byte {})", at));
  Json j;
  try {
    j = parse_json<Json>(body, "the request body");
  } catch (const JsonTooDeep& e) {
    throw ApiError(400, e.what(), e.path);
  } catch (const nlohmann::json::exception& e) {
    throw ApiError(400, fmt::format("the request body is not valid JSON: {}", e.what()));
  }
  if (!j.is_object()) throw ApiError(400, fmt::format("the request body must be a JSON object, got {}", j.type_name()));
  return j;
}

std::string dump(const Json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

std::string random_id(std::string_view prefix, size_t n) {
  static const char kAlnum[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string s(prefix);
  for (size_t i = 0; i < n; ++i) s += kAlnum[rng() % 62];
  return s;
}

int64_t unix_time() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

namespace {
int64_t mtime_of(const std::string& dir) {
  struct stat st {};
  return !dir.empty() && ::stat(dir.c_str(), &st) == 0 ? int64_t(st.st_mtime) : unix_time();
}
}  // namespace

Context::Context(Scheduler& s, ServerOptions o) : sched(s), opt(std::move(o)), created(mtime_of(opt.model_dir)) {}

void Context::check_model(const Json& body) const {
  auto m = opt_string(body, "model", "");
  if (!m || m->empty()) return;
  for (const auto& n : opt.model_names)
    if (*m == n) return;
  throw ApiError(404, fmt::format("The model '{}' does not exist; this server serves '{}'", *m, model_id()), "model",
                 "invalid_request_error", "model_not_found");
}

void check_n(const Json& body) {
  if (auto n = opt_int(body, "n", ""); n && *n != 1) bad_request("n", "'n' must be 1 (one choice per request)");
}

std::vector<std::pair<int32_t, float>> parse_logit_bias(const Json& body, int64_t vocab) {
  std::vector<std::pair<int32_t, float>> out;
  const Json* lb = opt_object(body, "logit_bias", "");
  if (!lb) return out;
  for (const auto& [key, v] : lb->items()) {
    const std::string w = "logit_bias." + key;
    const bool digits = !key.empty() && key.size() <= 10 && key.find_first_not_of("0123456789") == std::string::npos;
    const int64_t id = digits ? std::stoll(key) : -1;
    if (!digits || id >= vocab)
      bad_request(w, fmt::format("'{}': the keys of 'logit_bias' must be token ids in [0, {})", w, vocab));
    if (!v.is_number()) bad_request(w, fmt::format("'{}' must be a number, got {}", w, v.type_name()));
    const double b = v.get<double>();
    if (!(b >= -100 && b <= 100)) bad_request(w, fmt::format("'{}' must be between -100 and 100", w));
    out.emplace_back(int32_t(id), float(b));
  }
  return out;
}

SamplingParams parse_sampling(const Context& ctx, const Json& body, double max_temperature) {
  SamplingParams p = ctx.opt.default_sampling;
  if (auto v = opt_number(body, "temperature", "")) p.temperature = float(*v);
  if (auto v = opt_number(body, "top_p", "")) p.top_p = float(*v);
  if (auto v = opt_int(body, "top_k", "")) {
    if (*v < 0 && *v != -1) bad_request("top_k", "'top_k' must be 0 (or -1) for off, or a positive integer");
    p.top_k = *v < 0 ? 0 : int(std::min<int64_t>(*v, 1 << 30));
  }
  if (auto v = opt_number(body, "min_p", "")) p.min_p = float(*v);
  if (auto v = opt_number(body, "presence_penalty", "")) p.presence_penalty = float(*v);
  if (auto v = opt_number(body, "frequency_penalty", "")) p.frequency_penalty = float(*v);
  if (auto v = opt_number(body, "repetition_penalty", "")) p.repetition_penalty = float(*v);
  if (auto v = opt_int(body, "seed", "")) {
    p.seed = uint64_t(*v);
  } else {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    p.seed = rng();
  }
  p.logit_bias = parse_logit_bias(body, ctx.sched.model().config().vocab_size);
  // The Sampler's checks, with the field named.
  auto range = [](bool ok, const char* name, const char* what) {
    if (!ok) bad_request(name, fmt::format("'{}' must be {}", name, what));
  };
  // The APIs' own ranges (OpenAI 0-2, Anthropic 0-1): a client sending more has a bug to hear about.
  if (!(p.temperature >= 0 && p.temperature <= max_temperature))
    bad_request("temperature", fmt::format("'temperature' must be between 0 and {}, got {}", max_temperature, p.temperature));
  range(p.top_p > 0 && p.top_p <= 1, "top_p", "in (0, 1]");
  range(p.min_p >= 0 && p.min_p <= 1, "min_p", "in [0, 1]");
  range(p.presence_penalty >= -2 && p.presence_penalty <= 2, "presence_penalty", "between -2 and 2");
  range(p.frequency_penalty >= -2 && p.frequency_penalty <= 2, "frequency_penalty", "between -2 and 2");
  range(p.repetition_penalty > 0, "repetition_penalty", "positive");
  return p;
}

void apply_ignore_eos(const Context& ctx, const Json& body, GenerationRequest& req, OutputMode mode) {
  req.ignore_eos = opt_bool(body, "ignore_eos", "").value_or(false);
  if (!req.ignore_eos || mode == OutputMode::Raw) return;
  const auto& cfg = ctx.sched.model().config();
  std::vector<int64_t> ban = {cfg.eos_token_id, cfg.bos_token_id};
  for (std::string_view m : {chat::marker::kThinkOpen, chat::marker::kDsml}) ban.push_back(ctx.tok().token_id(m));
  if (mode == OutputMode::Chat) ban.push_back(ctx.tok().token_id(chat::marker::kThinkClose));
  for (int64_t id : ban)
    if (id >= 0 && id < cfg.vocab_size) req.sampling.logit_bias.emplace_back(int32_t(id), -100.0f);  // -100 bans
}

void set_max_tokens(const Context& ctx, GenerationRequest& req, std::optional<int64_t> max_tokens, const char* param,
                    const char* prompt_param) {
  const int64_t ctx_len = ctx.sched.options().max_context, L = int64_t(req.prompt.size());
  if (L == 0) bad_request(prompt_param, "the prompt is empty");
  if (L >= ctx_len)
    throw ApiError(400,
                   fmt::format("This model's maximum context length is {} tokens, but the prompt has {} tokens",
                               ctx_len, L),
                   prompt_param, "invalid_request_error", "context_length_exceeded");
  if (max_tokens && *max_tokens < 1) bad_request(param, fmt::format("'{}' must be at least 1", param));
  req.max_tokens = int(std::min<int64_t>(max_tokens.value_or(ctx_len - L), ctx_len - L));
}

}  // namespace dsv4::server
