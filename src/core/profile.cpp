#include "core/profile.h"

#include <mutex>

namespace dsv4::profile {

namespace {
std::mutex mu;
std::vector<std::pair<std::string, double>>& table() {
  static std::vector<std::pair<std::string, double>> t;
  return t;
}
}  // namespace

void enable(bool on) { enabled_flag().store(on); }

void add(const char* phase, double seconds) {
  std::lock_guard<std::mutex> lk(mu);
  for (auto& [name, s] : table())
    if (name == phase) {
      s += seconds;
      return;
    }
  table().emplace_back(phase, seconds);
}

std::vector<std::pair<std::string, double>> take() {
  std::lock_guard<std::mutex> lk(mu);
  return std::exchange(table(), {});
}

}  // namespace dsv4::profile
