#include "server/generation.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstdio>

#include "server/connections.h"

namespace dsv4::server {

ConnectionWatch ConnectionWatch::of(const httplib::Request&) {
  // The handler runs on the worker that owns the request's connection (connections.h).
  ConnectionWatch w;
  w.fd_ = HttpServer::current_socket();
  return w;
}

bool ConnectionWatch::alive() const {
  if (fd_ < 0) return true;
  char c;
  const ssize_t n = recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n > 0) return true;  // a pipelined request: still there
  if (n == 0) return false;
  return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
}

Generation::Generation(Context& ctx, GenerationRequest req, OutputMode mode, ConnectionWatch watch)
    : ctx_(ctx), watch_(watch), session_(submit(ctx, std::move(req), mode)) {
  ctx_.metrics.stream_opened();
}

std::unique_ptr<Session> Generation::submit(Context& ctx, GenerationRequest req, OutputMode mode) {
  try {
    return std::make_unique<Session>(ctx.sched, std::move(req), mode);
  } catch (const Error& e) {
    throw ApiError(400, e.what());
  }
}

Generation::~Generation() { ctx_.metrics.stream_closed(); }

void Generation::client_gone() {
  if (gone_) return;
  gone_ = true;
  if (!done()) ctx_.metrics.disconnect();
  session_->cancel();
}

Generation::Status Generation::next(Delta& d, std::chrono::milliseconds wait) {
  if (done()) return Status::Done;
  const bool had_first = session_->time_to_first_token() > 0;
  const Status s = session_->next(d, wait);
  if (!done()) {
    if (ctx_.stopping.load()) session_->cancel();
    else if (!watch_.alive()) client_gone();
  }
  if (!had_first && session_->time_to_first_token() > 0) ctx_.metrics.first_token(session_->time_to_first_token());
  if (session_->output().broken() && !reported_) {
    reported_ = true;
    std::fprintf(stderr, "dsv4 serve: completion not well-formed: %s\n", session_->output().parse_error().c_str());
  }
  return s;
}

}  // namespace dsv4::server
