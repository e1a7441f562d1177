#include "model/indexer.h"

#include <algorithm>
#include <cmath>

#include "core/thread_pool.h"
#include "kernels/hadamard.h"
#include "kernels/quant.h"
#include "kernels/rope.h"
#include "kernels/topk.h"

namespace dsv4 {

std::vector<std::vector<int32_t>> indexer_forward(const IndexerWeights& w, IndexerState& st, const ModelConfig& cfg,
                                                  const float* x, const float* qr, int64_t S, int64_t p0,
                                                  const Rope& rope, const NumericsOptions& opt, ThreadPool& pool) {
  const int nH = cfg.index_n_heads, dI = cfg.index_head_dim, R = w.comp.ratio;
  std::vector<float> q(size_t(S * nH * dI));
  matmul(w.wq_b, qr, S, q.data(), opt.act_quant, pool);
  for (int64_t s = 0; s < S; ++s)
    for (int h = 0; h < nH; ++h) {
      float* qh = q.data() + size_t((s * nH + h) * dI);
      rope.apply(qh, dI, p0 + s);
      hadamard(qh, size_t(dI));
      if (opt.index_fp4_roundtrip) fp4_roundtrip(qh, size_t(dI));
    }

  std::vector<float> entries;
  std::vector<int64_t> ids;
  compressor_forward(w.comp, st.comp, x, S, p0, rope, float(cfg.norm_eps), pool, entries, ids);
  for (size_t i = 0; i < ids.size(); ++i) {
    float* k = entries.data() + i * size_t(dI);
    hadamard(k, size_t(dI));
    if (opt.index_fp4_roundtrip) fp4_roundtrip(k, size_t(dI));
  }
  st.keys.insert(st.keys.end(), entries.begin(), entries.end());

  std::vector<float> wts(size_t(S * nH));
  matmul(w.weights_proj, x, S, wts.data(), false, pool);
  const float wscale = float(1.0 / std::sqrt(double(dI)) / std::sqrt(double(nH)));
  for (auto& v : wts) v *= wscale;

  std::vector<std::vector<int32_t>> out(static_cast<size_t>(S));
  pool.parallel_for(size_t(S), [&](size_t s0, size_t s1) {
    for (size_t s = s0; s < s1; ++s) {
      const int64_t t = p0 + int64_t(s);
      const int32_t nvis = int32_t((t + 1) / R);
      std::vector<float> score(static_cast<size_t>(nvis));
      for (int32_t j = 0; j < nvis; ++j) {
        const float* kj = st.keys.data() + size_t(j) * size_t(dI);
        float acc = 0;
        for (int h = 0; h < nH; ++h) {
          const float* qh = q.data() + (s * size_t(nH) + size_t(h)) * size_t(dI);
          float d = 0;
          for (int i = 0; i < dI; ++i) d += qh[i] * kj[i];
          acc += wts[s * size_t(nH) + size_t(h)] * std::max(d, 0.0f);
        }
        score[size_t(j)] = acc;
      }
      out[s] = topk_desc(score.data(), nvis, cfg.index_topk);
    }
  });
  return out;
}

}  // namespace dsv4
