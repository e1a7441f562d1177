#pragma once
// Lightning-indexer scores of one query against its visible index keys (architecture.md §4.13):
// score[j] = Σ_h w[h] · relu(⟨q_h, K_j⟩), in fp32. Heads run in the vector lanes and four keys at a
// time, so one pass over a key serves every head; the summation order is fixed (per lane over the
// head dim in order, then the lanes' tree), whatever the batch or thread count.
#include <cstdint>

namespace dsv4 {

// q: [nH, dI] (head-major), w: [nH], keys: [nvis, dI]; score: [nvis].
void index_scores(const float* q, const float* w, int nH, int dI, const float* keys, int32_t nvis, float* score);

}  // namespace dsv4
