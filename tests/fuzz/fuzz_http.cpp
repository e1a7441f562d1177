// HTTP requests through the real routes and handlers of `dsv4 serve`, without sockets: a subclass of
// httplib::Server feeds the bytes to its (protected) process_request over an in-memory Stream.
// Byte 0 picks the route (kRoutes; the last choice sends the rest as a raw HTTP request instead),
// the rest is the JSON body. The bundled dsv4-nano generates, in a context of kContext tokens so
// generation stays cheap. A crash, a malformed response or a 500 "internal error" (an exception the
// routes did not turn into a request error) is a finding.
#include <httplib.h>

#include <memory>

#include "core/thread_pool.h"
#include "fuzz_util.h"
#include "model/transformer.h"
#include "runtime/scheduler.h"
#include "server/common.h"
#include "server/routes.h"

using namespace dsv4;

namespace {

constexpr const char* kRoutes[] = {"/v1/chat/completions",       "/v1/completions", "/v1/responses",
                                   "/v1/messages",               "/v1/messages/count_tokens",
                                   "/v1/chat/render",            "/tokenize",       "/detokenize"};
constexpr size_t kNumRoutes = std::size(kRoutes);
constexpr int64_t kContext = 48;

// A connection whose request is `in` and whose response is collected in `out`.
class MemStream : public httplib::Stream {
 public:
  explicit MemStream(std::string_view in) : in_(in) {}
  bool is_readable() const override { return true; }
  bool is_writable() const override { return true; }
  ssize_t read(char* p, size_t n) override {
    n = std::min(n, in_.size() - pos_);
    std::memcpy(p, in_.data() + pos_, n);
    pos_ += n;
    return ssize_t(n);
  }
  ssize_t write(const char* p, size_t n) override {
    out.append(p, n);
    return ssize_t(n);
  }
  void get_remote_ip_and_port(std::string& ip, int& port) const override { ip = "127.0.0.1", port = 40000; }
  void get_local_ip_and_port(std::string& ip, int& port) const override { ip = "127.0.0.1", port = 8080; }
  socket_t socket() const override { return INVALID_SOCKET; }
  std::string out;

 private:
  std::string_view in_;
  size_t pos_ = 0;
};

class FuzzServer : public httplib::Server {
 public:
  std::string handle(std::string_view request) {
    MemStream s(request);
    bool closed = false;
    process_request(s, /*close_connection=*/true, closed, [](httplib::Request&) {});
    return std::move(s.out);
  }
};

struct Harness {
  Tokenizer tok = Tokenizer::load(DSV4_NANO_MODEL);
  std::unique_ptr<Model> model;
  std::unique_ptr<Scheduler> sched;
  std::unique_ptr<server::Context> ctx;
  FuzzServer http;

  Harness() {
    ThreadPool::set_global_threads(1);  // one core per fuzzer; results do not depend on it
    model = std::make_unique<Model>(DSV4_NANO_MODEL);
    SchedulerOptions so;
    so.max_parallel = 2;
    so.max_context = kContext;
    so.prefix_cache_bytes = size_t(16) << 20;
    sched = std::make_unique<Scheduler>(*model, tok, so);
    server::ServerOptions o;
    o.model_names = {"dsv4-nano", DSV4_NANO_MODEL};
    o.model_dir = DSV4_NANO_MODEL;
    o.max_body_bytes = size_t(1) << 20;
    ctx = std::make_unique<server::Context>(*sched, o);
    // As server::Server sets them up.
    http.set_payload_max_length(o.max_body_bytes);
    server::add_info_routes(http, *ctx);
    server::add_openai_routes(http, *ctx);
    server::add_responses_routes(http, *ctx);
    server::add_anthropic_routes(http, *ctx);
  }
};

Harness& harness() {
  static Harness* h = new Harness;  // never destroyed: the scheduler thread outlives the last input
  return *h;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  harness();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const size_t pick = data[0] % (kNumRoutes + 1);
  const std::string_view body = fuzz::as_text(data + 1, size - 1);
  std::string request;
  if (pick == kNumRoutes) {
    request = body;
  } else {
    request = fmt::format(
        "POST {} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n"
        "Connection: close\r\n\r\n",
        kRoutes[pick], body.size());
    request += body;
  }
  const std::string response = harness().http.handle(request);
  static const bool show = std::getenv("DSV4_FUZZ_SHOW") != nullptr;  // to look at what the routes answer
  if (show) std::fprintf(stderr, "%s\n----\n", response.c_str());
  if (response.empty()) return 0;  // httplib dropped a request it could not parse
  FUZZ_CHECK(response.rfind("HTTP/1.1 ", 0) == 0, "malformed response: %.200s", response.c_str());
  const int status = std::atoi(response.c_str() + 9);
  FUZZ_CHECK(status >= 200 && status < 600, "status %d", status);
  FUZZ_CHECK(!(status == 500 && response.find("internal error") != std::string::npos),
             "an exception escaped a route: %s", response.c_str());
  return 0;
}
