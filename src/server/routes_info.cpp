// GET /health, /v1/models, /metrics; POST /tokenize, /detokenize.
#include <ctime>

#include "server/http.h"
#include "server/routes.h"

namespace dsv4::server {

namespace {

// /v1/models in the shape of the client asking: Anthropic's when the request carries anthropic-version
// (its SDK always sends it), else OpenAI's. No disk path is shown; `created` is the model folder's mtime.
bool anthropic(const httplib::Request& req) { return req.has_header("anthropic-version"); }

Json model_json(const Context& ctx, const httplib::Request& req) {
  const std::string& id = ctx.model_id();
  if (anthropic(req)) {
    char when[32];
    const time_t t = time_t(ctx.created);
    struct tm tm {};
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return {{"type", "model"}, {"id", id}, {"display_name", id}, {"created_at", when}};
  }
  return {{"id", id},
          {"object", "model"},
          {"created", ctx.created},
          {"owned_by", "dsv4"},
          {"max_model_len", ctx.sched.options().max_context}};
}

void list_models(const Context& ctx, const httplib::Request& req, httplib::Response& res) {
  Json data = Json::array({model_json(ctx, req)});
  if (!anthropic(req)) return send_json(res, {{"object", "list"}, {"data", data}});
  // Anthropic's page: limit (1-1000), after_id / before_id. One model: any page next to an id is empty.
  if (req.has_param("limit")) {
    const std::string l = req.get_param_value("limit");
    const bool digits = !l.empty() && l.size() <= 4 && l.find_first_not_of("0123456789") == std::string::npos;
    if (!digits || std::stoi(l) < 1 || std::stoi(l) > 1000)
      bad_request("limit", fmt::format("'limit' must be an integer between 1 and 1000, got '{}'", l));
  }
  if (req.has_param("after_id") || req.has_param("before_id")) data = Json::array();
  const Json first = data.empty() ? Json() : data[0]["id"];
  send_json(res, {{"data", data}, {"has_more", false}, {"first_id", first}, {"last_id", first}});
}

void tokenize(Context& ctx, const httplib::Request& http, httplib::Response& res) {
  const Json body = parse_body(http.body);
  ctx.check_model(body);
  // llama.cpp's {"content"} and vLLM's {"prompt"}; special tokens are parsed, BOS is never added.
  auto text = opt_string(body, "content", "");
  if (!text) text = opt_string(body, "prompt", "");
  if (!text) bad_request("content", "'content' (the text to tokenize) is required");
  const bool pieces = opt_bool(body, "with_pieces", "").value_or(false);
  const auto ids = ctx.tok().encode(*text, true);
  Json toks = Json::array();
  for (int32_t id : ids) {
    if (pieces) toks.push_back({{"id", id}, {"piece", ctx.tok().token_text(id)}});
    else toks.push_back(id);
  }
  send_json(res, {{"tokens", toks}, {"count", ids.size()}, {"max_model_len", ctx.sched.options().max_context}});
}

void detokenize(Context& ctx, const httplib::Request& http, httplib::Response& res) {
  const Json body = parse_body(http.body);
  const Json* t = opt_array(body, "tokens", "");
  if (!t) bad_request("tokens", "'tokens' (an array of token ids) is required");
  std::vector<int32_t> ids;
  const int64_t V = int64_t(ctx.tok().vocab_size());
  for (const auto& v : *t) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= V)
      bad_request("tokens", fmt::format("'tokens' must hold token ids in [0, {})", V));
    ids.push_back(int32_t(v.get<int64_t>()));
  }
  send_json(res, {{"content", ctx.tok().decode(ids)}});
}

}  // namespace

void add_info_routes(httplib::Server& svr, Context& ctx) {
  auto S = ErrorStyle::OpenAI, B = ErrorStyle::ByHeader;
  auto health = [&ctx](const httplib::Request&, httplib::Response& res) {
    const auto s = ctx.sched.stats();
    send_json(res, {{"status", "ok"}, {"active", s.active}, {"queued", s.queued}});
  };
  add_route(svr, ctx, "GET", "/health", "/health", S, health);
  add_route(svr, ctx, "GET", "/v1/health", "/health", S, health);
  auto models = [&ctx](const httplib::Request& req, httplib::Response& res) { list_models(ctx, req, res); };
  add_route(svr, ctx, "GET", "/v1/models", "/v1/models", B, models);
  add_route(svr, ctx, "GET", "/models", "/v1/models", B, models);
  add_route(svr, ctx, "GET", R"(/v1/models/(.+))", "/v1/models/{id}", B, [&ctx](const httplib::Request& req, httplib::Response& res) {
    const std::string id = req.matches[1];
    for (const auto& n : ctx.opt.model_names)
      if (n == id) return send_json(res, model_json(ctx, req));
    throw ApiError(404, fmt::format("The model '{}' does not exist", id), "model", "invalid_request_error",
                   "model_not_found");
  });
  add_route(svr, ctx, "GET", "/metrics", "/metrics", S, [&ctx](const httplib::Request&, httplib::Response& res) {
    const auto& o = ctx.sched.options();
    const ConnectionStats conns = ctx.connections ? ctx.connections() : ConnectionStats{};
    res.set_content(ctx.metrics.render(ctx.sched.stats(), conns, o.max_parallel, o.max_context),
                    "text/plain; version=0.0.4; charset=utf-8");
  });
  add_route(svr, ctx, "POST", "/tokenize", "/tokenize", S, [&ctx](auto& q, auto& r) { tokenize(ctx, q, r); });
  add_route(svr, ctx, "POST", "/detokenize", "/detokenize", S, [&ctx](auto& q, auto& r) { detokenize(ctx, q, r); });
}

}  // namespace dsv4::server
