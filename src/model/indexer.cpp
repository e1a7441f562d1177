// Lightning indexer of CSA layers (architecture.md §4.13): index queries from the attention's query
// latent (wq_b, RoPE, Hadamard, FP4), index keys from a second ratio-4 compressor (Hadamard, FP4), head
// weights from weights_proj; score = Σ_h w_h·relu(⟨q_h, K_j⟩) over the visible entries, then the top-k
// (lower id wins ties).
#include "model/indexer.h"

#include <algorithm>
#include <cmath>

#include "core/thread_pool.h"
#include "kernels/hadamard.h"
#include "kernels/index_score.h"
#include "kernels/quant.h"
#include "kernels/rope.h"
#include "kernels/topk.h"

namespace dsv4 {

std::vector<std::vector<int32_t>> indexer_forward(const IndexerWeights& w, const std::vector<IndexerState*>& states,
                                                  const std::vector<Segment>& segs, const ModelConfig& cfg,
                                                  const float* x, const float* qr, const Rope& rope,
                                                  const NumericsOptions& opt, ThreadPool& pool) {
  const int nH = cfg.index_n_heads, dI = cfg.index_head_dim, R = w.comp.ratio;
  const int64_t rows = total_rows(segs);
  const std::vector<int64_t> pos = row_positions(segs);

  // Index queries: RoPE at the query position, Hadamard, FP4 round-trip.
  std::vector<float> q(size_t(rows * nH * dI));
  matmul(w.wq_b, qr, rows, q.data(), opt.act_quant, pool);
  pool.parallel_for(size_t(rows), [&](size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; ++r)
      for (int h = 0; h < nH; ++h) {
        float* qh = q.data() + (r * size_t(nH) + size_t(h)) * size_t(dI);
        rope.apply(qh, dI, pos[r]);
        hadamard(qh, size_t(dI));
        if (opt.index_fp4_roundtrip) fp4_roundtrip(qh, size_t(dI));
      }
  });

  // New index keys, per sequence, before scoring: a token that completes a group sees its entry.
  CompressorInput ci = compressor_project(w.comp, x, rows, pool);
  for (size_t i = 0; i < segs.size(); ++i) {
    std::vector<float> entries;
    std::vector<int64_t> ids;
    const size_t off = size_t(segs[i].row0 * w.comp.width());
    compressor_forward(w.comp, states[i]->comp, ci.a.data() + off, ci.g.data() + off, segs[i].S, segs[i].p0, rope,
                       float(cfg.norm_eps), entries, ids, segs[i].mark_at);
    for (size_t e = 0; e < ids.size(); ++e) {
      float* k = entries.data() + e * size_t(dI);
      hadamard(k, size_t(dI));
      if (opt.index_fp4_roundtrip) fp4_roundtrip(k, size_t(dI));
    }
    if (segs[i].mark_at >= 0)
      states[i]->keys_at_mark = states[i]->keys.size() + entries_before(ids, R, segs[i].mark_at) * size_t(dI);
    states[i]->keys.insert(states[i]->keys.end(), entries.begin(), entries.end());
  }

  std::vector<float> wts(size_t(rows * nH));
  matmul(w.weights_proj, x, rows, wts.data(), false, pool);
  const float wscale = float(1.0 / std::sqrt(double(dI)) / std::sqrt(double(nH)));
  for (auto& v : wts) v *= wscale;

  // I[t, j] = Σ_h w_h · relu(⟨q_h, K_j⟩) over the visible entries j < ⌊(t+1)/R⌋.
  std::vector<const IndexerState*> row_state(static_cast<size_t>(rows));
  for (size_t i = 0; i < segs.size(); ++i)
    for (int64_t r = 0; r < segs[i].S; ++r) row_state[size_t(segs[i].row0 + r)] = states[i];
  std::vector<std::vector<int32_t>> out(static_cast<size_t>(rows));
  pool.parallel_for(size_t(rows), [&](size_t r0, size_t r1) {
    std::vector<float> score;
    for (size_t r = r0; r < r1; ++r) {
      const int32_t nvis = int32_t((pos[r] + 1) / R);
      score.resize(size_t(nvis));
      index_scores(q.data() + r * size_t(nH) * size_t(dI), wts.data() + r * size_t(nH), nH, dI,
                   row_state[r]->keys.data(), nvis, score.data());
      out[r] = topk_desc(score.data(), nvis, cfg.index_topk);
    }
  });
  return out;
}

}  // namespace dsv4
