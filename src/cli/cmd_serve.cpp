// serve: the HTTP API server (OpenAI and Anthropic routes) over one continuously batching scheduler.
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <filesystem>
#include <thread>

#include "cli/commands.h"
#include "cli/generation_args.h"
#include "dist/world.h"
#include "server/server.h"

namespace dsv4::cli {

namespace {

struct ServeArgs {
  GenerationArgs gen;
  std::string host = "127.0.0.1", api_key, alias, thinking = "on";
  std::vector<std::string> cors_origins;
  int port = 8080, http_threads = 128, max_connections = 1024;
  double keep_alive = 5, max_body_mb = 8, timeout = 60;
};

std::string folder_name(const std::string& dir) {
  auto p = std::filesystem::path(dir).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  return p.filename().string();
}

void cmd_serve(const ServeArgs& a) {
  // SIGINT/SIGTERM go to one waiting thread (blocked here before any thread starts, so all inherit it);
  // it stops the server, which cancels the streams in flight.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a client that hung up must not kill the server on write

  auto eng = a.gen.load();
  server::ServerOptions so;
  so.host = a.host;
  so.port = a.port;
  so.api_key = a.api_key;
  so.model_dir = a.gen.dir;
  if (!a.alias.empty()) so.model_names.push_back(a.alias);
  so.model_names.push_back(folder_name(a.gen.dir));
  so.model_names.push_back(a.gen.dir);
  so.max_body_bytes = size_t(a.max_body_mb * 1024 * 1024);
  so.http_threads = a.http_threads;
  so.max_connections = a.max_connections;
  so.timeout_seconds = a.timeout;
  so.keep_alive_seconds = a.keep_alive;
  so.cors_origins = a.cors_origins;
  so.default_thinking = a.thinking == "on";
  so.default_sampling = a.gen.sampling();
  server::Server srv(*eng->sched, so);
  const int port = srv.bind();
  std::thread waiter([&srv, &sigs] {
    int sig = 0;
    sigwait(&sigs, &sig);
    // Under mpirun a SIGTERM is the job being torn down, most often because another rank ended: the
    // steps waiting on peers fail (their requests get errors), and the exit status says it failed.
    if (sig == SIGTERM && dist::active()) {
      std::fprintf(stderr, "dsv4: mpirun is stopping the job: another rank ended, or the job was stopped\n");
      dist::abort_job("mpirun is stopping the job");
      set_exit_code(1);
    }
    if (sig == SIGINT || sig == SIGTERM) srv.stop();
  });
  const std::string shown = a.host.find(':') != std::string::npos ? "[" + a.host + "]" : a.host;
  std::fprintf(stderr, "listening on http://%s:%d\n", shown.c_str(), port);
  std::fflush(stderr);
  srv.run();
  // Wake the waiter if the server stopped on its own.
  pthread_kill(waiter.native_handle(), SIGTERM);
  waiter.join();
}

}  // namespace

void register_serve_commands(CLI::App& app) {
  static ServeArgs a;
  a.gen.parallel = 4;
  auto* c = app.add_subcommand("serve", "OpenAI- and Anthropic-compatible HTTP API server");
  a.gen.add(c, true);
  c->add_option("--host", a.host, "address to listen on (loopback unless told otherwise)");
  c->add_option("--port", a.port, "port (0 = any free port, printed on startup)")->check(CLI::Range(0, 65535));
  c->add_option("--api-key", a.api_key, "require 'Authorization: Bearer KEY' (or 'x-api-key: KEY')");
  c->add_option("--cors-origin", a.cors_origins,
                "let web pages from ORIGIN call the API (CORS; '*' for any; repeatable or comma-separated; default: none)")
      ->delimiter(',')
      ->allow_extra_args(false);
  c->add_option("--alias", a.alias, "model name shown in /v1/models (default: the checkpoint folder name)");
  c->add_option("--thinking", a.thinking, "thinking mode when a request does not choose (DeepSeek API default: on)")
      ->check(CLI::IsMember({"on", "off"}));
  c->add_option("--keep-alive", a.keep_alive, "seconds without output before an SSE keep-alive is sent")
      ->check(CLI::Range(0.01, 3600.0));
  c->add_option("--max-body-mb", a.max_body_mb, "largest request body accepted, in MiB")->check(CLI::Range(0.001, 4096.0));
  c->add_option("--http-threads", a.http_threads, "requests served at once (each stream holds one); more get 503")
      ->check(CLI::Range(8, 4096));
  c->add_option("--max-connections", a.max_connections,
                "open connections at most (idle ones are closed first to make room; beyond it 503)")
      ->check(CLI::Range(8, 1 << 20));
  c->add_option("--timeout", a.timeout,
                "seconds a request's body may take to arrive (its headers: at most 10 s); late ones get 408")
      ->check(CLI::Range(0.1, 86400.0));
  c->callback([] { cmd_serve(a); });
}

}  // namespace dsv4::cli
