// DSpark draft head (architecture.md §4.20). Taps: the mean of the residual streams after each target
// layer. Commit: main_kv = KVrt(RoPE(kv_norm(wkv(main_norm(main_proj(taps)))))) per stage into its
// window ring. Draft: the block [t_{p+1}, noise…] through the stages, whose attention reads the ring plus
// every block token; then hc_head, norm, head, the Markov bias along the greedy chain and the confidence.
#include "model/dspark.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/arena.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "kernels/attention.h"
#include "kernels/hyper_connection.h"
#include "kernels/norm.h"
#include "model/attention.h"
#include "model/moe.h"
#include "model/transformer.h"

namespace dsv4 {

namespace {

// hc_pre → norm → body(x, f) → hc_post over the rows of X, the residual path of every sublayer
// (architecture.md §4.3), as in Model::block_forward.
template <class Body>
void hc_sublayer(const HcParams& hp, const FloatVec& norm, float eps, float* X, int64_t rows, const ForwardContext& fc,
                 Body&& body) {
  const int n = hp.n, D = hp.D;
  const size_t nD = size_t(n) * size_t(D);
  Arena::Frame frame(fc.arena);
  float* x = fc.arena.take<float>(size_t(rows * D));
  float* f = fc.arena.take<float>(size_t(rows * D));
  float* post = fc.arena.take<float>(size_t(rows * n));
  float* C = fc.arena.take<float>(size_t(rows * n * n));
  fc.pool.parallel_for(size_t(rows), [&](size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; ++r) {
      float* xr = x + r * size_t(D);
      hc_pre(hp, X + r * nD, xr, post + r * size_t(n), C + r * size_t(n * n));
      rmsnorm(xr, norm.data(), size_t(D), eps, xr);
    }
  });
  body(static_cast<const float*>(x), f);
  fc.pool.parallel_for(size_t(rows), [&](size_t r0, size_t r1) {
    Arena& local = thread_arena();
    Arena::Frame lf(local);
    float* Xn = local.take<float>(nD);
    for (size_t r = r0; r < r1; ++r) {
      hc_post(n, D, f + r * size_t(D), X + r * nD, post + r * size_t(n), C + r * size_t(n * n), Xn);
      std::memcpy(X + r * nD, Xn, nD * 4);
    }
  });
}

// The attention of a draft stage over blocks of B rows, one block per ring (architecture.md §4.20): each
// block token's queries and its own KV row at its position; every token of a block at p+1 … p+B reads
// ring slots 0 … min(w, p+1)−1 and all B block rows, then sink attention, de-rotation and the output
// projection. The block's KV rows live only here: the ring is read, never written.
void block_attention(const AttentionWeights& w, const ForwardContext& fc, const std::vector<const KVRows*>& rings,
                     const int64_t* pos, int B, const float* x, float* out) {
  const ModelConfig& cfg = fc.cfg;
  const Rope& rope = fc.rope(w.kind);
  const int H = cfg.n_heads, d = cfg.head_dim;
  const int64_t rows = int64_t(rings.size()) * B, win = cfg.window_size;
  Arena& arena = fc.arena;
  Arena::Frame frame(arena);
  float* qr = arena.take<float>(size_t(rows * cfg.q_lora_rank));
  float* q = arena.take<float>(size_t(rows * H * d));
  float* kv = arena.take<float>(size_t(rows * d));
  float* o = arena.take<float>(size_t(rows * H * d));
  attention_queries(w, x, rows, pos, fc, qr, q);
  attention_kv(w, x, rows, pos, fc, kv);
  const float scale = 1.0f / std::sqrt(float(d));
  float* ring_f = arena.take<float>(size_t(win * d));
  const float** kv_rows = arena.take<const float*>(size_t(win + B));
  for (size_t i = 0; i < rings.size(); ++i) {
    const int64_t r0 = int64_t(i) * B, p = pos[r0] - 1;
    const int64_t slots = std::min(win, p + 1);
    int32_t nrows = 0;
    for (int64_t sl = 0; sl < slots; ++sl) {
      rings[i]->get(size_t(sl), ring_f + sl * d);
      kv_rows[nrows++] = ring_f + sl * d;
    }
    for (int j = 0; j < B; ++j) kv_rows[nrows++] = kv + (r0 + j) * d;
    fc.pool.parallel_for(size_t(B), [&](size_t j0, size_t j1) {
      Arena& local = thread_arena();
      Arena::Frame f(local);
      float* z = local.take<float>(sink_attention_scratch(nrows));
      for (size_t j = j0; j < j1; ++j) {
        const int64_t r = r0 + int64_t(j);
        float* orow = o + size_t(r) * size_t(H * d);
        sink_attention_heads(q + size_t(r) * size_t(H * d), H, kv_rows, nrows, d, scale, w.sink.data(), orow, z);
        for (int h = 0; h < H; ++h) rope.apply(orow + size_t(h) * size_t(d), d, pos[r], /*inverse=*/true);
      }
    });
  }
  attention_output(w, o, rows, fc, out);
}

}  // namespace

const DSparkWeights& Model::dspark_weights() const {
  if (!w_.dspark) fail("this checkpoint has no DSpark draft head (only V4-Flash-0731 checkpoints have one)");
  return *w_.dspark;
}

void Model::keep_taps(int layer, const float* X, Segments segs, std::vector<ForwardResult>& res) const {
  const std::vector<int>& targets = cfg_.dspark_target_layer_ids;
  if (std::find(targets.begin(), targets.end(), layer) == targets.end()) return;
  // Taps are concatenated in ascending layer order, as the reference collects them during the forward.
  const size_t k = size_t(std::count_if(targets.begin(), targets.end(), [&](int l) { return l < layer; }));
  const int n = cfg_.hc_mult, D = cfg_.dim;
  const size_t T = targets.size(), nD = size_t(n) * size_t(D);
  for (size_t i = 0; i < segs.size(); ++i)
    for (int64_t s = 0; s < segs[i].S; ++s) {
      const float* xr = X + size_t(segs[i].row0 + s) * nD;
      float* t = res[i].taps.data() + (size_t(s) * T + k) * size_t(D);
      for (int c = 0; c < D; ++c) {
        float sum = xr[c];
        for (int j = 1; j < n; ++j) sum += xr[size_t(j * D + c)];
        t[c] = sum / float(n);
      }
    }
}

void Model::dspark_commit_batch(const std::vector<DSparkCommit>& in) const {
  const DSparkWeights& ds = dspark_weights();
  const int D = cfg_.dim, d = cfg_.head_dim;
  const int64_t win = cfg_.window_size;
  const size_t TD = cfg_.dspark_target_layer_ids.size() * size_t(D);
  // Only the last min(S, w) positions of each sequence reach its rings; the others are never computed.
  std::vector<float> taps;
  std::vector<int64_t> pos;
  std::vector<size_t> owner;
  for (size_t i = 0; i < in.size(); ++i) {
    const DSparkCommit& c = in[i];
    if (c.st->dspark.size() != ds.stages.size()) fail("dspark_commit: the sequence has no DSpark state of this model");
    if (c.S < 0 || c.st->dspark_pos + c.S > c.st->pos)
      fail("dspark_commit: positions {} … {} go beyond the {} positions the main model consumed", c.st->dspark_pos,
           c.st->dspark_pos + c.S - 1, c.st->pos);
    for (int64_t s = std::max<int64_t>(0, c.S - win); s < c.S; ++s) {
      taps.insert(taps.end(), c.taps + size_t(s) * TD, c.taps + size_t(s + 1) * TD);
      pos.push_back(c.st->dspark_pos + s);
      owner.push_back(i);
    }
  }
  const int64_t rows = int64_t(pos.size());
  if (rows > 0) {
    const ForwardContext fc = context();
    Arena::Frame frame(fc.arena);
    float* main_x = fc.arena.take<float>(size_t(rows * D));
    float* kv = fc.arena.take<float>(size_t(rows * d));
    matmul(ds.main_proj, taps.data(), rows, main_x, opt_.act_quant, fc.pool);
    rmsnorm_rows(main_x, ds.main_norm.data(), size_t(rows), size_t(D), float(cfg_.norm_eps), main_x);
    // Every stage sees the same main_x through its own wkv and kv_norm.
    for (size_t s = 0; s < ds.stages.size(); ++s) {
      const AttentionWeights& aw = ds.stages[s].attn;
      attention_kv(aw, main_x, rows, pos.data(), fc, kv);
      for (int64_t r = 0; r < rows; ++r)
        in[owner[size_t(r)]].st->dspark[s].attn.ring.put(size_t(pos[size_t(r)] % win), kv + r * d);
    }
  }
  for (auto& c : in) c.st->dspark_pos += c.S;
}

std::vector<DSparkDraft> Model::dspark_draft_batch(const std::vector<DSparkDraftInput>& in,
                                                   const DSparkDraftOptions& o) const {
  const DSparkWeights& ds = dspark_weights();
  const int n = cfg_.hc_mult, D = cfg_.dim, B = cfg_.dspark_block_size, R = cfg_.dspark_markov_rank;
  const size_t nD = size_t(n) * size_t(D), V = size_t(cfg_.vocab_size);
  const float eps = float(cfg_.norm_eps);
  const size_t N = in.size();
  const int64_t rows = int64_t(N) * B;
  auto check_id = [&](int32_t t, const char* what) {
    if (t < 0 || t >= cfg_.vocab_size) fail("dspark_draft: {} {} is outside the vocabulary [0, {})", what, t, V);
  };
  // Block i: [t_{p+1}, noise × (B−1)] at positions p+1 … p+B.
  std::vector<int32_t> ids(static_cast<size_t>(rows));
  std::vector<int64_t> pos(static_cast<size_t>(rows));
  std::vector<const KVRows*> rings(N);
  for (size_t i = 0; i < N; ++i) {
    const SequenceState& st = *in[i].st;
    if (st.dspark.size() != ds.stages.size()) fail("dspark_draft: the sequence has no DSpark state of this model");
    // The block follows the committed positions: in a verification step the main model may have
    // consumed drafts past them that are about to be rolled back.
    if (st.dspark_pos < 1) fail("dspark_draft: no position is committed to the stage rings yet (commit the taps first)");
    if (st.dspark_pos > st.pos)
      fail("dspark_draft: the stage rings hold {} positions but the main model consumed only {}", st.dspark_pos, st.pos);
    check_id(in[i].token, "token");
    if (in[i].forced)
      for (int j = 0; j < B; ++j) check_id(in[i].forced[j], "forced id");
    for (int j = 0; j < B; ++j) {
      ids[i * size_t(B) + size_t(j)] = j == 0 ? in[i].token : cfg_.dspark_noise_token_id;
      pos[i * size_t(B) + size_t(j)] = st.dspark_pos + j;
    }
  }
  std::vector<float> X(size_t(rows) * nD);
  for (int64_t r = 0; r < rows; ++r) {
    float* x0 = X.data() + size_t(r) * nD;
    w_.embed.dequant_row(ids[size_t(r)], x0);
    for (int k = 1; k < n; ++k) std::memcpy(x0 + size_t(k * D), x0, size_t(D) * 4);
  }

  std::vector<DSparkDraft> out(N);
  const ForwardContext fc = context();
  experts_->begin_forward();
  for (size_t s = 0; s < ds.stages.size(); ++s) {
    const BlockWeights& b = ds.stages[s];
    for (size_t i = 0; i < N; ++i) rings[i] = &in[i].st->dspark[s].attn.ring;
    hc_sublayer(hc_params(b.hc_attn, cfg_), b.attn_norm, eps, X.data(), rows, fc, [&](const float* x, float* f) {
      block_attention(b.attn, fc, rings, pos.data(), B, x, f);
    });
    const BlockWeights* next = s + 1 < ds.stages.size() ? &ds.stages[s + 1] : nullptr;
    const MoeContext mc{*experts_, b.layer_id, next ? &next->moe : nullptr, next ? next->layer_id : -1, peers_.get()};
    hc_sublayer(hc_params(b.hc_ffn, cfg_), b.ffn_norm, eps, X.data(), rows, fc, [&](const float* x, float* f) {
      moe_forward(b.moe, mc, x, ids.data(), rows, fc, f);
    });
    if (o.keep_stage_streams)
      for (size_t i = 0; i < N; ++i)
        out[i].stage_streams.insert(out[i].stage_streams.end(), X.begin() + int64_t(i * B * nD),
                                    X.begin() + int64_t((i + 1) * B * nD));
  }

  // z = hc_head(X) (kept for the confidence head); logits = head(norm(z)).
  const HcParams hp = hc_params(ds.hc_head, cfg_);
  std::vector<float> z(size_t(rows * D)), zn(size_t(rows * D)), logits(size_t(rows) * V);
  for (int64_t r = 0; r < rows; ++r) {
    hc_head(hp, X.data() + size_t(r) * nD, z.data() + r * D);
    rmsnorm(z.data() + r * D, ds.norm.data(), size_t(D), eps, zn.data() + r * D);
  }
  matmul(w_.head, zn.data(), rows, logits.data(), false, fc.pool);

  // Markov chain, row by row for all blocks at once: row j gets markov_w2 · markov_w1[prev_j], where
  // prev_0 = t_{p+1} and prev_{j+1} is picked from row j after its bias (or the forced ids).
  std::vector<float> me(N * size_t(R)), bias(N * V), cin(size_t(rows) * size_t(D + R));
  for (size_t i = 0; i < N; ++i) out[i].ids = {in[i].token};
  for (int j = 0; j < B; ++j) {
    for (size_t i = 0; i < N; ++i) {
      const int32_t prev = in[i].forced ? in[i].forced[j] : out[i].ids[size_t(j)];
      ds.markov_w1.dequant_row(prev, me.data() + i * size_t(R));
    }
    matmul(ds.markov_w2, me.data(), int64_t(N), bias.data(), false, fc.pool);
    for (size_t i = 0; i < N; ++i) {
      const size_t r = i * size_t(B) + size_t(j);
      float* row = logits.data() + r * V;
      for (size_t v = 0; v < V; ++v) row[v] += bias[i * V + v];
      const int32_t next = o.pick ? o.pick(i, j, row) : int32_t(std::max_element(row, row + V) - row);
      check_id(next, "picked id");
      out[i].ids.push_back(next);
      std::memcpy(cin.data() + r * size_t(D + R), z.data() + r * size_t(D), size_t(D) * 4);
      std::memcpy(cin.data() + r * size_t(D + R) + D, me.data() + i * size_t(R), size_t(R) * 4);
    }
  }
  // confidence_j = proj · [z_j ; markov_w1[prev_j]], on z before the norm.
  std::vector<float> conf(static_cast<size_t>(rows));
  matmul(ds.confidence, cin.data(), rows, conf.data(), false, fc.pool);
  for (size_t i = 0; i < N; ++i) {
    out[i].logits.assign(logits.begin() + int64_t(i * B * V), logits.begin() + int64_t((i + 1) * B * V));
    out[i].confidence.assign(conf.begin() + int64_t(i * B), conf.begin() + int64_t((i + 1) * B));
  }
  return out;
}

}  // namespace dsv4
