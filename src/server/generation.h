#pragma once
// One request's generation seen from its HTTP handler (runtime/session.h does the turn itself), and
// the watch on the client's connection that cancels it when the client goes away.
#include <chrono>
#include <memory>

#include "runtime/session.h"
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

// A Session seen from its HTTP handler: refused requests become 400s before any byte is written, a
// client that went away or a server shutting down cancels it, and /metrics counts streams, TTFT and
// disconnects.
class Generation {
 public:
  Generation(Context& ctx, GenerationRequest req, OutputMode mode, ConnectionWatch watch);
  ~Generation();
  Generation(const Generation&) = delete;
  Generation& operator=(const Generation&) = delete;

  using Status = Session::Status;
  Status next(Delta& d, std::chrono::milliseconds wait);
  void cancel() { session_->cancel(); }
  // The client went away: cancel, counted once in /metrics.
  void client_gone();
  bool done() const { return session_->done(); }
  const Outcome& outcome() const { return session_->outcome(); }
  double time_to_first_token() const { return session_->time_to_first_token(); }

 private:
  static std::unique_ptr<Session> submit(Context& ctx, GenerationRequest req, OutputMode mode);

  Context& ctx_;
  ConnectionWatch watch_;
  std::unique_ptr<Session> session_;
  bool gone_ = false, reported_ = false;
};

}  // namespace dsv4::server
