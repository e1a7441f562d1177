// Attention sublayer (architecture.md §4.8–4.15). Queries: low-rank wq_a → q_norm → wq_b, an unweighted
// RMS per head, RoPE on the last dims. One latent KV row per token (kv_norm, RoPE, FP8 nope dims) is the
// key and the value of every head. A query reads its sliding window plus, on CSA layers, the lightning
// indexer's top-k compressed entries, on HCA layers every compressed entry; softmax with a learned sink
// over them, de-rotation, then the grouped low-rank output projection wo_a → wo_b.
#include "model/attention.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "core/arena.h"
#include "core/profile.h"
#include "core/thread_pool.h"
#include "kernels/attention.h"
#include "kernels/norm.h"
#include "kernels/quant.h"
#include "kernels/rope.h"

namespace dsv4 {

void AttentionState::reset(const AttentionWeights& w, const ModelConfig& cfg, const NumericsOptions& opt,
                           int64_t reserve_positions) {
  ring = KVRows(cfg.head_dim, cfg.nope_dim(), opt.kv_fp8_roundtrip);
  ring.resize(size_t(cfg.window_size));
  compressed = KVRows(cfg.head_dim, cfg.nope_dim(), opt.kv_fp8_roundtrip);
  if (has_compressor(w.kind)) {
    comp.reset(w.comp);
    compressed.reserve(size_t(reserve_positions / w.ratio));
  }
  if (has_indexer(w.kind)) {
    indexer.reset(w.indexer);
    indexer.keys.reserve(size_t(reserve_positions / w.indexer.comp.ratio) * size_t(cfg.index_head_dim));
  }
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
void attend_segment(const AttentionWeights& w, AttentionState& st, const Segment& seg, const ForwardContext& fc,
                    const float* q, const float* kv, const Picks& picks, float* o) {
  const ModelConfig& cfg = fc.cfg;
  const Rope& rope = fc.rope(w.kind);
  const int H = cfg.n_heads, d = cfg.head_dim;
  const int64_t win = cfg.window_size, p0 = seg.p0, S = seg.S;
  Arena::Frame frame(fc.arena);
  // Rows decoded once per chunk: the ring's previous positions and (HCA) every compressed entry. Buffers
  // whose length follows the sequence take the room of the entries' capacity, so they never move.
  const int64_t comp_cap = int64_t(std::max(st.compressed.capacity(), st.compressed.size()));
  float* ring_f = fc.arena.take<float>(size_t(win * d));
  for (int64_t pos = std::max<int64_t>(0, p0 - win); pos < p0; ++pos)
    st.ring.get(size_t(pos % win), ring_f + (pos % win) * d);
  float* comp_f = nullptr;
  if (reads_all_compressed(w.kind)) {
    comp_f = fc.arena.take<float>(size_t(comp_cap * d));
    for (size_t j = 0; j < st.compressed.size(); ++j) st.compressed.get(j, comp_f + j * size_t(d));
  }
  const int64_t max_rows = win + (has_indexer(w.kind) ? cfg.index_topk : reads_all_compressed(w.kind) ? comp_cap : 0);
  const float scale = 1.0f / std::sqrt(float(d));
  fc.pool.parallel_for(size_t(S), [&](size_t s0, size_t s1) {
    Arena& local = thread_arena();
    Arena::Frame f(local);
    const float** rows = local.take<const float*>(size_t(max_rows));
    float* picked = has_indexer(w.kind) ? local.take<float>(size_t(cfg.index_topk) * size_t(d)) : nullptr;
    float* z = local.take<float>(sink_attention_scratch(int32_t(max_rows)));
    for (size_t s = s0; s < s1; ++s) {
      const int64_t t = p0 + int64_t(s), r = seg.row0 + int64_t(s);
      int32_t n = 0;
      for (int64_t pos = std::max<int64_t>(0, t - win + 1); pos <= t; ++pos)
        rows[n++] = pos >= p0 ? kv + (seg.row0 + pos - p0) * d : ring_f + (pos % win) * d;
      if (has_indexer(w.kind)) {
        const int32_t* sel = picks.row(r);
        for (int32_t i = 0; i < picks.n[r]; ++i) st.compressed.get(size_t(sel[i]), picked + i * size_t(d));
        for (int32_t i = 0; i < picks.n[r]; ++i) rows[n++] = picked + i * size_t(d);
      } else if (reads_all_compressed(w.kind)) {
        const int64_t nvis = (t + 1) / w.ratio;
        for (int64_t j = 0; j < nvis; ++j) rows[n++] = comp_f + j * d;
      }
      const size_t off = size_t(r) * size_t(H) * size_t(d);
      sink_attention_heads(q + off, H, rows, n, d, scale, w.sink.data(), o + off, z);
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

void attention_queries(const AttentionWeights& w, const float* x, int64_t rows, const int64_t* pos,
                       const ForwardContext& fc, float* qr, float* q) {
  const ModelConfig& cfg = fc.cfg;
  const Rope& rope = fc.rope(w.kind);
  const int H = cfg.n_heads, d = cfg.head_dim, qr_dim = cfg.q_lora_rank;
  const float eps = float(cfg.norm_eps);
  // qr = q_norm(wq_a x); q = wq_b qr; unweighted RMS per head; RoPE on the tail.
  matmul(w.wq_a, x, rows, qr, fc.opt.act_quant, fc.pool);
  rmsnorm_rows(qr, w.q_norm.data(), size_t(rows), size_t(qr_dim), eps, qr);
  matmul(w.wq_b, qr, rows, q, fc.opt.act_quant, fc.pool);
  fc.pool.parallel_for(size_t(rows), [&](size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; ++r)
      for (int h = 0; h < H; ++h) {
        float* qh = q + (r * size_t(H) + size_t(h)) * size_t(d);
        rmsnorm(qh, nullptr, size_t(d), eps, qh);
        rope.apply(qh, d, pos[r]);
      }
  });
}

void attention_kv(const AttentionWeights& w, const float* x, int64_t rows, const int64_t* pos,
                  const ForwardContext& fc, float* kv) {
  const ModelConfig& cfg = fc.cfg;
  const Rope& rope = fc.rope(w.kind);
  const int d = cfg.head_dim, nope = cfg.nope_dim();
  const float eps = float(cfg.norm_eps);
  matmul(w.wkv, x, rows, kv, fc.opt.act_quant, fc.pool);
  fc.pool.parallel_for(size_t(rows), [&](size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; ++r) {
      float* k = kv + r * size_t(d);
      rmsnorm(k, w.kv_norm.data(), size_t(d), eps, k);
      rope.apply(k, d, pos[r]);
      if (fc.opt.kv_fp8_roundtrip) fp8_roundtrip(k, size_t(nope), 64);
    }
  });
}

void attention_output(const AttentionWeights& w, const float* o, int64_t rows, const ForwardContext& fc, float* out) {
  Arena::Frame frame(fc.arena);
  float* u = fc.arena.take<float>(size_t(rows * fc.cfg.o_groups * fc.cfg.o_lora_rank));
  matmul_grouped(w.wo_a, fc.cfg.o_groups, o, rows, u, fc.pool);
  matmul(w.wo_b, u, rows, out, fc.opt.act_quant, fc.pool);
}

void attention_forward(const AttentionWeights& w, std::span<AttentionState* const> states, Segments segs,
                       const float* x, const ForwardContext& fc, float* out, const Picks* topk_out) {
  const ModelConfig& cfg = fc.cfg;
  const int H = cfg.n_heads, d = cfg.head_dim, nope = cfg.nope_dim(), qr_dim = cfg.q_lora_rank;
  const float eps = float(cfg.norm_eps);
  Arena& arena = fc.arena;
  Arena::Frame frame(arena);
  const int64_t rows = total_rows(segs);
  const int64_t* pos = row_positions(segs, arena);

  // Q path and window KV rows, already on the grid they will have in the ring.
  float* qr = arena.take<float>(size_t(rows * qr_dim));
  float* q = arena.take<float>(size_t(rows * H * d));
  float* kv = arena.take<float>(size_t(rows * d));
  std::optional<profile::Scope> phase(std::in_place, "attn.q_kv");
  attention_queries(w, x, rows, pos, fc, qr, q);
  attention_kv(w, x, rows, pos, fc, kv);

  // Compressed entries emitted by these rows become visible before attention (architecture.md §4.12).
  phase.emplace("attn.compressor");
  if (has_compressor(w.kind)) {
    Arena::Frame comp_frame(arena);
    CompressorInput ci = compressor_project(w.comp, x, rows, fc);
    for (size_t i = 0; i < segs.size(); ++i) {
      Arena::Frame seg_frame(arena);
      const int64_t cap = max_entries(segs[i].S, w.comp.ratio);
      float* entries = arena.take<float>(size_t(cap * d));
      int64_t* ids = arena.take<int64_t>(size_t(cap));
      const size_t off = size_t(segs[i].row0 * w.comp.width());
      const size_t n = compressor_forward(w.comp, states[i]->comp, ci.a + off, ci.g + off, segs[i].S, segs[i].p0,
                                          fc.rope(w.kind), eps, entries, ids, segs[i].mark_at);
      const size_t before = segs[i].mark_at >= 0 ? entries_before(ids, n, w.comp.ratio, segs[i].mark_at) : SIZE_MAX;
      for (size_t e = 0; e < n; ++e) {
        if (e == before) states[i]->compressed.mark();
        float* row = entries + e * size_t(d);
        if (fc.opt.kv_fp8_roundtrip) fp8_roundtrip(row, size_t(nope), 64);
        states[i]->compressed.append(row);
      }
      if (before != SIZE_MAX && before >= n) states[i]->compressed.mark();
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
  phase.emplace("attn.indexer");
  Picks picks;
  if (has_indexer(w.kind)) {
    picks = topk_out ? *topk_out : Picks::take(arena, rows, cfg.index_topk);
    IndexerState** ist = arena.take<IndexerState*>(states.size());
    for (size_t i = 0; i < states.size(); ++i) ist[i] = &states[i]->indexer;
    indexer_forward(w.indexer, {ist, states.size()}, segs, x, qr, fc, picks);
  }

  phase.emplace("attn.core");
  float* o = arena.take<float>(size_t(rows * H * d));
  for (size_t i = 0; i < segs.size(); ++i) attend_segment(w, *states[i], segs[i], fc, q, kv, picks, o);

  phase.emplace("attn.out");
  attention_output(w, o, rows, fc, out);
}

}  // namespace dsv4
