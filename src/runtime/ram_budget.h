#pragma once
// --ram-budget: how much RAM the weights may take, and what that makes of a checkpoint. Dense weights
// (attention, shared experts, gates, norms, head) stay resident; routed experts that do not fit go
// through the expert cache (runtime/expert_cache.h). The default budget comes from the cgroup memory
// limit and MemAvailable, less headroom for KV caches and activations.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "model/transformer.h"

namespace dsv4 {

class ExpertCache;

struct WeightPlan {
  uint64_t total = 0;        // every tensor's bytes
  uint64_t experts = 0;      // routed experts: what can stream
  uint64_t embed = 0;        // the embedding: only the rows in use are read, left to the page cache
  uint64_t dense = 0;        // the rest, kept resident
  uint64_t expert_unit = 0;  // one expert (w1, w2, w3 and scales) in the files
  uint64_t expert_slot = 0;  // ... and in the cache, with its alignment
  uint64_t n_experts = 0;    // routed experts over all layers
  uint64_t min_budget = 0;   // dense + room for the experts of one token
};
WeightPlan plan_weights(const Checkpoint& ck, const ModelWeights& w, const ModelConfig& c);
inline WeightPlan plan_weights(const Model& m) { return plan_weights(m.checkpoint(), m.weights(), m.config()); }
// What a budget makes of the plan, in a few lines (inspect --ram-budget); `given` as for apply_ram_budget.
std::string describe_budget(const WeightPlan& p, uint64_t budget, bool given);

// "4G", "4GiB", "512M", "1.5T", "123456" (bytes); binary multiples. Throws naming `what` on garbage.
uint64_t parse_byte_size(const std::string& s, const std::string& what = "--ram-budget");
std::string format_bytes(uint64_t b);

struct MemoryLimits {
  uint64_t cgroup_limit = 0;   // 0: none
  uint64_t mem_available = 0;  // /proc/meminfo
};
MemoryLimits read_memory_limits();
// min(cgroup limit, MemAvailable) less max(1 GiB, 10%) for KV caches and activations.
uint64_t default_ram_budget(const MemoryLimits& lim = read_memory_limits());

struct RamSetup {
  bool streaming = false;
  uint64_t budget = 0, cache_bytes = 0;
  bool dense_locked = false;  // mlock held; else MADV_WILLNEED
  std::shared_ptr<ExpertCache> cache;
  std::string summary;  // one line for stderr
};
// A budget of 0 is "off": the plain map. Streams when a budget is given, or when the model does not fit the default budget; a given budget
// below plan.min_budget is an error naming the minimum. Installs the cache as m's expert store and
// warms it from the routing counts saved for this model (progress on stderr unless quiet).
RamSetup apply_ram_budget(Model& m, std::optional<uint64_t> budget, bool quiet = false);

// Where per-model routing counts are kept: $DSV4_CACHE_DIR, else $XDG_CACHE_HOME/dsv4, else ~/.cache/dsv4;
// never the model folder, which may be read-only. Empty if none can be created.
std::string routing_counts_path(const Checkpoint& ck);
inline std::string routing_counts_path(const Model& m) { return routing_counts_path(m.checkpoint()); }
// That directory, created if missing; empty if there is none.
std::string user_cache_dir();
bool make_dirs(const std::string& dir);  // mkdir -p; true if dir is a directory afterwards
// A hash of the model's config and tensor table (names and sizes): the key of its cache files.
uint64_t model_identity(const Checkpoint& ck);
inline uint64_t model_identity(const Model& m) { return model_identity(m.checkpoint()); }

}  // namespace dsv4
