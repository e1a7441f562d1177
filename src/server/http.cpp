#include "server/http.h"

#include <algorithm>
#include <cstdio>

namespace dsv4::server {

void send_json(httplib::Response& res, const Json& j, int status) {
  res.status = status;
  res.set_content(dump(j), "application/json");
}

ErrorStyle style_of(const httplib::Request& req, ErrorStyle route_style) {
  if (route_style != ErrorStyle::ByHeader) return route_style;
  return req.has_header("anthropic-version") ? ErrorStyle::Anthropic : ErrorStyle::OpenAI;
}

Json error_body(const ApiError& e, ErrorStyle style) {
  if (style == ErrorStyle::Anthropic) {
    // Anthropic's error types for the statuses this server returns.
    std::string type = e.status == 401   ? "authentication_error"
                       : e.status == 404 ? "not_found_error"
                       : e.status == 413 ? "request_too_large"
                       : e.status == 503 ? "overloaded_error"
                       : e.status >= 500 ? "api_error"
                                         : "invalid_request_error";
    return {{"type", "error"}, {"error", {{"type", type}, {"message", e.what()}}}};
  }
  Json err = {{"message", e.what()},
              {"type", e.type},
              {"param", e.param.empty() ? Json() : Json(e.param)},
              {"code", e.code.empty() ? Json() : Json(e.code)}};
  return {{"error", err}};
}

void send_error(httplib::Response& res, const ApiError& e, ErrorStyle style) {
  send_json(res, error_body(e, style), e.status);
  if (e.status == 401) res.set_header("WWW-Authenticate", "Bearer");
}

namespace {
bool same(std::string_view a, std::string_view b) {
  // Constant time in the key's content, so the key cannot be guessed byte by byte from timings.
  unsigned char diff = a.size() != b.size();
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
  return diff == 0;
}
}  // namespace

void check_api_key(const Context& ctx, const httplib::Request& req) {
  if (ctx.opt.api_key.empty()) return;
  std::string given;
  const std::string auth = req.get_header_value("Authorization");
  if (auth.size() > 7 && (auth.compare(0, 7, "Bearer ") == 0 || auth.compare(0, 7, "bearer ") == 0)) given = auth.substr(7);
  else if (req.has_header("x-api-key")) given = req.get_header_value("x-api-key");
  if (given.empty())
    throw ApiError(401, "Missing API key: send 'Authorization: Bearer KEY' (or 'x-api-key: KEY')", "", "",
                   "invalid_api_key");
  if (!same(given, ctx.opt.api_key)) throw ApiError(401, "Incorrect API key provided", "", "", "invalid_api_key");
}

httplib::Server::Handler route(Context& ctx, std::string name, ErrorStyle style, RouteFn fn) {
  return [&ctx, name = std::move(name), route_style = style, fn = std::move(fn)](const httplib::Request& req,
                                                                                 httplib::Response& res) {
    const ErrorStyle style = style_of(req, route_style);
    try {
      // Checked here, after httplib has read the body: a pre-routing reply would leave it on the wire.
      if (name != "/health") check_api_key(ctx, req);
      fn(req, res);
    } catch (const ApiError& e) {
      send_error(res, e, style);
    } catch (const Error& e) {
      send_error(res, ApiError(400, e.what()), style);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "dsv4 serve: %s %s: internal error: %s\n", req.method.c_str(), req.path.c_str(), e.what());
      send_error(res, ApiError(500, std::string("internal error: ") + e.what()), style);
    }
    ctx.metrics.request(name, res.status < 0 ? 200 : res.status);
  };
}

void add_route(httplib::Server& svr, Context& ctx, const std::string& method, const std::string& pattern,
               std::string name, ErrorStyle style, RouteFn fn) {
  auto h = route(ctx, std::move(name), style, std::move(fn));
  if (method == "GET") svr.Get(pattern, std::move(h));
  else if (method == "POST") svr.Post(pattern, std::move(h));
  else fail("add_route: unsupported method {}", method);
  ctx.routes.push_back({method, std::regex(pattern)});  // httplib matches whole paths the same way
}

std::string allowed_methods(const Context& ctx, const std::string& path) {
  bool get = false, post = false;
  for (const auto& r : ctx.routes)
    if (std::regex_match(path, r.path)) (r.method == "GET" ? get : post) = true;
  std::string out = get ? "GET, HEAD" : "";
  if (post) out += out.empty() ? "POST" : ", POST";
  return out;
}

namespace {
// A client's request id is echoed only when it is short plain text.
bool usable_request_id(const std::string& id) {
  if (id.empty() || id.size() > 128) return false;
  for (unsigned char c : id)
    if (c < 0x21 || c > 0x7e) return false;
  return true;
}
}  // namespace

void common_headers(const Context& ctx, const httplib::Request& req, httplib::Response& res) {
  std::string id = req.get_header_value("x-request-id");
  if (!usable_request_id(id)) id = random_id("req_");
  res.set_header("x-request-id", id);
  const bool anthropic = req.path.rfind("/v1/messages", 0) == 0 || req.has_header("anthropic-version");
  if (anthropic) res.set_header("request-id", id);  // the header Anthropic's clients read

  // CORS: "*" allows any origin; otherwise the request's Origin must be one of the listed ones.
  const auto& allowed = ctx.opt.cors_origins;
  if (allowed.empty()) return;
  const std::string origin = req.get_header_value("Origin");
  const bool any = std::find(allowed.begin(), allowed.end(), "*") != allowed.end();
  if (!any && (origin.empty() || std::find(allowed.begin(), allowed.end(), origin) == allowed.end())) return;
  res.set_header("Access-Control-Allow-Origin", any ? "*" : origin);
  if (!any) res.set_header("Vary", "Origin");
  res.set_header("Access-Control-Expose-Headers", "x-request-id, request-id, retry-after");
  if (req.method == "OPTIONS") {
    std::string methods = allowed_methods(ctx, req.path);
    res.set_header("Access-Control-Allow-Methods", methods.empty() ? "GET, POST, OPTIONS" : methods + ", OPTIONS");
    // Whatever headers the page asks to send (authorization, x-api-key, anthropic-version, ...).
    const std::string asked = req.get_header_value("Access-Control-Request-Headers");
    res.set_header("Access-Control-Allow-Headers",
                   asked.empty() ? "authorization, content-type, x-api-key, anthropic-version, x-request-id" : asked);
    res.set_header("Access-Control-Max-Age", "86400");
  }
}

void options_reply(const Context& ctx, const httplib::Request& req, httplib::Response& res) {
  const std::string methods = allowed_methods(ctx, req.path);
  if (methods.empty()) {
    res.status = 404;  // the error handler writes the body
    return;
  }
  res.status = 204;
  res.set_header("Allow", methods + ", OPTIONS");
}

bool SseWriter::text(const std::string& s) {
  if (!ok_) return false;
  ok_ = sink_.write(s.data(), s.size());
  last_ = std::chrono::steady_clock::now();
  return ok_;
}

double SseWriter::idle_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - last_).count();
}

void stream_response(Context& ctx, httplib::Response& res, std::shared_ptr<Generation> gen, StreamHooks hooks) {
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  res.set_chunked_content_provider(
      "text/event-stream", [&ctx, gen, hooks = std::move(hooks)](size_t, httplib::DataSink& sink) {
        SseWriter w(sink);
        if (hooks.on_start) hooks.on_start(w);
        // Short waits: a vanished client is noticed within one of them, even during a long prefill.
        const auto wait = std::chrono::milliseconds(
            int(std::clamp(ctx.opt.keep_alive_seconds * 1000 / 2, 10.0, 100.0)));
        while (w.ok()) {
          Delta d;
          const auto st = gen->next(d, wait);
          if (hooks.on_wait) hooks.on_wait(w);
          if (!d.empty()) hooks.on_delta(w, d);
          if (st == Generation::Status::Done) break;
          if (w.ok() && hooks.keep_alive && w.idle_seconds() >= ctx.opt.keep_alive_seconds) hooks.keep_alive(w);
        }
        if (!w.ok()) {
          gen->client_gone();
          return false;
        }
        hooks.on_done(w, gen->outcome());
        sink.done();
        return true;
      });
}

std::optional<ApiError> outcome_error(const Context& ctx, const Outcome& o) {
  if (o.finish_reason == FinishReason::Error && o.unavailable)
    return ApiError(503, "the model is unavailable: " + o.error);
  if (o.finish_reason == FinishReason::Error)
    return ApiError(500, "generation failed: " + o.error, "", "model_error", "model_error");
  if (o.finish_reason == FinishReason::Cancelled && ctx.stopping.load()) return ApiError(503, "the server is shutting down");
  return std::nullopt;
}

Delta run_to_end(Generation& gen) {
  Delta all;
  while (!gen.done()) {
    Delta d;
    gen.next(d, std::chrono::milliseconds(100));
    all += std::move(d);
  }
  return all;
}

Json token_logprob_json(const Tokenizer& tok, const TokenInfo& t) {
  auto one = [&](int32_t id, float lp) {
    const std::string s = tok.token_text(id);
    Json bytes = Json::array();
    for (unsigned char c : s) bytes.push_back(int(c));
    return Json{{"token", s}, {"logprob", lp}, {"bytes", bytes}};
  };
  Json j = one(t.id, t.logprob);
  Json top = Json::array();
  for (const auto& a : t.top) top.push_back(one(a.id, a.logprob));
  j["top_logprobs"] = top;
  return j;
}

}  // namespace dsv4::server
