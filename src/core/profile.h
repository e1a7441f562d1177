#pragma once
// Wall time per named phase of the forward pass, collected only while enabled (`dsv4 bench
// --profile`): a disabled Scope costs one relaxed atomic load.
#include <atomic>
#include <chrono>
#include <string>
#include <utility>
#include <vector>

namespace dsv4::profile {

void enable(bool on);
inline std::atomic<bool>& enabled_flag() {
  static std::atomic<bool> on{false};
  return on;
}
void add(const char* phase, double seconds);
// Accumulated seconds per phase, in first-seen order; clears them.
std::vector<std::pair<std::string, double>> take();

class Scope {
 public:
  explicit Scope(const char* phase) : phase_(enabled_flag().load(std::memory_order_relaxed) ? phase : nullptr) {
    if (phase_) t0_ = std::chrono::steady_clock::now();
  }
  ~Scope() {
    if (phase_) add(phase_, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count());
  }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  const char* phase_;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace dsv4::profile
