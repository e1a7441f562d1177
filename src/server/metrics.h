#pragma once
// HTTP-side counters for /metrics; the generation counters come from Scheduler::stats().
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>

namespace dsv4 {
struct SchedulerStats;
}

namespace dsv4::server {

struct ConnectionStats;

class Metrics {
 public:
  void request(const std::string& route, int status);
  void stream_opened() { ++streams_active_; }
  void stream_closed() { --streams_active_; }
  int64_t streams_active() const { return streams_active_.load(); }
  void disconnect() { ++disconnects_; }
  void first_token(double seconds);
  // Prometheus text exposition format (version 0.0.4).
  std::string render(const SchedulerStats& s, const ConnectionStats& c, int max_parallel, int64_t max_context) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  double ttft_sum_ = 0;
  uint64_t ttft_count_ = 0;
  std::atomic<int64_t> streams_active_{0};
  std::atomic<uint64_t> disconnects_{0};
};

}  // namespace dsv4::server
