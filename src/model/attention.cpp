// Attention sublayer (architecture.md §4.8–4.15). Queries: low-rank wq_a → q_norm → wq_b, an unweighted
// RMS per head, RoPE on the last dims. One latent KV row per token (kv_norm, RoPE, FP8 nope dims) is the
// key and the value of every head. A query reads its sliding window plus, on CSA layers, the lightning
// indexer's top-k compressed entries, on HCA layers every compressed entry; softmax with a learned sink
// over them, de-rotation, then the grouped low-rank output projection wo_a → wo_b.
#include "model/attention.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "core/profile.h"
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
  if (has_compressor(w.kind)) comp.reset(w.comp);
  if (has_indexer(w.kind)) indexer.reset(w.indexer);
}

void AttentionState::mark() {
  ring.mark();
  compressed.mark();
  comp.mark();
  indexer.mark();
}

void AttentionState::rollback() {
  ring.rollback();
  compressed.rollback();
  comp.rollback();
  indexer.rollback();
}

void AttentionState::release() {
  ring.release();
  compressed.release();
  comp.release();
  indexer.release();
}

size_t AttentionState::journal_bytes() const {
  return ring.journal_bytes() + compressed.journal_bytes() + comp.journal_bytes() + indexer.comp.journal_bytes();
}

namespace {

// Sparse attention of one sequence's rows (architecture.md §4.10, §4.14), then de-rotation; commits the window
// ring afterwards, since earlier queries of the chunk read slots that later rows overwrite.
void attend_segment(const AttentionWeights& w, AttentionState& st, const Segment& seg, const ModelConfig& cfg,
                    const Rope& rope, const float* q, const float* kv, const std::vector<std::vector<int32_t>>& picks,
                    ThreadPool& pool, float* o) {
  const int H = cfg.n_heads, d = cfg.head_dim;
  const int64_t win = cfg.window_size, p0 = seg.p0, S = seg.S;
  // Rows decoded once per chunk: the ring's previous positions and (HCA) every compressed entry.
  std::vector<float> ring_f(size_t(win * d));
  for (int64_t pos = std::max<int64_t>(0, p0 - win); pos < p0; ++pos)
    st.ring.get(size_t(pos % win), ring_f.data() + (pos % win) * d);
  std::vector<float> comp_f;
  if (reads_all_compressed(w.kind)) {
    comp_f.resize(st.compressed.size() * size_t(d));
    for (size_t j = 0; j < st.compressed.size(); ++j) st.compressed.get(j, comp_f.data() + j * size_t(d));
  }
  const float scale = 1.0f / std::sqrt(float(d));
  pool.parallel_for(size_t(S), [&](size_t s0, size_t s1) {
    std::vector<const float*> rows;
    std::vector<float> picked;
    for (size_t s = s0; s < s1; ++s) {
      const int64_t t = p0 + int64_t(s), r = seg.row0 + int64_t(s);
      rows.clear();
      for (int64_t pos = std::max<int64_t>(0, t - win + 1); pos <= t; ++pos)
        rows.push_back(pos >= p0 ? kv + (seg.row0 + pos - p0) * d : ring_f.data() + (pos % win) * d);
      if (has_indexer(w.kind)) {
        const auto& sel = picks[size_t(r)];
        picked.resize(sel.size() * size_t(d));
        for (size_t i = 0; i < sel.size(); ++i) st.compressed.get(size_t(sel[i]), picked.data() + i * size_t(d));
        for (size_t i = 0; i < sel.size(); ++i) rows.push_back(picked.data() + i * size_t(d));
      } else if (reads_all_compressed(w.kind)) {
        const int64_t nvis = (t + 1) / w.ratio;
        for (int64_t j = 0; j < nvis; ++j) rows.push_back(comp_f.data() + j * d);
      }
      const size_t off = size_t(r) * size_t(H) * size_t(d);
      sink_attention_heads(q + off, H, rows.data(), int32_t(rows.size()), d, scale, w.sink.data(), o + off);
      for (int h = 0; h < H; ++h) rope.apply(o + off + size_t(h) * size_t(d), d, t, /*inverse=*/true);
    }
  });
  // With a mark inside the segment, the rows the ring holds at the mark are written before it (the
  // journal then keeps them for a rollback, even where later rows overwrite them).
  const int64_t first = seg.mark_at >= 0 ? std::max(p0, std::min(seg.mark_at, p0 + S) - win) : std::max(p0, p0 + S - win);
  for (int64_t pos = first; pos < p0 + S; ++pos) {
    if (pos == seg.mark_at) st.ring.mark();
    st.ring.put(size_t(pos % win), kv + (seg.row0 + pos - p0) * d);
  }
  if (seg.mark_at == p0 + S) st.ring.mark();
}

}  // namespace

void attention_queries(const AttentionWeights& w, const ModelConfig& cfg, const Rope& rope, const float* x,
                       int64_t rows, const int64_t* pos, const NumericsOptions& opt, ThreadPool& pool, float* qr,
                       float* q) {
  const int H = cfg.n_heads, d = cfg.head_dim, qr_dim = cfg.q_lora_rank;
  const float eps = float(cfg.norm_eps);
  // qr = q_norm(wq_a x); q = wq_b qr; unweighted RMS per head; RoPE on the tail.
  matmul(w.wq_a, x, rows, qr, opt.act_quant, pool);
  rmsnorm_rows(qr, w.q_norm.data(), size_t(rows), size_t(qr_dim), eps, qr);
  matmul(w.wq_b, qr, rows, q, opt.act_quant, pool);
  pool.parallel_for(size_t(rows), [&](size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; ++r)
      for (int h = 0; h < H; ++h) {
        float* qh = q + (r * size_t(H) + size_t(h)) * size_t(d);
        rmsnorm(qh, nullptr, size_t(d), eps, qh);
        rope.apply(qh, d, pos[r]);
      }
  });
}

void attention_kv(const AttentionWeights& w, const ModelConfig& cfg, const Rope& rope, const float* x, int64_t rows,
                  const int64_t* pos, const NumericsOptions& opt, ThreadPool& pool, float* kv) {
  const int d = cfg.head_dim, nope = cfg.nope_dim();
  const float eps = float(cfg.norm_eps);
  matmul(w.wkv, x, rows, kv, opt.act_quant, pool);
  pool.parallel_for(size_t(rows), [&](size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; ++r) {
      float* k = kv + r * size_t(d);
      rmsnorm(k, w.kv_norm.data(), size_t(d), eps, k);
      rope.apply(k, d, pos[r]);
      if (opt.kv_fp8_roundtrip) fp8_roundtrip(k, size_t(nope), 64);
    }
  });
}

void attention_output(const AttentionWeights& w, const ModelConfig& cfg, const float* o, int64_t rows,
                      const NumericsOptions& opt, ThreadPool& pool, float* out) {
  std::vector<float> u(size_t(rows * cfg.o_groups * cfg.o_lora_rank));
  matmul_grouped(w.wo_a, cfg.o_groups, o, rows, u.data(), pool);
  matmul(w.wo_b, u.data(), rows, out, opt.act_quant, pool);
}

void attention_forward(const AttentionWeights& w, const std::vector<AttentionState*>& states,
                       const std::vector<Segment>& segs, const ModelConfig& cfg, const Rope& rope, const float* x,
                       const NumericsOptions& opt, ThreadPool& pool, float* out,
                       std::vector<std::vector<int32_t>>* topk_out) {
  const int H = cfg.n_heads, d = cfg.head_dim, nope = cfg.nope_dim(), qr_dim = cfg.q_lora_rank;
  const float eps = float(cfg.norm_eps);
  const int64_t rows = total_rows(segs);
  const std::vector<int64_t> pos = row_positions(segs);

  // Q path and window KV rows, already on the grid they will have in the ring.
  std::vector<float> qr(size_t(rows * qr_dim)), q(size_t(rows * H * d)), kv(size_t(rows * d));
  std::optional<profile::Scope> phase(std::in_place, "attn.q_kv");
  attention_queries(w, cfg, rope, x, rows, pos.data(), opt, pool, qr.data(), q.data());
  attention_kv(w, cfg, rope, x, rows, pos.data(), opt, pool, kv.data());

  // Compressed entries emitted by these rows become visible before attention (architecture.md §4.12).
  phase.emplace("attn.compressor");
  if (has_compressor(w.kind)) {
    CompressorInput ci = compressor_project(w.comp, x, rows, pool);
    for (size_t i = 0; i < segs.size(); ++i) {
      std::vector<float> entries;
      std::vector<int64_t> ids;
      const size_t off = size_t(segs[i].row0 * w.comp.width());
      compressor_forward(w.comp, states[i]->comp, ci.a.data() + off, ci.g.data() + off, segs[i].S, segs[i].p0, rope,
                         eps, entries, ids, segs[i].mark_at);
      const size_t before = segs[i].mark_at >= 0 ? entries_before(ids, w.comp.ratio, segs[i].mark_at) : SIZE_MAX;
      for (size_t e = 0; e < ids.size(); ++e) {
        if (e == before) states[i]->compressed.mark();
        float* row = entries.data() + e * size_t(d);
        if (opt.kv_fp8_roundtrip) fp8_roundtrip(row, size_t(nope), 64);
        states[i]->compressed.append(row);
      }
      if (before != SIZE_MAX && before >= ids.size()) states[i]->compressed.mark();
    }
  } else {
    // Unused parts are marked too, so a rollback finds every part of the state marked.
    for (size_t i = 0; i < segs.size(); ++i)
      if (segs[i].mark_at >= 0) {
        states[i]->compressed.mark();
        states[i]->comp.mark();
      }
  }
  if (!has_indexer(w.kind))
    for (size_t i = 0; i < segs.size(); ++i)
      if (segs[i].mark_at >= 0) states[i]->indexer.mark();
  std::vector<std::vector<int32_t>> picks;
  phase.emplace("attn.indexer");
  if (has_indexer(w.kind)) {
    std::vector<IndexerState*> ist;
    for (auto* s : states) ist.push_back(&s->indexer);
    picks = indexer_forward(w.indexer, ist, segs, cfg, x, qr.data(), rope, opt, pool);
  }

  phase.emplace("attn.core");
  std::vector<float> o(size_t(rows * H * d));
  for (size_t i = 0; i < segs.size(); ++i)
    attend_segment(w, *states[i], segs[i], cfg, rope, q.data(), kv.data(), picks, pool, o.data());

  phase.emplace("attn.out");
  attention_output(w, cfg, o.data(), rows, opt, pool, out);
  if (topk_out) *topk_out = std::move(picks);
}

}  // namespace dsv4
