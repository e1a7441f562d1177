#include "server/server.h"

#include <httplib.h>

#include <chrono>
#include <thread>

#include "server/connections.h"
#include "server/http.h"
#include "server/routes.h"

namespace dsv4::server {

namespace {
ConnectionLimits limits_of(const ServerOptions& o) {
  ConnectionLimits l;
  l.workers = std::max(o.http_threads, 8);
  l.max_connections = std::max(o.max_connections, l.workers);
  l.body_seconds = o.timeout_seconds;
  l.header_seconds = std::min(10.0, o.timeout_seconds);
  return l;
}
}  // namespace

struct Server::Impl {
  Context ctx;
  HttpServer http;  // after ctx: its workers run handlers that use ctx, and are joined first
  Impl(Scheduler& s, ServerOptions o) : ctx(s, std::move(o)), http(limits_of(ctx.opt)) {}
};

Server::Server(Scheduler& sched, ServerOptions opt) {
  if (opt.model_names.empty()) fail("the server needs a model name");
  impl_ = std::make_unique<Impl>(sched, std::move(opt));
  Context& ctx = impl_->ctx;
  auto& svr = impl_->http;
  // Deadlines, the connection cap and the workers are HttpServer's (connections.h).
  svr.set_payload_max_length(ctx.opt.max_body_bytes);
  svr.set_keep_alive_max_count(100000);
  ctx.connections = [&svr] { return svr.stats(); };

  add_info_routes(svr, ctx);
  add_openai_routes(svr, ctx);
  add_responses_routes(svr, ctx);
  add_anthropic_routes(svr, ctx);

  // OPTIONS on any path: the CORS preflight (no API key: browsers send none with it).
  svr.Options(R"(.*)", [&ctx](const httplib::Request& req, httplib::Response& res) {
    options_reply(ctx, req, res);
    if (res.status == 204) ctx.metrics.request("OPTIONS", 204);
  });
  svr.set_post_routing_handler([&ctx](const httplib::Request& req, httplib::Response& res) { common_headers(ctx, req, res); });

  // Statuses httplib sets itself (no route, body too large, bad request line) get an API error body; a
  // known path asked with another method is a 405 naming the methods it allows.
  svr.set_error_handler(httplib::Server::HandlerWithResponse([&ctx](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    const ErrorStyle style =
        style_of(req, req.path.rfind("/v1/messages", 0) == 0 ? ErrorStyle::Anthropic : ErrorStyle::ByHeader);
    std::string msg;
    if (res.status == 404) {
      const std::string allow = allowed_methods(ctx, req.path);
      if (allow.empty()) {
        msg = fmt::format("Unknown route: {} {}", req.method, req.path);
      } else {
        res.status = 405;
        res.set_header("Allow", allow + ", OPTIONS");
        msg = fmt::format("Method {} is not allowed on {} (allowed: {})", req.method, req.path, allow);
      }
    } else if (res.status == 413) {
      msg = fmt::format("The request body is larger than the limit of {} bytes", ctx.opt.max_body_bytes);
    } else {
      msg = fmt::format("HTTP {}", res.status);
    }
    const int status = res.status;
    send_error(res, ApiError(status, msg), style);
    ctx.metrics.request("other", status);
    return httplib::Server::HandlerResponse::Handled;
  }));
}

Server::~Server() {
  // Handlers still running would wait for generations nobody cancels; stopping first ends them.
  stop();
}

int Server::bind() {
  auto& o = impl_->ctx.opt;
  int port = o.port;
  if (port == 0) {
    port = impl_->http.bind_to_any_port(o.host);
    if (port < 0) fail("cannot listen on {}: no free port", o.host);
  } else if (!impl_->http.bind_to_port(o.host, port)) {
    fail("cannot listen on {}:{} (address in use, or not an address of this machine)", o.host, port);
  }
  o.port = port;
  impl_->http.widen_backlog();
  return port;
}

void Server::run() {
  if (!impl_->ctx.stopping.load()) impl_->http.listen_after_bind();
}

void Server::stop() {
  Context& ctx = impl_->ctx;
  if (ctx.stopping.exchange(true)) return;
  // Streams see `stopping`, cancel their generations and end their responses; give them a moment.
  for (int i = 0; i < 100 && ctx.metrics.streams_active() > 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  impl_->http.stop();
  impl_->http.close_connections();
}

}  // namespace dsv4::server
