#pragma once
// `dsv4 serve`: an HTTP server with OpenAI (chat completions, completions, responses) and Anthropic
// (messages) routes over one Scheduler, which batches all requests continuously. Routes are listed in
// src/server/README.md.
#include <memory>
#include <string>
#include <vector>

#include "runtime/sampler.h"

namespace dsv4 {
class Scheduler;
}

namespace dsv4::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                            // 0: any free port (bind() returns it)
  std::string api_key;                        // empty: no authentication
  std::vector<std::string> model_names;       // accepted `model` values; the first is the listed id
  std::string model_dir;
  size_t max_body_bytes = size_t(8) << 20;    // larger bodies get 413
  int http_threads = 128;                     // requests served at once (streams hold one each)
  int max_connections = 1024;                 // open connections; beyond it 503 (an idle one is closed first)
  double timeout_seconds = 60;                // a request's body must arrive within this (headers: up to 10 s)
  double keep_alive_seconds = 5;              // SSE comment when nothing was written for this long
  std::vector<std::string> cors_origins;      // origins browsers may call from ("*": any); empty: no CORS
  bool default_thinking = true;               // thinking mode when a request does not say (DeepSeek API default)
  SamplingParams default_sampling;            // generation_config.json, before request fields
};

class Server {
 public:
  Server(Scheduler& sched, ServerOptions opt);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the listening socket; returns the port (the chosen one for port 0). Throws dsv4::Error.
  int bind();
  // Serves until stop(); streams in flight are cancelled and closed first.
  void run();
  // Thread-safe; may be called before or during run().
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dsv4::server
