#include "server/connections.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <fmt/format.h>

#include "core/error.h"

namespace dsv4::server {

using Clock = std::chrono::steady_clock;

struct Connection {
  enum class State { Idle, Headers, Closing };
  int fd = -1;
  std::string buf;  // received and not yet consumed: the next request's first bytes
  State state = State::Idle;
  Clock::time_point deadline;
  Clock::time_point queued_at;  // headers complete, waiting for a worker
  int requests = 0;
};

namespace {

thread_local int t_current_socket = -1;

// Headers larger than this get 431: the poller holds them in memory for every slow client.
constexpr size_t kMaxHeaderBytes = 64 << 10;
// A rejected or timed-out connection is drained this long after its answer, so closing with unread
// bytes does not reset the connection before the client has read the status.
constexpr double kDrainSeconds = 1;

Clock::duration seconds(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

// A complete response written without httplib, for the statuses decided before or outside a route.
// The body satisfies both dialects' clients: OpenAI reads error.message/type/code, Anthropic
// type "error" and error.type/message.
std::string status_response(int status, const char* reason, const char* type, const std::string& message) {
  const std::string body = fmt::format(R"({{"type":"error","error":{{"type":"{}","code":"{}","message":"{}"}}}})",
                                       type, type, message);
  return fmt::format(
      "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{}\r\n{}",
      status, reason, body.size(), status == 503 ? "Retry-After: 1\r\n" : "", body);
}

void send_now(int fd, const std::string& s) {
  // Best effort and never blocking: a fresh socket's send buffer takes a short answer whole.
  (void)::send(fd, s.data(), s.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
}

// After a final answer the connection only drains what the client still sends, then the poller closes it.
void start_drain(Connection& c) {
  ::shutdown(c.fd, SHUT_WR);
  c.state = Connection::State::Closing;
  c.buf.clear();
  c.deadline = Clock::now() + seconds(kDrainSeconds);
}

void answer_and_drain(Connection& c, const std::string& response) {
  send_now(c.fd, response);
  start_drain(c);
}

bool endpoint(int fd, bool peer, std::string& ip, int& port) {
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  const int r = peer ? getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len)
                     : getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  char h[NI_MAXHOST], p[NI_MAXSERV];
  if (r != 0 ||
      getnameinfo(reinterpret_cast<sockaddr*>(&a), len, h, sizeof h, p, sizeof p, NI_NUMERICHOST | NI_NUMERICSERV))
    return false;
  ip = h;
  port = std::atoi(p);
  return true;
}

int somaxconn() {
  std::ifstream f("/proc/sys/net/core/somaxconn");
  int n = 0;
  return (f >> n) && n > 0 ? n : SOMAXCONN;
}

// One request's view of its connection for httplib: the bytes the poller already read come first,
// then the socket, with one deadline for the whole read (not one per receive).
class ConnStream final : public httplib::Stream {
 public:
  ConnStream(Connection& c, const ConnectionLimits& lim, const std::atomic<bool>& stopping,
             std::atomic<uint64_t>& timed_out)
      : c_(c), lim_(lim), stopping_(stopping), timed_out_count_(timed_out),
        deadline_(Clock::now() + seconds(lim.header_seconds)) {}

  void start_body() { deadline_ = Clock::now() + seconds(lim_.body_seconds); }
  bool timed_out() const { return timed_out_; }
  // What was read past this request (a pipelined next one).
  std::string leftover() const { return c_.buf.substr(pos_); }

  bool is_readable() const override { return pos_ < c_.buf.size() || wait(POLLIN, deadline_) == Wait::Ready; }
  bool is_writable() const override {
    return !timed_out_ && wait(POLLOUT, Clock::now() + seconds(lim_.write_seconds)) == Wait::Ready;
  }

  ssize_t read(char* ptr, size_t size) override {
    if (pos_ < c_.buf.size()) {
      const size_t n = std::min(size, c_.buf.size() - pos_);
      std::copy_n(c_.buf.data() + pos_, n, ptr);
      pos_ += n;
      return ssize_t(n);
    }
    if (timed_out_) return -1;
    for (;;) {
      if (const Wait w = wait(POLLIN, deadline_); w != Wait::Ready) {
        if (w == Wait::Timeout) time_out();
        return -1;
      }
      const ssize_t n = ::recv(c_.fd, ptr, size, MSG_DONTWAIT);
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) continue;
      return n;
    }
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (timed_out_) return ssize_t(size);  // httplib's own error answer after our 408: dropped
    const auto until = Clock::now() + seconds(lim_.write_seconds);
    for (;;) {
      if (wait(POLLOUT, until) != Wait::Ready) return -1;
      const ssize_t n = ::send(c_.fd, ptr, size, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) continue;
      return n;
    }
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override { endpoint(c_.fd, true, ip, port); }
  void get_local_ip_and_port(std::string& ip, int& port) const override { endpoint(c_.fd, false, ip, port); }
  socket_t socket() const override { return c_.fd; }

 private:
  enum class Wait { Ready, Timeout, Failed };
  // Polls in short slices so a server shutdown is noticed.
  Wait wait(short events, Clock::time_point until) const {
    for (;;) {
      if (stopping_) return Wait::Failed;
      const auto now = Clock::now();
      if (now >= until) return Wait::Timeout;
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(until - now).count();
      pollfd p{c_.fd, events, 0};
      const int r = ::poll(&p, 1, int(std::min<int64_t>(left, 200)));
      if (r > 0) return (p.revents & (events | POLLERR | POLLHUP)) != 0 ? Wait::Ready : Wait::Failed;
      if (r < 0 && errno != EINTR) return Wait::Failed;
    }
  }

  void time_out() {
    timed_out_ = true;
    ++timed_out_count_;
    send_now(c_.fd, status_response(408, "Request Timeout", "timeout",
                                    fmt::format("the request body did not arrive within {} s", lim_.body_seconds)));
  }

  Connection& c_;
  const ConnectionLimits& lim_;
  const std::atomic<bool>& stopping_;
  std::atomic<uint64_t>& timed_out_count_;
  Clock::time_point deadline_;
  size_t pos_ = 0;
  bool timed_out_ = false;
};

}  // namespace

struct HttpServer::Pool {
  HttpServer& svr;
  ConnectionLimits lim;
  std::atomic<bool> stopping{false};
  std::atomic<uint64_t> rejected{0}, timed_out{0};
  int ep = -1, wake = -1;

  // Every open socket, so close_connections reaches those being served too. Sockets are closed
  // under this lock, so a shut-down number is never one the kernel has handed out again.
  std::mutex open_mu;
  std::unordered_set<int> open;

  // Handed to the poller by the accept loop and by workers.
  std::mutex in_mu;
  std::vector<int> accepted;
  std::vector<std::unique_ptr<Connection>> returned;

  // Owned by the poller thread.
  std::unordered_map<int, std::unique_ptr<Connection>> watched;

  // Requests with complete headers, for the workers.
  std::mutex work_mu;
  std::condition_variable work_cv, idle_cv;
  std::deque<std::unique_ptr<Connection>> work;
  int busy = 0;

  std::thread poller;
  std::vector<std::thread> workers;

  Pool(HttpServer& s, ConnectionLimits l) : svr(s), lim(l) {}

  void close_socket(int fd) {
    std::lock_guard lk(open_mu);
    open.erase(fd);
    ::shutdown(fd, SHUT_RDWR);
    ::close(fd);
  }

  void notify() {
    const uint64_t one = 1;
    (void)!::write(wake, &one, sizeof one);
  }

  void hand_back(std::unique_ptr<Connection> c) {
    {
      std::lock_guard lk(in_mu);
      returned.push_back(std::move(c));
    }
    notify();
  }

  // --- poller thread ---

  void watch(std::unique_ptr<Connection> c) {
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.fd = c->fd;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) return close_socket(c->fd);
    Connection& ref = *c;
    watched[c->fd] = std::move(c);
    if (ref.state == Connection::State::Headers) headers_arrived(ref);
  }

  void drop(Connection& c) {
    const int fd = c.fd;
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
    watched.erase(fd);
    close_socket(fd);
  }

  void reject(Connection& c, int status, const char* reason, const char* type, const std::string& msg) {
    answer_and_drain(c, status_response(status, reason, type, msg));
  }

  void admit(int fd) {
    auto c = std::make_unique<Connection>();
    c->fd = fd;
    c->deadline = Clock::now() + seconds(lim.header_seconds);
    size_t n;
    {
      std::lock_guard lk(open_mu);
      n = open.size();
    }
    if (n > size_t(lim.max_connections)) {
      // At the cap, an idle connection (no request under way) makes room before a new one is refused.
      Connection* idle = nullptr;
      for (auto& [_, w] : watched)
        if (w->state == Connection::State::Idle && (!idle || w->deadline < idle->deadline)) idle = w.get();
      Connection& ref = *c;
      watch(std::move(c));
      if (idle) {
        drop(*idle);
      } else {
        ++rejected;
        reject(ref, 503, "Service Unavailable", "server_busy",
               fmt::format("the server has {} connections open, its limit", lim.max_connections));
      }
      return;
    }
    watch(std::move(c));
  }

  void headers_arrived(Connection& c) {
    if (c.buf.find("\r\n\r\n") == std::string::npos) {
      if (c.buf.size() > kMaxHeaderBytes) {
        ++rejected;
        reject(c, 431, "Request Header Fields Too Large", "invalid_request_error",
               fmt::format("the request headers exceed {} bytes", kMaxHeaderBytes));
      }
      return;
    }
    epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr);
    c.queued_at = Clock::now();
    auto node = watched.extract(c.fd);
    std::lock_guard lk(work_mu);
    work.push_back(std::move(node.mapped()));
    work_cv.notify_one();
  }

  void readable(Connection& c) {
    char tmp[16384];
    const ssize_t n = ::recv(c.fd, tmp, sizeof tmp, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) return drop(c);
    if (n < 0 || c.state == Connection::State::Closing) return;
    if (c.state == Connection::State::Idle) {
      c.state = Connection::State::Headers;
      c.deadline = Clock::now() + seconds(lim.header_seconds);
    }
    c.buf.append(tmp, size_t(n));
    headers_arrived(c);
  }

  void expire() {
    const auto now = Clock::now();
    std::vector<Connection*> due;
    for (auto& [_, c] : watched)
      if (c->deadline <= now) due.push_back(c.get());
    for (Connection* c : due) {
      if (c->state == Connection::State::Headers) {
        ++timed_out;
        reject(*c, 408, "Request Timeout", "timeout",
               fmt::format("the request headers did not arrive within {} s", lim.header_seconds));
      } else {
        drop(*c);  // idle past the keep-alive time, or drained
      }
    }
  }

  void poll_loop() {
    epoll_event evs[64];
    auto last_scan = Clock::now();
    while (!stopping) {
      const int n = epoll_wait(ep, evs, 64, 100);
      if (stopping) break;
      for (int i = 0; i < n; ++i) {
        const int fd = evs[i].data.fd;
        if (fd == wake) {
          uint64_t v;
          (void)!::read(wake, &v, sizeof v);
          std::vector<int> acc;
          std::vector<std::unique_ptr<Connection>> back;
          {
            std::lock_guard lk(in_mu);
            acc.swap(accepted);
            back.swap(returned);
          }
          for (auto& c : back) watch(std::move(c));
          for (int a : acc) admit(a);
        } else if (auto it = watched.find(fd); it != watched.end()) {
          readable(*it->second);
        }
      }
      if (Clock::now() - last_scan > std::chrono::milliseconds(50)) {
        expire();
        last_scan = Clock::now();
      }
    }
    for (auto& [fd, _] : watched) close_socket(fd);
    watched.clear();
  }

  // --- workers ---

  void work_loop() {
    for (;;) {
      std::unique_ptr<Connection> c;
      {
        std::unique_lock lk(work_mu);
        work_cv.wait(lk, [&] { return stopping || !work.empty(); });
        if (work.empty()) return;
        c = std::move(work.front());
        work.pop_front();
        ++busy;
      }
      bool keep = false;
      if (stopping) {
      } else if (Clock::now() - c->queued_at > seconds(lim.body_seconds)) {
        ++rejected;  // every worker was held by other requests for the whole timeout
        answer_and_drain(*c, status_response(503, "Service Unavailable", "server_busy",
                                             fmt::format("no request worker was free for {} s (--http-threads {})",
                                                         lim.body_seconds, lim.workers)));
        keep = true;
      } else {
        keep = svr.serve_one(*c) || c->state == Connection::State::Closing;
      }
      if (keep && !stopping) hand_back(std::move(c));
      else close_socket(c->fd);
      std::lock_guard lk(work_mu);
      if (--busy == 0 && work.empty()) idle_cv.notify_all();
    }
  }
};

HttpServer::HttpServer(ConnectionLimits limits) {
  // Room for every connection plus the checkpoint's shards and the process's own files.
  rlimit rl{};
  constexpr rlim_t kReserve = 256;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    const rlim_t want = rlim_t(limits.max_connections) + kReserve;
    if (rl.rlim_cur < want && rl.rlim_cur < rl.rlim_max) {
      rl.rlim_cur = std::min(want, rl.rlim_max);
      setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur < want) {
      const int cap = int(std::max<rlim_t>(16, rl.rlim_cur > kReserve ? rl.rlim_cur - kReserve : 16));
      std::fprintf(stderr, "dsv4 serve: the open-file limit (%llu) allows %d connections, not %d\n",
                   (unsigned long long)rl.rlim_cur, cap, limits.max_connections);
      limits.max_connections = cap;
    }
  }
  pool_ = std::make_unique<Pool>(*this, limits);
  Pool& p = *pool_;
  p.ep = epoll_create1(EPOLL_CLOEXEC);
  p.wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (p.ep < 0 || p.wake < 0) fail("dsv4 serve: epoll/eventfd unavailable: {}", std::strerror(errno));
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = p.wake;
  epoll_ctl(p.ep, EPOLL_CTL_ADD, p.wake, &ev);

  // httplib's accept loop hands each socket to process_and_close_socket through its task queue; run
  // inline, that only passes the socket to the poller. Its shutdown waits for the requests in flight.
  struct Inline : httplib::TaskQueue {
    Pool& pool;
    explicit Inline(Pool& p) : pool(p) {}
    void enqueue(std::function<void()> fn) override { fn(); }
    void shutdown() override {
      std::unique_lock lk(pool.work_mu);
      pool.idle_cv.wait(lk, [&] { return pool.busy == 0 && pool.work.empty(); });
    }
  };
  new_task_queue = [&p] { return new Inline(p); };

  p.poller = std::thread([&p] { p.poll_loop(); });
  for (int i = 0; i < limits.workers; ++i) p.workers.emplace_back([&p] { p.work_loop(); });
}

HttpServer::~HttpServer() {
  Pool& p = *pool_;
  p.stopping = true;
  p.notify();
  p.work_cv.notify_all();
  p.poller.join();
  for (auto& t : p.workers) t.join();
  for (auto& c : p.work) p.close_socket(c->fd);
  {
    std::lock_guard lk(p.in_mu);
    for (int fd : p.accepted) p.close_socket(fd);
    for (auto& c : p.returned) p.close_socket(c->fd);
  }
  ::close(p.ep);
  ::close(p.wake);
}

void HttpServer::widen_backlog() {
  if (svr_sock_ != INVALID_SOCKET) ::listen(svr_sock_, somaxconn());
}

void HttpServer::close_connections() {
  Pool& p = *pool_;
  p.stopping = true;
  {
    std::lock_guard lk(p.open_mu);
    for (int fd : p.open) ::shutdown(fd, SHUT_RDWR);
  }
  p.notify();
  p.work_cv.notify_all();
}

ConnectionStats HttpServer::stats() const {
  Pool& p = *pool_;
  ConnectionStats s;
  {
    std::lock_guard lk(p.open_mu);
    s.open = int64_t(p.open.size());
  }
  {
    std::lock_guard lk(p.work_mu);
    s.busy = p.busy;
    s.queued = int64_t(p.work.size());
  }
  s.rejected = p.rejected.load();
  s.timed_out = p.timed_out.load();
  return s;
}

const ConnectionLimits& HttpServer::limits() const { return pool_->lim; }

int HttpServer::current_socket() { return t_current_socket; }

bool HttpServer::process_and_close_socket(socket_t sock) {
  const int one = 1;
  setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // SSE events leave at once
  Pool& p = *pool_;
  {
    std::lock_guard lk(p.open_mu);
    p.open.insert(sock);
  }
  {
    std::lock_guard lk(p.in_mu);
    p.accepted.push_back(sock);
  }
  p.notify();
  return true;
}

// Serves the request whose headers the poller has; true when the connection stays open for the next.
bool HttpServer::serve_one(Connection& c) {
  Pool& p = *pool_;
  ConnStream strm(c, p.lim, p.stopping, p.timed_out);
  ++c.requests;
  const bool close_connection = p.stopping || size_t(c.requests) >= keep_alive_max_count_;
  bool closed = false, ok = false;
  t_current_socket = c.fd;
  try {
    ok = process_request(strm, close_connection, closed, [&strm](httplib::Request&) { strm.start_body(); });
  } catch (...) {
    ok = false;
  }
  t_current_socket = -1;
  if (strm.timed_out()) {
    start_drain(c);  // the stream sent its 408
    return false;
  }
  c.state = Connection::State::Idle;
  if (!ok || closed || close_connection) return false;
  c.buf = strm.leftover();
  if (!c.buf.empty()) c.state = Connection::State::Headers;
  c.deadline = Clock::now() + seconds(c.buf.empty() ? p.lim.keep_alive_seconds : p.lim.header_seconds);
  return true;
}

}  // namespace dsv4::server
