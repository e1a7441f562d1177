#pragma once
// Where the routed experts' bytes come from: the seam between the MoE math and the weight bytes. The MoE
// sublayer asks for the experts one layer needs this step and gets matrix views back; the default store
// hands out the memory-mapped checkpoint, a streaming store (runtime/expert_cache.h) reads experts from
// disk into a RAM cache. Which store is used changes where bytes come from, never the math.
#include <cstddef>
#include <cstdint>

#include "model/weights.h"

namespace dsv4 {

// Who asked for a prefetch, so each predictor's hit rate can be reported.
enum class ExpertPredictor { Hash, NextGate, Wave };

class ExpertStore {
 public:
  virtual ~ExpertStore() = default;
  // False for the mapped store: the forward then skips computing predictions nobody reads.
  virtual bool streams() const = 0;
  // The most experts one acquire() may ask for; the MoE runs a layer's experts in waves of this many.
  virtual size_t max_pinned() const = 0;
  // Called once per forward, before its first layer.
  virtual void begin_forward() {}
  // A hint that these experts of `layer` (BlockWeights::layer_id) are needed soon; returns at once.
  virtual void prefetch(int layer, const int32_t* experts, size_t n, ExpertPredictor who) {
    (void)layer, (void)experts, (void)n, (void)who;
  }
  // Blocks until every listed expert is available and writes its view to views[i]; the views stay
  // valid until release() of the same list. n <= max_pinned().
  virtual void acquire(int layer, const int32_t* experts, size_t n, const ExpertWeights** views) = 0;
  virtual void release(int layer, const int32_t* experts, size_t n) = 0;
};

// The experts in place in the memory map: nothing to fetch, nothing to release.
class MappedExperts final : public ExpertStore {
 public:
  explicit MappedExperts(const ModelWeights& w);
  bool streams() const override { return false; }
  size_t max_pinned() const override { return SIZE_MAX; }
  void acquire(int layer, const int32_t* experts, size_t n, const ExpertWeights** views) override;
  void release(int, const int32_t*, size_t) override {}

 private:
  const ModelWeights& w_;
};

// The MoE weights of the block with this layer_id (backbone layers, then MTP/DSpark stages); null if none.
const MoeWeights* moe_of(const ModelWeights& w, int layer);

}  // namespace dsv4
