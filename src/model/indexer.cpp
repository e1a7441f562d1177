// Lightning indexer of CSA layers (architecture.md §4.13): index queries from the attention's query
// latent (wq_b, RoPE, Hadamard, FP4), index keys from a second ratio-4 compressor (Hadamard, FP4), head
// weights from weights_proj; score = Σ_h w_h·relu(⟨q_h, K_j⟩) over the visible entries, then the top-k
// (lower id wins ties).
#include "model/indexer.h"

#include <algorithm>
#include <cmath>

#include "core/arena.h"
#include "core/thread_pool.h"
#include "kernels/hadamard.h"
#include "kernels/index_score.h"
#include "kernels/quant.h"
#include "kernels/rope.h"
#include "kernels/topk.h"

namespace dsv4 {

void indexer_forward(const IndexerWeights& w, std::span<IndexerState* const> states, Segments segs, const float* x,
                     const float* qr, const ForwardContext& fc, const Picks& out) {
  const ModelConfig& cfg = fc.cfg;
  const int nH = cfg.index_n_heads, dI = cfg.index_head_dim, R = w.comp.ratio;
  const Rope& rope = fc.rope_compressed;
  Arena& arena = fc.arena;
  Arena::Frame frame(arena);
  const int64_t rows = total_rows(segs);
  const int64_t* pos = row_positions(segs, arena);

  // Index queries: RoPE at the query position, Hadamard, FP4 round-trip.
  float* q = arena.take<float>(size_t(rows * nH * dI));
  matmul(w.wq_b, qr, rows, q, fc.opt.act_quant, fc.pool);
  fc.pool.parallel_for(size_t(rows), [&](size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; ++r)
      for (int h = 0; h < nH; ++h) {
        float* qh = q + (r * size_t(nH) + size_t(h)) * size_t(dI);
        rope.apply(qh, dI, pos[r]);
        hadamard(qh, size_t(dI));
        if (fc.opt.index_fp4_roundtrip) fp4_roundtrip(qh, size_t(dI));
      }
  });

  // New index keys, per sequence, before scoring: a token that completes a group sees its entry.
  CompressorInput ci = compressor_project(w.comp, x, rows, fc);
  for (size_t i = 0; i < segs.size(); ++i) {
    Arena::Frame seg_frame(arena);
    const int64_t cap = max_entries(segs[i].S, R);
    float* entries = arena.take<float>(size_t(cap * dI));
    int64_t* ids = arena.take<int64_t>(size_t(cap));
    const size_t off = size_t(segs[i].row0 * w.comp.width());
    const size_t n = compressor_forward(w.comp, states[i]->comp, ci.a + off, ci.g + off, segs[i].S, segs[i].p0, rope,
                                        float(cfg.norm_eps), entries, ids, segs[i].mark_at);
    for (size_t e = 0; e < n; ++e) {
      float* k = entries + e * size_t(dI);
      hadamard(k, size_t(dI));
      if (fc.opt.index_fp4_roundtrip) fp4_roundtrip(k, size_t(dI));
    }
    if (segs[i].mark_at >= 0)
      states[i]->keys_at_mark = states[i]->keys.size() + entries_before(ids, n, R, segs[i].mark_at) * size_t(dI);
    states[i]->keys.insert(states[i]->keys.end(), entries, entries + n * size_t(dI));
  }

  float* wts = arena.take<float>(size_t(rows * nH));
  matmul(w.weights_proj, x, rows, wts, false, fc.pool);
  const float wscale = float(1.0 / std::sqrt(double(dI)) / std::sqrt(double(nH)));
  for (int64_t i = 0; i < rows * nH; ++i) wts[i] *= wscale;

  // I[t, j] = Σ_h w_h · relu(⟨q_h, K_j⟩) over the visible entries j < ⌊(t+1)/R⌋. Each thread's scores
  // take the room of the largest key store, not of this step's entries, so they never move.
  const IndexerState** row_state = arena.take<const IndexerState*>(size_t(rows));
  size_t cap = 0;
  for (size_t i = 0; i < segs.size(); ++i) {
    cap = std::max({cap, states[i]->key_capacity(dI), states[i]->keys.size() / size_t(dI)});
    for (int64_t r = 0; r < segs[i].S; ++r) row_state[size_t(segs[i].row0 + r)] = states[i];
  }
  fc.pool.parallel_for(size_t(rows), [&](size_t r0, size_t r1) {
    Arena& local = thread_arena();
    Arena::Frame f(local);
    float* score = local.take<float>(cap);
    int32_t* idx = local.take<int32_t>(cap);
    for (size_t r = r0; r < r1; ++r) {
      const int32_t nvis = int32_t((pos[r] + 1) / R);
      index_scores(q + r * size_t(nH) * size_t(dI), wts + r * size_t(nH), nH, dI, row_state[r]->keys.data(), nvis,
                   score);
      const int32_t k = topk_desc(score, nvis, cfg.index_topk, idx);
      std::copy_n(idx, k, out.ids + r * size_t(out.K));
      out.n[r] = k;
    }
  });
}

}  // namespace dsv4
