#include "runtime/ram_budget.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

#include "core/error.h"
#include "core/hash.h"
#include "core/mapped_file.h"
#include "model/schema.h"
#include "runtime/expert_cache.h"

namespace dsv4 {

namespace {
constexpr uint64_t kGiB = uint64_t(1) << 30;

// The embedding and the tensors the forward never reads (the MTP stages' copies of embed and head).
bool is_row_gathered(Role r) { return r == Role::Embedding || r == Role::Unused; }

uint64_t read_u64_file(const std::string& path) {
  std::ifstream f(path);
  std::string s;
  if (!(f >> s) || s == "max") return 0;
  try {
    return std::stoull(s);
  } catch (...) {
    return 0;
  }
}

// The memory limit of this process's cgroup (v2 memory.max or v1 memory.limit_in_bytes); 0 if none.
uint64_t cgroup_limit() {
  std::ifstream f("/proc/self/cgroup");
  std::string line;
  uint64_t best = 0;
  auto take = [&](uint64_t v) {
    if (v > 0 && v < (uint64_t(1) << 60) && (best == 0 || v < best)) best = v;
  };
  while (std::getline(f, line)) {
    // "id:controllers:path"
    const size_t a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    const std::string ctl = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    if (ctl.empty()) take(read_u64_file("/sys/fs/cgroup" + path + "/memory.max"));
    std::stringstream ss(ctl);
    for (std::string c; std::getline(ss, c, ',');)
      if (c == "memory") take(read_u64_file("/sys/fs/cgroup/memory" + path + "/memory.limit_in_bytes"));
  }
  return best;
}

// Keeps the dense tensors' pages resident: mlock where the limit allows, else a read-ahead hint.
bool make_dense_resident(const Checkpoint& ck, const ModelConfig& c) {
  const SchemaIndex schema(c, ck);
  const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  std::vector<std::pair<uintptr_t, uintptr_t>> ranges;
  for (auto& [name, t] : ck.tensors()) {
    const Role r = schema.classify(name).role;
    if (r == Role::RoutedExpert || is_row_gathered(r) || t->nbytes == 0) continue;
    const uintptr_t a = uintptr_t(t->data) / page * page, b = (uintptr_t(t->data) + t->nbytes + page - 1) / page * page;
    ranges.push_back({a, b});
  }
  std::sort(ranges.begin(), ranges.end());
  std::vector<std::pair<uintptr_t, uintptr_t>> merged;
  for (auto& r : ranges)
    if (!merged.empty() && r.first <= merged.back().second) merged.back().second = std::max(merged.back().second, r.second);
    else merged.push_back(r);
  bool locked = true;
  for (auto& [a, b] : merged) {
    void* p = reinterpret_cast<void*>(a);
    if (locked && ::mlock(p, b - a) != 0) locked = false;
    if (!locked) ::madvise(p, b - a, MADV_WILLNEED);
  }
  return locked;
}
}  // namespace

WeightPlan plan_weights(const Checkpoint& ck, const ModelWeights& w, const ModelConfig& c) {
  WeightPlan p;
  const SchemaIndex schema(c, ck);
  for (auto& [name, t] : ck.tensors()) {
    p.total += t->nbytes;
    const Role r = schema.classify(name).role;
    if (r == Role::RoutedExpert) p.experts += t->nbytes;
    else if (is_row_gathered(r)) p.embed += t->nbytes;
    else p.dense += t->nbytes;
  }
  for (int l = 0; moe_of(w, l); ++l) p.n_experts += moe_of(w, l)->experts.size();
  if (p.n_experts) {
    p.expert_unit = ExpertCache::expert_file_bytes(w.blocks.at(0).moe.experts.at(0));
    p.expert_slot = ExpertCache::slot_bytes_for(ck, w.blocks.at(0).moe.experts.at(0));
  }
  p.min_budget = p.dense + uint64_t(std::max(2, c.n_activated_experts)) * p.expert_slot;
  return p;
}

std::string describe_budget(const WeightPlan& p, uint64_t budget, bool given) {
  std::string s = fmt::format("weights: {} in all: {} dense (resident), {} routed experts ({} of {}), {} embedding "
                              "(rows read as used)\n",
                              format_bytes(p.total), format_bytes(p.dense), format_bytes(p.experts), p.n_experts,
                              format_bytes(p.expert_unit), format_bytes(p.embed));
  if (given && budget == 0) return s + "RAM budget off: everything memory-mapped, the page cache decides";
  s += fmt::format("RAM budget {}{}: ", format_bytes(budget), given ? "" : " (default, from the memory limit)");
  if (p.n_experts == 0 || (!given && p.total - p.embed <= budget)) return s + "everything memory-mapped";
  if (budget < p.min_budget)
    return s + fmt::format("below the minimum {} (dense weights plus the experts of one token)", format_bytes(p.min_budget));
  const uint64_t cache = budget - p.dense;
  const uint64_t fit = std::min<uint64_t>(p.n_experts, cache / p.expert_slot);
  return s + fmt::format("dense resident, routed experts streamed through a {} cache holding {} of {} experts ({:.0f}%)",
                         format_bytes(cache), fit, p.n_experts, 100.0 * double(fit) / double(p.n_experts));
}

uint64_t parse_byte_size(const std::string& s, const std::string& what) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (...) {
    fail("{} '{}' is not a size (examples: 4G, 512M, 1.5T, 123456)", what, s);
  }
  std::string unit = s.substr(used);
  for (auto& c : unit) c = char(std::toupper(static_cast<unsigned char>(c)));
  for (const char* suf : {"IB", "B"})
    if (unit.size() > 1 && unit.size() >= std::strlen(suf) && unit.compare(unit.size() - std::strlen(suf), std::string::npos, suf) == 0) {
      unit.resize(unit.size() - std::strlen(suf));
      break;
    }
  double mult = 1;
  if (unit == "K") mult = 1024.0;
  else if (unit == "M") mult = 1024.0 * 1024;
  else if (unit == "G") mult = double(kGiB);
  else if (unit == "T") mult = double(kGiB) * 1024;
  else if (!unit.empty() && unit != "B") fail("{} '{}' has an unknown unit (use K, M, G or T)", what, s);
  if (!std::isfinite(v) || v <= 0 || v * mult >= 0x1p63) fail("{} '{}' must be a positive size", what, s);
  return uint64_t(v * mult);
}

std::string format_bytes(uint64_t b) {
  if (b >= kGiB) return fmt::format("{:.2f} GiB", double(b) / double(kGiB));
  if (b >= (1u << 20)) return fmt::format("{:.1f} MiB", double(b) / double(1u << 20));
  return fmt::format("{} bytes", b);
}

MemoryLimits read_memory_limits() {
  MemoryLimits l;
  l.cgroup_limit = cgroup_limit();
  std::ifstream f("/proc/meminfo");
  std::string key;
  uint64_t kb = 0;
  std::string unit;
  while (f >> key >> kb) {
    std::getline(f, unit);
    if (key == "MemAvailable:") l.mem_available = kb * 1024;
  }
  return l;
}

uint64_t default_ram_budget(const MemoryLimits& lim) {
  uint64_t m = lim.mem_available;
  if (lim.cgroup_limit && (m == 0 || lim.cgroup_limit < m)) m = lim.cgroup_limit;
  const uint64_t headroom = std::max(kGiB, m / 10);
  return m > headroom ? m - headroom : 0;
}

std::string user_cache_dir() {
  std::string dir;
  if (const char* d = std::getenv("DSV4_CACHE_DIR"); d && *d) dir = d;
  else if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) dir = std::string(x) + "/dsv4";
  else if (const char* h = std::getenv("HOME"); h && *h) dir = std::string(h) + "/.cache/dsv4";
  else return "";
  return make_dirs(dir) ? dir : "";
}

bool make_dirs(const std::string& dir) {
  for (size_t i = 1; i <= dir.size(); ++i)
    if (i == dir.size() || dir[i] == '/') ::mkdir(dir.substr(0, i).c_str(), 0755);
  struct stat sb;
  return ::stat(dir.c_str(), &sb) == 0 && S_ISDIR(sb.st_mode);
}

uint64_t model_identity(const Checkpoint& ck) {
  // Its config and every tensor's name and size, not its path (it may move).
  uint64_t h = kFnvBasis;
  std::string cfg;
  try {
    cfg = read_text_file(ck.dir() + "/config.json");
  } catch (const Error&) {
  }
  h = fnv1a(h, cfg.data(), cfg.size());
  for (auto& [name, t] : ck.tensors()) {
    h = fnv1a(h, name.data(), name.size());
    h = fnv1a(h, &t->nbytes, sizeof t->nbytes);
  }
  return h;
}

std::string routing_counts_path(const Checkpoint& ck) {
  const std::string dir = user_cache_dir();
  if (dir.empty()) return "";
  return fmt::format("{}/routing-{:016x}.bin", dir, model_identity(ck));
}

RamSetup apply_ram_budget(Model& m, std::optional<uint64_t> budget, bool quiet) {
  const WeightPlan p = plan_weights(m);
  RamSetup r;
  if (budget && *budget == 0) {
    r.summary = fmt::format("weights: {} memory-mapped (--ram-budget off)", format_bytes(p.total));
    return r;
  }
  r.budget = budget ? *budget : default_ram_budget();
  if (budget && *budget < p.min_budget)
    fail("--ram-budget {} is below the {} this model needs: {} of dense weights (attention, shared experts, gates, "
         "norms, head) that stay resident, plus room for the {} experts of one token",
         format_bytes(*budget), format_bytes(p.min_budget), format_bytes(p.dense),
         std::max(2, m.config().n_activated_experts));
  const bool fits = p.total - p.embed <= r.budget;
  if (p.n_experts == 0 || (!budget && (fits || r.budget < p.min_budget))) {
    r.summary = fits || p.n_experts == 0
                    ? fmt::format("weights: {} memory-mapped", format_bytes(p.total))
                    : fmt::format("weights: {} memory-mapped; the default RAM budget {} is below the {} streaming "
                                  "needs, so the page cache decides (set --ram-budget)",
                                  format_bytes(p.total), format_bytes(r.budget), format_bytes(p.min_budget));
    return r;
  }
  r.streaming = true;
  r.cache_bytes = r.budget - p.dense;
  r.dense_locked = make_dense_resident(m.checkpoint(), m.config());
  r.cache = std::make_shared<ExpertCache>(m, r.cache_bytes);
  m.set_expert_store(r.cache);
  const std::string counts = routing_counts_path(m);
  if (!counts.empty()) r.cache->persist_counts(counts);
  r.cache->warm([&](size_t done, size_t total) {
    if (!quiet && total) std::fprintf(stderr, "\rwarming the expert cache: %zu/%zu experts%s", done, total, done == total ? "\n" : "");
  });
  r.summary = fmt::format(
      "weights: {} dense resident ({}), {} of routed experts streamed through a {} cache ({} of {} experts, {})",
      format_bytes(p.dense), r.dense_locked ? "mlock" : "MADV_WILLNEED", format_bytes(p.experts),
      format_bytes(r.cache_bytes), r.cache->slots(), p.n_experts, r.cache->direct_io() ? "O_DIRECT reads" : "buffered reads");
  return r;
}

}  // namespace dsv4
