#include "model/expert_store.h"

#include "core/error.h"

namespace dsv4 {

const MoeWeights* moe_of(const ModelWeights& w, int layer) {
  const int L = int(w.blocks.size());
  if (layer >= 0 && layer < L) return &w.blocks[size_t(layer)].moe;
  if (w.mtp && layer == L) return &w.mtp->block.moe;
  if (w.dspark && layer >= L && layer - L < int(w.dspark->stages.size())) return &w.dspark->stages[size_t(layer - L)].moe;
  return nullptr;
}

MappedExperts::MappedExperts(const ModelWeights& w) : w_(w) {}

void MappedExperts::acquire(int layer, const int32_t* experts, size_t n, const ExpertWeights** views) {
  const MoeWeights* m = moe_of(w_, layer);
  if (!m) fail("no MoE weights for layer {}", layer);
  for (size_t i = 0; i < n; ++i) views[i] = &m->experts.at(size_t(experts[i]));
}

}  // namespace dsv4
