#include "server/metrics.h"

#include <fmt/format.h>

#include "runtime/scheduler.h"
#include "server/connections.h"

namespace dsv4::server {

void Metrics::request(const std::string& route, int status) {
  std::lock_guard<std::mutex> lk(mu_);
  ++requests_[{route, status}];
}

void Metrics::first_token(double seconds) {
  std::lock_guard<std::mutex> lk(mu_);
  ttft_sum_ += seconds;
  ++ttft_count_;
}

namespace {
void metric(std::string& out, const char* name, const char* type, const char* help, double v) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, v);
}
}  // namespace

std::string Metrics::render(const SchedulerStats& s, const ConnectionStats& c, int max_parallel,
                            int64_t max_context) const {
  std::string o;
  auto counter = [&](const char* n, const char* h, double v) { metric(o, n, "counter", h, v); };
  auto gauge = [&](const char* n, const char* h, double v) { metric(o, n, "gauge", h, v); };
  counter("dsv4_requests_total", "Generation requests submitted to the scheduler.", double(s.requests_total));
  counter("dsv4_requests_finished_total", "Generation requests that ran to a stop or the token limit.",
          double(s.requests_finished));
  counter("dsv4_requests_cancelled_total", "Generation requests cancelled (client gone or shutdown).",
          double(s.requests_cancelled));
  counter("dsv4_requests_failed_total", "Generation requests that failed in the model.", double(s.requests_failed));
  gauge("dsv4_requests_active", "Sequences being prefilled or decoded now.", double(s.active));
  gauge("dsv4_requests_queued", "Requests waiting for a free sequence slot.", double(s.queued));
  gauge("dsv4_max_parallel", "Sequences decoded together at most (--parallel).", double(max_parallel));
  gauge("dsv4_context_tokens", "Context length per sequence (--ctx).", double(max_context));
  counter("dsv4_prompt_tokens_total", "Prompt tokens of submitted requests.", double(s.prompt_tokens));
  counter("dsv4_prefill_tokens_total", "Prompt tokens run through the model (cache hits excluded).",
          double(s.prefilled_tokens));
  counter("dsv4_generated_tokens_total", "Tokens generated.", double(s.generated_tokens));
  counter("dsv4_spec_steps_total", "Decode steps that verified a draft (--spec).", double(s.spec_steps));
  counter("dsv4_spec_draft_tokens_total", "Tokens drafted (--spec).", double(s.spec_drafted));
  counter("dsv4_spec_accepted_tokens_total", "Drafted tokens accepted by the main model (--spec).",
          double(s.spec_accepted));
  gauge("dsv4_spec_acceptance_rate", "Accepted over drafted tokens, since start (0 without drafts).",
        s.spec_drafted ? double(s.spec_accepted) / double(s.spec_drafted) : 0.0);
  counter("dsv4_prefix_cache_lookups_total", "Prefix cache lookups.", double(s.cache_lookups));
  counter("dsv4_prefix_cache_hits_total", "Prefix cache lookups that reused a cached prefix.", double(s.cache_hits));
  counter("dsv4_prefix_cache_hit_tokens_total", "Prompt tokens restored from the prefix cache.",
          double(s.cache_hit_tokens));
  gauge("dsv4_prefix_cache_entries", "Prefix cache entries.", double(s.cache_entries));
  gauge("dsv4_prefix_cache_bytes", "Prefix cache size in bytes.", double(s.cache_bytes));
  counter("dsv4_disk_cache_hits_total", "Prefix cache hits served from the disk tier (--cache-dir).", double(s.disk_hits));
  counter("dsv4_disk_cache_hit_tokens_total", "Prompt tokens restored from the disk tier.", double(s.disk_hit_tokens));
  counter("dsv4_disk_cache_rejected_total", "Disk cache files refused (damaged, truncated or mismatched) and deleted.",
          double(s.disk.rejected));
  counter("dsv4_disk_cache_writes_total", "State files written by the disk tier.", double(s.disk.writes));
  counter("dsv4_disk_cache_evictions_total", "State files evicted by the disk tier's size cap.", double(s.disk.evictions));
  gauge("dsv4_disk_cache_files", "State files in the disk tier.", double(s.disk.files));
  gauge("dsv4_disk_cache_bytes", "Disk tier size in bytes (as of its last write).", double(s.disk.bytes));
  counter("dsv4_busy_seconds_total", "Seconds the scheduler spent in model steps.", s.busy_seconds);
  const double busy = s.busy_seconds > 0 ? s.busy_seconds : 1;
  gauge("dsv4_generation_tokens_per_second", "Generated tokens per busy second, since start.",
        double(s.generated_tokens) / busy);
  gauge("dsv4_prefill_tokens_per_second", "Prefilled tokens per busy second, since start.",
        double(s.prefilled_tokens) / busy);
  gauge("dsv4_http_connections", "HTTP connections open (idle, reading a request or being served).",
        double(c.open));
  gauge("dsv4_http_requests_in_flight", "HTTP requests holding a worker (--http-threads).", double(c.busy));
  gauge("dsv4_http_requests_waiting", "HTTP requests with complete headers waiting for a worker.", double(c.queued));
  counter("dsv4_http_rejected_total", "Connections refused at a cap (503) or with oversized headers (431).",
          double(c.rejected));
  counter("dsv4_http_timeouts_total", "Requests whose headers or body missed their deadline (408).",
          double(c.timed_out));
  gauge("dsv4_http_streams_active", "HTTP responses still being generated or streamed.", double(streams_active_.load()));
  counter("dsv4_http_client_disconnects_total", "Requests cancelled because the client went away.",
          double(disconnects_.load()));
  std::lock_guard<std::mutex> lk(mu_);
  o += "# HELP dsv4_time_to_first_token_seconds Seconds from request to the first generated token.\n"
       "# TYPE dsv4_time_to_first_token_seconds summary\n";
  o += fmt::format("dsv4_time_to_first_token_seconds_sum {}\ndsv4_time_to_first_token_seconds_count {}\n", ttft_sum_,
                   ttft_count_);
  o += "# HELP dsv4_http_requests_total HTTP requests by route and status.\n# TYPE dsv4_http_requests_total counter\n";
  for (const auto& [k, n] : requests_)
    o += fmt::format("dsv4_http_requests_total{{route=\"{}\",status=\"{}\"}} {}\n", k.first, k.second, n);
  return o;
}

}  // namespace dsv4::server
