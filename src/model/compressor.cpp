// KV compressor (architecture.md §4.11–4.12): every R tokens pool into one entry, a per-channel softmax of
// the gate scores wgate·x + ape over the slots weighting the values wkv·x. CSA (R = 4) overlaps each
// group with half the channels of the previous one; HCA (R = 128) does not. Entries are RMS-normalised
// and rotated at their group's first position; the rows of an incomplete group wait in the state.
#include "model/compressor.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/arena.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "kernels/norm.h"
#include "kernels/rope.h"

namespace dsv4 {

void CompressorState::reset(const CompressorWeights& w) {
  const size_t n = size_t(w.ratio) * size_t(w.width());
  kv.assign(n, 0.0f);
  score.assign(n, -INFINITY);
  prev_kv.assign(w.overlap ? n : 0, 0.0f);
  prev_score.assign(w.overlap ? n : 0, -INFINITY);
  has_prev = false;
}

void CompressorState::mark() {
  kv_undo_.start(SIZE_MAX);
  score_undo_.start(SIZE_MAX);
  prev_saved_ = false;
}

void CompressorState::rollback() {
  DSV4_CHECK(kv_undo_.active(), "compressor state rolled back without a mark");
  kv_undo_.restore(kv.data());
  score_undo_.restore(score.data());
  if (prev_saved_) {
    prev_kv.swap(saved_prev_kv_);
    prev_score.swap(saved_prev_score_);
    has_prev = saved_has_prev_;
    prev_saved_ = false;
  }
}

void CompressorState::release() {
  kv_undo_.stop();
  score_undo_.stop();
  prev_saved_ = false;
  saved_prev_kv_ = {};
  saved_prev_score_ = {};
}

size_t CompressorState::journal_bytes() const {
  return kv_undo_.saved_bytes() + score_undo_.saved_bytes() +
         (prev_saved_ ? 4 * (saved_prev_kv_.size() + saved_prev_score_.size()) : 0);
}

void CompressorState::before_slot_write(int slot, int width) {
  const size_t off = size_t(slot) * size_t(width);
  kv_undo_.save(size_t(slot), kv.data() + off, size_t(width) * 4);
  score_undo_.save(size_t(slot), score.data() + off, size_t(width) * 4);
}

// The previous group is replaced whole, so it is saved whole (once per mark).
void CompressorState::before_prev_replace() {
  if (!kv_undo_.active() || prev_saved_) return;
  saved_prev_kv_ = prev_kv;
  saved_prev_score_ = prev_score;
  saved_has_prev_ = has_prev;
  prev_saved_ = true;
}

size_t entries_before(const int64_t* ids, size_t n_ids, int ratio, int64_t pos) {
  size_t n = 0;
  while (n < n_ids && (ids[n] + 1) * ratio <= pos) ++n;
  return n;
}

void compressor_pool(const CompressorWeights& w, const CompressorState& st, float* e) {
  const int R = w.ratio, W = w.width(), dc = w.d_c;
  // Slot order = reference summation order: previous group's half A, then this group's half B.
  const int slots = w.overlap ? 2 * R : R;
  Arena& arena = thread_arena();
  Arena::Frame frame(arena);
  float* sc = arena.take<float>(size_t(slots));
  float* val = arena.take<float>(size_t(slots));
  for (int ch = 0; ch < dc; ++ch) {
    for (int s = 0; s < slots; ++s) {
      if (w.overlap && s < R) {
        sc[size_t(s)] = st.has_prev ? st.prev_score[size_t(s * W + ch)] : -INFINITY;
        val[size_t(s)] = st.has_prev ? st.prev_kv[size_t(s * W + ch)] : 0.0f;
      } else {
        int r = w.overlap ? s - R : s, c = w.overlap ? dc + ch : ch;
        sc[size_t(s)] = st.score[size_t(r * W + c)];
        val[size_t(s)] = st.kv[size_t(r * W + c)];
      }
    }
    float m = *std::max_element(sc, sc + slots), sum = 0;
    for (int s = 0; s < slots; ++s) sum += (sc[s] = std::exp(sc[s] - m));
    float acc = 0;
    for (int s = 0; s < slots; ++s) acc += (sc[size_t(s)] / sum) * val[size_t(s)];
    e[ch] = acc;
  }
}

CompressorInput compressor_project(const CompressorWeights& w, const float* x, int64_t rows, const ForwardContext& fc) {
  CompressorInput in{fc.arena.take<float>(size_t(rows * w.width())), fc.arena.take<float>(size_t(rows * w.width()))};
  matmul(w.wkv, x, rows, in.a, false, fc.pool);
  matmul(w.wgate, x, rows, in.g, false, fc.pool);
  return in;
}

size_t compressor_forward(const CompressorWeights& w, CompressorState& st, const float* a, const float* g, int64_t S,
                          int64_t p0, const Rope& rope, float norm_eps, float* entries, int64_t* ids,
                          int64_t mark_at) {
  const int R = w.ratio, W = w.width(), dc = w.d_c;
  size_t n = 0;
  for (int64_t s = 0; s < S; ++s) {
    const int64_t t = p0 + s;
    if (t == mark_at) st.mark();
    const int slot = int(t % R);
    float* kv_row = st.kv.data() + size_t(slot * W);
    float* sc_row = st.score.data() + size_t(slot * W);
    const float* ape = w.ape.data() + size_t(slot * W);
    st.before_slot_write(slot, W);
    for (int c = 0; c < W; ++c) {
      kv_row[c] = a[size_t(s * W + c)];
      sc_row[c] = g[size_t(s * W + c)] + ape[c];
    }
    if (slot != R - 1) continue;
    float* e = entries + n * size_t(dc);
    compressor_pool(w, st, e);
    const int64_t j = t / R;
    rmsnorm(e, w.norm.data(), size_t(dc), norm_eps, e);
    rope.apply(e, dc, j * R);
    ids[n++] = j;
    if (w.overlap) {
      st.before_prev_replace();
      st.prev_kv = st.kv;
      st.prev_score = st.score;
      st.has_prev = true;
    }
  }
  if (mark_at == p0 + S) st.mark();
  return n;
}

}  // namespace dsv4
