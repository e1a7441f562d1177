#include "model/attention.h"

#include <algorithm>
#include <cmath>

#include "core/thread_pool.h"
#include "kernels/attention.h"
#include "kernels/norm.h"
#include "kernels/quant.h"
#include "kernels/rope.h"

namespace dsv4 {

void AttentionState::reset(const AttentionWeights& w, const ModelConfig& cfg, const NumericsOptions& opt) {
  ring = KVRows(cfg.head_dim, cfg.nope_dim(), opt.kv_fp8_roundtrip);
  ring.resize(size_t(cfg.window_size));
  compressed = KVRows(cfg.head_dim, cfg.nope_dim(), opt.kv_fp8_roundtrip);
  if (w.ratio > 0) comp.reset(w.comp);
  if (w.ratio == 4) indexer.reset(w.indexer);
}

void attention_forward(const AttentionWeights& w, AttentionState& st, const ModelConfig& cfg, const Rope& rope,
                       const float* x, int64_t S, int64_t p0, const NumericsOptions& opt, ThreadPool& pool,
                       float* out, std::vector<std::vector<int32_t>>* topk_out) {
  const int H = cfg.n_heads, d = cfg.head_dim, nope = cfg.nope_dim(), qr_dim = cfg.q_lora_rank;
  const int64_t win = cfg.window_size;
  const float eps = float(cfg.norm_eps);

  // Q path: qr = q_norm(wq_a x); q = wq_b qr; unweighted RMS per head; RoPE on the tail.
  std::vector<float> qr(size_t(S * qr_dim)), q(size_t(S * H * d));
  matmul(w.wq_a, x, S, qr.data(), opt.act_quant, pool);
  rmsnorm_rows(qr.data(), w.q_norm.data(), size_t(S), size_t(qr_dim), eps, qr.data());
  matmul(w.wq_b, qr.data(), S, q.data(), opt.act_quant, pool);
  for (int64_t s = 0; s < S; ++s)
    for (int h = 0; h < H; ++h) {
      float* qh = q.data() + size_t((s * H + h) * d);
      rmsnorm(qh, nullptr, size_t(d), eps, qh);
      rope.apply(qh, d, p0 + s);
    }

  // This chunk's window KV rows, already on the grid they will have in the ring.
  std::vector<float> kv(size_t(S * d));
  matmul(w.wkv, x, S, kv.data(), opt.act_quant, pool);
  for (int64_t s = 0; s < S; ++s) {
    float* r = kv.data() + size_t(s * d);
    rmsnorm(r, w.kv_norm.data(), size_t(d), eps, r);
    rope.apply(r, d, p0 + s);
    if (opt.kv_fp8_roundtrip) fp8_roundtrip(r, size_t(nope), 64);
  }

  // Compressed entries emitted by this chunk become visible before attention (spec §4.12).
  if (w.ratio > 0) {
    std::vector<float> entries;
    std::vector<int64_t> ids;
    compressor_forward(w.comp, st.comp, x, S, p0, rope, eps, pool, entries, ids);
    for (size_t i = 0; i < ids.size(); ++i) {
      float* e = entries.data() + i * size_t(d);
      if (opt.kv_fp8_roundtrip) fp8_roundtrip(e, size_t(nope), 64);
      st.compressed.append(e);
    }
  }
  std::vector<std::vector<int32_t>> picks;
  if (w.ratio == 4) picks = indexer_forward(w.indexer, st.indexer, cfg, x, qr.data(), S, p0, rope, opt, pool);

  // Rows decoded once per chunk: the ring's previous positions and (HCA) every compressed entry.
  const int64_t ring_from = std::max<int64_t>(0, p0 - win);
  std::vector<float> ring_f(size_t(win * d));
  for (int64_t pos = ring_from; pos < p0; ++pos) st.ring.get(size_t(pos % win), ring_f.data() + (pos % win) * d);
  std::vector<float> comp_f;
  if (w.ratio > 0 && w.ratio != 4) {
    comp_f.resize(st.compressed.size() * size_t(d));
    for (size_t j = 0; j < st.compressed.size(); ++j) st.compressed.get(j, comp_f.data() + j * size_t(d));
  }

  std::vector<float> o(size_t(S * H * d));
  const float scale = 1.0f / std::sqrt(float(d));
  pool.parallel_for(size_t(S), [&](size_t s0, size_t s1) {
    std::vector<const float*> rows;
    std::vector<float> picked;
    for (size_t s = s0; s < s1; ++s) {
      const int64_t t = p0 + int64_t(s);
      rows.clear();
      for (int64_t pos = std::max<int64_t>(0, t - win + 1); pos <= t; ++pos)
        rows.push_back(pos >= p0 ? kv.data() + (pos - p0) * d : ring_f.data() + (pos % win) * d);
      if (w.ratio == 4) {
        const auto& sel = picks[s];
        picked.resize(sel.size() * size_t(d));
        for (size_t i = 0; i < sel.size(); ++i) st.compressed.get(size_t(sel[i]), picked.data() + i * size_t(d));
        for (size_t i = 0; i < sel.size(); ++i) rows.push_back(picked.data() + i * size_t(d));
      } else if (w.ratio > 0) {
        const int64_t nvis = (t + 1) / w.ratio;
        for (int64_t j = 0; j < nvis; ++j) rows.push_back(comp_f.data() + j * d);
      }
      for (int h = 0; h < H; ++h) {
        float* oh = o.data() + (s * size_t(H) + size_t(h)) * size_t(d);
        sink_attention(q.data() + (s * size_t(H) + size_t(h)) * size_t(d), rows.data(), int32_t(rows.size()), d,
                       scale, w.sink.data()[h], oh);
        rope.apply(oh, d, t, /*inverse=*/true);
      }
    }
  });

  // Commit this chunk's rows to the ring only now: earlier queries of the chunk read older slots.
  for (int64_t pos = std::max(p0, p0 + S - win); pos < p0 + S; ++pos)
    st.ring.put(size_t(pos % win), kv.data() + (pos - p0) * d);

  std::vector<float> u(size_t(S * cfg.o_groups * cfg.o_lora_rank));
  matmul_grouped(w.wo_a, cfg.o_groups, o.data(), S, u.data(), pool);
  matmul(w.wo_b, u.data(), S, out, opt.act_quant, pool);
  if (topk_out) *topk_out = std::move(picks);
}

}  // namespace dsv4
