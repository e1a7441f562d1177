#pragma once
// Connection handling for a public-facing server. httplib gives every connection a thread for its whole
// life, with a read timeout per receive, so a client trickling one header line every few seconds holds a
// thread forever and a few hundred of them stop the server. Here one poller thread owns every
// connection that is idle (keep-alive) or still sending its headers; only a request whose headers are
// complete takes one of a fixed number of workers (or waits for one). Deadlines are per request, not
// per receive; beyond the connection cap a client gets 503 at once.
#include <httplib.h>

#include <cstdint>
#include <memory>

namespace dsv4::server {

struct Connection;

struct ConnectionLimits {
  int workers = 128;               // requests served at once (a stream holds one for its whole answer);
                                   // more wait, up to body_seconds, then 503
  int max_connections = 1024;      // open connections of any kind; clamped to the file-descriptor limit
  double header_seconds = 10;      // from a request's first byte to the end of its headers
  double body_seconds = 60;        // for its body, once the headers are in
  double keep_alive_seconds = 10;  // an idle connection between requests (outlives Node's 4 s)
  double write_seconds = 30;       // one write waiting for a client that does not read
};

struct ConnectionStats {
  int64_t open = 0, busy = 0, queued = 0;  // now: connections, requests served, waiting for a worker
  uint64_t rejected = 0, timed_out = 0;  // since start: 503 at a cap, 408 past a deadline
};

class HttpServer : public httplib::Server {
 public:
  explicit HttpServer(ConnectionLimits limits);
  ~HttpServer() override;

  // After bind: the listen backlog httplib fixes at 5 becomes the machine's (net.core.somaxconn).
  void widen_backlog();
  // Shuts every connection down (idle or being served): their workers see EOF and finish.
  void close_connections();
  ConnectionStats stats() const;
  const ConnectionLimits& limits() const;
  // The socket of the connection whose request the calling thread serves; -1 on other threads.
  static int current_socket();

 private:
  // httplib's accept loop calls this (through an inline task queue) for each accepted socket.
  bool process_and_close_socket(socket_t sock) override;
  bool serve_one(Connection& c);

  struct Pool;
  std::unique_ptr<Pool> pool_;
};

}  // namespace dsv4::server
