#pragma once
// Routed experts streamed from disk into a RAM cache of whole experts, for checkpoints larger than RAM.
// An expert (w1, w2, w3 and their scales) is one unit: read once, in large direct reads on I/O threads,
// into a fixed-size slot, and evicted by routing frequency (with recency breaking ties), so the hot
// experts stay. The forward's prefetches (hash layers from token ids, the next layer through its gate,
// the next wave of a prefill) start reads before the experts are needed.
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "model/expert_store.h"
#include "model/transformer.h"

namespace dsv4 {

struct ExpertCacheStats {
  uint64_t acquired = 0;  // experts the forward asked for
  uint64_t ready = 0;     // ... that were already in RAM
  uint64_t in_flight = 0; // ... that a prefetch was still reading (the forward waited for it)
  uint64_t reads = 0, bytes_read = 0;  // experts read from disk and the file bytes that took
  struct Predictor {
    uint64_t named = 0, used = 0;  // experts it named; of those, how many the forward then asked for
    double hit_rate() const { return named ? double(used) / double(named) : 0.0; }
  };
  Predictor hash, next_gate, wave;
  // Of the experts asked for, those found in RAM or already being read: no demand read was needed.
  double hit_rate() const { return acquired ? double(ready + in_flight) / double(acquired) : 0.0; }
};

class ExpertCache final : public ExpertStore {
 public:
  // capacity_bytes of RAM for expert slots (at least max(2, k) experts); io_threads readers.
  ExpertCache(const Model& m, uint64_t capacity_bytes, int io_threads = 8);
  ~ExpertCache() override;
  ExpertCache(const ExpertCache&) = delete;
  ExpertCache& operator=(const ExpertCache&) = delete;

  bool streams() const override { return true; }
  size_t max_pinned() const override { return pin_limit_; }
  void begin_forward() override;
  void prefetch(int layer, const int32_t* experts, size_t n, ExpertPredictor who) override;
  void acquire(int layer, const int32_t* experts, size_t n, const ExpertWeights** views) override;
  void release(int layer, const int32_t* experts, size_t n) override;

  ExpertCacheStats stats() const;
  size_t slots() const { return slots_.size(); }
  uint64_t slot_bytes() const { return slot_bytes_; }
  bool direct_io() const { return direct_; }
  // Bytes one expert occupies in the checkpoint files (the unit the cache reads).
  static uint64_t expert_file_bytes(const ExpertWeights& e);
  // RAM one slot takes for this expert: its reads with room for the aligned blocks around them.
  static uint64_t slot_bytes_for(const Checkpoint& ck, const ExpertWeights& e);

  // Routing counts per (layer, expert), key = layer * n_experts + expert: what the forward asked for,
  // decayed so the recent past weighs more.
  std::vector<float> routing_counts() const;
  // Reads the experts with the highest counts until the cache is full; progress(done, total).
  void warm(const std::function<void(size_t, size_t)>& progress = {});
  // Keeps the routing counts in `path` (read now if it exists, written every few hundred forwards and
  // at destruction), so a restart warms the hot experts first. A file of another shape is ignored.
  void persist_counts(const std::string& path);
  // The counts saved in `path` if it holds n of them, else empty (expert parallel placement reads them).
  static std::vector<float> read_counts(const std::string& path, size_t n);

 private:
  struct Range {
    int fd = 0;          // index into fds_
    uint64_t off = 0;    // file offset of the bytes
    uint64_t len = 0;
    int chunk = 0;       // the read that brings it
  };
  struct Chunk {         // one read: tensors adjacent in a shard are read together
    int fd = 0;
    uint64_t off = 0, len = 0;
    uint64_t at = 0;     // where in the slot the aligned read starts
  };
  struct Source {        // where one expert's six tensors lie on disk
    Range r[6];
    std::vector<Chunk> chunks;
    const ExpertWeights* mapped = nullptr;  // the mapped view: formats and shapes to copy
  };
  enum class State { Free, Loading, Ready };
  struct Slot {
    int key = -1;
    State state = State::Free;
    int pins = 0;
    uint64_t last_use = 0;
    uint64_t protect_step = 0;  // prefetched in this forward and not used yet: other prefetches keep off
    uint8_t named_by = 0;       // predictors that named it since it was last used
    std::string error;
    ExpertWeights view;
    uint8_t* buf = nullptr;
  };
  struct Fd {
    int direct = -1, buffered = -1;
  };

  static uint64_t layout(const Checkpoint& ck, const ExpertWeights& e, Source& s, const std::string* path[6]);
  int key(int layer, int e) const;
  int victim(bool for_acquire) const;  // -1 if none; caller holds mu_
  void start_load(int slot, int key, bool urgent);
  void io_loop();
  void load(int slot);
  void note_use(Slot& s);
  void bump(int key);

  int n_experts_ = 0;
  std::vector<Source> sources_;          // per key; mapped == nullptr where the layer has no MoE
  std::vector<int> slot_of_;             // per key, -1 if not resident
  std::vector<float> freq_;              // per key
  uint64_t acquires_since_decay_ = 0;
  std::vector<Slot> slots_;
  uint64_t slot_bytes_ = 0;
  size_t pin_limit_ = 1;
  uint8_t* arena_ = nullptr;
  size_t arena_bytes_ = 0;
  std::vector<Fd> fds_;
  bool direct_ = false;

  mutable std::mutex mu_;
  std::condition_variable cv_;       // a slot became Ready, Free or unpinned
  std::condition_variable io_cv_;    // work for the I/O threads
  std::deque<int> queue_;            // slots to load
  std::vector<std::thread> io_;
  bool stop_ = false;
  uint64_t tick_ = 0, step_ = 0;
  std::string counts_path_;
  void save_counts() const;  // caller holds mu_
  ExpertCacheStats st_;
};

}  // namespace dsv4
