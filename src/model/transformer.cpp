// The V4 transformer (architecture.md §4.1–4.3, §4.18–4.19): the token embedding copied into n residual
// streams; per block an attention and an MoE sublayer, each wrapped by a hyper-connection (hc_pre with
// Sinkhorn, hc_post); hc_head collapses the streams, then the final RMSNorm and the output head. The
// preview MTP block drafts one token further from the final streams and the next token's embedding.
#include "model/transformer.h"

#include <atomic>
#include <cstring>
#include <optional>

#include "core/arena.h"
#include "core/error.h"
#include "core/profile.h"
#include "core/thread_pool.h"
#include "kernels/hyper_connection.h"
#include "kernels/norm.h"
#include "model/moe.h"

namespace dsv4 {

namespace {

RopeParams rope_params(const ModelConfig& c, bool compressed) {
  RopeParams p;
  p.rope_dim = c.rope_head_dim;
  p.base = compressed ? c.compress_rope_theta : c.rope_theta;
  p.yarn = compressed;
  p.factor = c.rope_factor;
  p.beta_fast = c.beta_fast;
  p.beta_slow = c.beta_slow;
  p.original_seq_len = c.original_seq_len;
  return p;
}

}  // namespace

HcParams hc_params(const HcWeights& w, const ModelConfig& c) {
  HcParams p;
  p.fn = w.fn.data();
  p.base = w.base.data();
  p.scale = w.scale.data();
  p.n = c.hc_mult;
  p.D = c.dim;
  p.norm_eps = float(c.norm_eps);
  p.hc_eps = float(c.hc_eps);
  p.sinkhorn_iters = c.hc_sinkhorn_iters;
  return p;
}

size_t SequenceState::kv_bytes() const {
  size_t b = 0;
  for (auto* v : {&layers, &mtp, &dspark})
    for (auto& l : *v)
      b += l.attn.ring.bytes() + l.attn.compressed.bytes() + l.attn.indexer.keys.size() * 4;
  return b;
}

namespace {
// Mark ids are unique across sequences, so a mark is only accepted by the state that made it or a copy.
std::atomic<uint64_t> next_mark_id{1};
}  // namespace

SequenceState::Mark SequenceState::mark() {
  for (auto* v : {&layers, &mtp, &dspark})
    for (auto& l : *v) l.attn.mark();
  mark_id = next_mark_id.fetch_add(1);
  return {pos, mtp_pos, dspark_pos, mark_id};
}

void SequenceState::rollback(const Mark& m) {
  if (m.id == 0 || m.id != mark_id) fail("rollback to a mark that is not this sequence's active mark");
  for (auto& l : layers) l.attn.rollback();
  pos = m.pos;
  if (m.main_only) return;
  for (auto* v : {&mtp, &dspark})
    for (auto& l : *v) l.attn.rollback();
  mtp_pos = m.mtp_pos;
  dspark_pos = m.dspark_pos;
}

void SequenceState::release() {
  for (auto* v : {&layers, &mtp, &dspark})
    for (auto& l : *v) l.attn.release();
  mark_id = 0;
}

size_t SequenceState::journal_bytes() const {
  size_t b = 0;
  for (auto* v : {&layers, &mtp, &dspark})
    for (auto& l : *v) b += l.attn.journal_bytes();
  return b;
}

Model::Model(const std::string& dir, const NumericsOptions& opt)
    : ckpt_(std::make_unique<Checkpoint>(dir)),
      cfg_(load_config(dir)),
      w_(bind_weights(*ckpt_, cfg_)),
      opt_(opt),
      rope_window_(rope_params(cfg_, false)),
      rope_compressed_(rope_params(cfg_, true)),
      experts_(std::make_shared<MappedExperts>(w_)) {}

void Model::set_expert_store(std::shared_ptr<ExpertStore> s) { experts_ = s ? std::move(s) : std::make_shared<MappedExperts>(w_); }

void Model::prefetch_hash_experts(const int32_t* ids, size_t n) const {
  if (!experts_->streams()) return;
  for (const BlockWeights& b : w_.blocks) {
    if (!b.moe.hash()) continue;
    std::vector<int32_t> routed;
    for (size_t i = 0; i < n; ++i)
      for (int k = 0; k < cfg_.n_activated_experts; ++k)
        routed.push_back(int32_t(b.moe.tid2eid_at(ids[i], k, cfg_.n_activated_experts)));
    auto e = distinct_experts(routed, cfg_.n_routed_experts);
    experts_->prefetch(b.layer_id, e.data(), e.size(), ExpertPredictor::Hash);
  }
}

void Model::run_experts(int layer, const ExpertJobs& jobs, int64_t n_bound) const {
  const MoeWeights* m = moe_of(w_, layer);
  if (!m) fail("no MoE weights for layer {}", layer);
  run_expert_jobs(*m, *experts_, layer, jobs, n_bound, context());
}

ThreadPool& Model::pool() const { return ThreadPool::global(); }

ForwardContext Model::context() const {
  return {cfg_, opt_, pool(), rope_window_, rope_compressed_, thread_arena()};
}

SequenceState Model::new_sequence(int64_t reserve_positions) const {
  SequenceState st;
  st.layers.resize(w_.blocks.size());
  for (size_t l = 0; l < w_.blocks.size(); ++l)
    st.layers[l].attn.reset(w_.blocks[l].attn, cfg_, opt_, reserve_positions);
  if (w_.mtp) {
    st.mtp.resize(1);
    st.mtp[0].attn.reset(w_.mtp->block.attn, cfg_, opt_);
  }
  if (w_.dspark) {
    st.dspark.resize(w_.dspark->stages.size());
    for (size_t s = 0; s < st.dspark.size(); ++s) st.dspark[s].attn.reset(w_.dspark->stages[s].attn, cfg_, opt_);
  }
  return st;
}

void Model::block_forward(const BlockWeights& b, std::span<BlockState* const> states, Segments segs, float* X,
                          const int32_t* ids, const Picks* topk, const BlockWeights* next,
                          const ForwardContext& fc) const {
  const int n = cfg_.hc_mult, D = cfg_.dim;
  const size_t nD = size_t(n) * size_t(D);
  const int64_t rows = total_rows(segs);
  Arena& arena = fc.arena;
  Arena::Frame frame(arena);
  float* x = arena.take<float>(size_t(rows * D));
  float* f = arena.take<float>(size_t(rows * D));
  float* post = arena.take<float>(size_t(rows * n));
  float* C = arena.take<float>(size_t(rows * n * n));

  // hc_pre → norm → body → hc_post, the residual path of every sublayer (architecture.md §4.3).
  auto sublayer = [&](const HcWeights& hcw, const FloatVec& norm, auto&& body) {
    HcParams hp = hc_params(hcw, cfg_);
    std::optional<profile::Scope> phase(std::in_place, "hc_pre_norm");
    fc.pool.parallel_for(size_t(rows), [&](size_t r0, size_t r1) {
      for (size_t r = r0; r < r1; ++r) {
        float* xr = x + r * size_t(D);
        hc_pre(hp, X + r * nD, xr, post + r * size_t(n), C + r * size_t(n * n));
        rmsnorm(xr, norm.data(), size_t(D), float(cfg_.norm_eps), xr);
      }
    });
    phase.reset();
    body();
    phase.emplace("hc_post");
    fc.pool.parallel_for(size_t(rows), [&](size_t r0, size_t r1) {
      Arena& local = thread_arena();
      Arena::Frame lf(local);
      float* Xn = local.take<float>(nD);
      for (size_t r = r0; r < r1; ++r) {
        hc_post(n, D, f + r * size_t(D), X + r * nD, post + r * size_t(n), C + r * size_t(n * n), Xn);
        std::memcpy(X + r * nD, Xn, nD * 4);
      }
    });
  };

  sublayer(b.hc_attn, b.attn_norm, [&] {
    Arena::Frame af(arena);
    AttentionState** as = arena.take<AttentionState*>(states.size());
    for (size_t i = 0; i < states.size(); ++i) as[i] = &states[i]->attn;
    attention_forward(b.attn, {as, states.size()}, segs, x, fc, f, topk);
  });
  const MoeContext mc{*experts_, b.layer_id, next ? &next->moe : nullptr, next ? next->layer_id : -1, peers_.get()};
  sublayer(b.hc_ffn, b.ffn_norm, [&] { moe_forward(b.moe, mc, x, ids, rows, fc, f); });
}

void Model::head_logits(const HcWeights& hc, const FloatVec& norm, const float* X, int64_t rows,
                        const ForwardContext& fc, float* logits) const {
  const int D = cfg_.dim;
  const size_t nD = size_t(cfg_.hc_mult) * size_t(D);
  profile::Scope phase("head");
  HcParams hp = hc_params(hc, cfg_);
  Arena::Frame frame(fc.arena);
  float* z = fc.arena.take<float>(size_t(rows * D));
  for (int64_t r = 0; r < rows; ++r) {
    hc_head(hp, X + size_t(r) * nD, z + r * D);
    rmsnorm(z + r * D, norm.data(), size_t(D), float(cfg_.norm_eps), z + r * D);
  }
  matmul(w_.head, z, rows, logits, false, fc.pool);
}

namespace {
// Gathers the given rows of a [*, width] matrix into out.
void gather_rows(const float* m, const int64_t* rows, size_t n, size_t width, float* out) {
  for (size_t i = 0; i < n; ++i) std::memcpy(out + i * width, m + size_t(rows[i]) * width, width * 4);
}
}  // namespace

std::vector<ForwardResult> Model::forward_batch(const std::vector<SeqInput>& in, const ForwardOptions& fo) const {
  std::vector<ForwardResult> res;
  forward_batch(in, res, fo);
  return res;
}

void Model::forward_batch(const std::vector<SeqInput>& in, std::vector<ForwardResult>& res,
                          const ForwardOptions& fo) const {
  const int n = cfg_.hc_mult, D = cfg_.dim;
  const size_t nD = size_t(n) * size_t(D);
  const ForwardContext fc = context();
  Arena& arena = fc.arena;
  Arena::Frame frame(arena);
  int64_t rows = 0;
  for (auto& s : in) {
    if (s.S <= 0) fail("forward needs at least one token per sequence");
    for (int64_t i = 0; i < s.S; ++i)
      if (s.ids[i] < 0 || s.ids[i] >= cfg_.vocab_size)
        fail("token id {} at position {} is outside the vocabulary [0, {})", s.ids[i], s.st->pos + i, cfg_.vocab_size);
    if (s.mark_after > s.S) fail("mark_after {} is past the {} tokens of the forward", s.mark_after, s.S);
    if (s.logit_rows < 1 || s.logit_rows > s.S) fail("logit_rows {} is outside [1, {}]", s.logit_rows, s.S);
    rows += s.S;
  }
  Segment* segs = arena.take<Segment>(in.size());
  int32_t* ids = arena.take<int32_t>(size_t(rows));
  for (size_t i = 0, row = 0; i < in.size(); row += size_t(in[i].S), ++i) {
    const SeqInput& s = in[i];
    segs[i] = {int64_t(row), s.S, s.st->pos, s.mark_after >= 0 ? s.st->pos + s.mark_after : -1};
    std::copy_n(s.ids, s.S, ids + row);
  }
  const Segments seg_span(segs, in.size());
  // Every field of a reused result is reset to what a fresh one holds.
  res.resize(in.size());
  for (ForwardResult& r : res) {
    r.final_streams.clear();
    r.layer_streams.clear();
    r.last_topk.resize(w_.blocks.size());
    r.mark = {};
    r.taps.clear();
  }
  // The main layers are marked inside the forward; the MTP block and DSpark rings stop journaling.
  for (size_t i = 0; i < in.size(); ++i)
    if (in[i].mark_after >= 0) {
      SequenceState& st = *in[i].st;
      for (auto* v : {&st.mtp, &st.dspark})
        for (auto& l : *v) l.attn.release();
      st.mark_id = next_mark_id.fetch_add(1);
      res[i].mark = {segs[i].mark_at, st.mtp_pos, st.dspark_pos, st.mark_id, true};
    }
  experts_->begin_forward();
  prefetch_hash_experts(ids, size_t(rows));  // hash-routed layers' experts are known from the token ids alone
  float* X = arena.take<float>(size_t(rows) * nD);
  fc.pool.parallel_for(size_t(rows), [&](size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; ++r) {
      float* x0 = X + r * nD;
      w_.embed.dequant_row(ids[r], x0);
      for (int k = 1; k < n; ++k) std::memcpy(x0 + size_t(k * D), x0, size_t(D) * 4);
    }
  });

  if (fo.keep_taps) {
    if (!w_.dspark) fail("keep_taps: this checkpoint has no DSpark draft head");
    const size_t TD = cfg_.dspark_target_layer_ids.size() * size_t(D);
    for (size_t i = 0; i < in.size(); ++i) res[i].taps.assign(size_t(segs[i].S) * TD, 0.0f);
  }
  int64_t* last_rows = arena.take<int64_t>(in.size());
  for (size_t i = 0; i < in.size(); ++i) last_rows[i] = segs[i].row0 + segs[i].S - 1;
  BlockState** states = arena.take<BlockState*>(in.size());
  const Picks topk = Picks::take(arena, rows, cfg_.index_topk);
  for (size_t l = 0; l < w_.blocks.size(); ++l) {
    const BlockWeights& b = w_.blocks[l];
    for (size_t i = 0; i < in.size(); ++i) states[i] = &in[i].st->layers[l];
    block_forward(b, {states, in.size()}, seg_span, X, ids, &topk, l + 1 < w_.blocks.size() ? &w_.blocks[l + 1] : nullptr,
                  fc);
    if (fo.keep_taps) keep_taps(int(l), X, seg_span, res);
    for (size_t i = 0; i < in.size(); ++i) {
      std::vector<int32_t>& picked = res[i].last_topk[l];
      if (has_indexer(b.attn.kind)) picked.assign(topk.row(last_rows[i]), topk.row(last_rows[i]) + topk.n[last_rows[i]]);
      else picked.clear();
      if (fo.keep_layer_streams)
        res[i].layer_streams.insert(res[i].layer_streams.end(), X + last_rows[i] * int64_t(nD),
                                    X + (last_rows[i] + 1) * int64_t(nD));
    }
  }
  // Logits of the last row of each sequence, or of every row.
  size_t* nrows = arena.take<size_t>(in.size());
  size_t n_head = 0;
  for (size_t i = 0; i < in.size(); ++i) n_head += (nrows[i] = size_t(fo.all_logits ? segs[i].S : in[i].logit_rows));
  int64_t* head_rows = arena.take<int64_t>(n_head);
  for (size_t i = 0, at = 0; i < in.size(); ++i)
    for (int64_t r = segs[i].row0 + segs[i].S - int64_t(nrows[i]); r < segs[i].row0 + segs[i].S; ++r) head_rows[at++] = r;
  float* Xh = arena.take<float>(n_head * nD);
  gather_rows(X, head_rows, n_head, nD, Xh);
  const size_t V = size_t(cfg_.vocab_size);
  float* logits = arena.take<float>(n_head * V);
  head_logits(w_.hc_head, w_.norm, Xh, int64_t(n_head), fc, logits);
  size_t at = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    res[i].logits.assign(logits + at * V, logits + (at + nrows[i]) * V);
    at += nrows[i];
    if (fo.keep_streams || in[i].keep_streams)
      res[i].final_streams.assign(X + segs[i].row0 * int64_t(nD), X + (segs[i].row0 + segs[i].S) * int64_t(nD));
    in[i].st->pos += segs[i].S;
  }
}

std::vector<std::vector<float>> Model::mtp_forward_batch(const std::vector<MtpInput>& in) const {
  std::vector<std::vector<float>> out;
  mtp_forward_batch(in, out);
  return out;
}

void Model::mtp_forward_batch(const std::vector<MtpInput>& in, std::vector<std::vector<float>>& out) const {
  if (!w_.mtp) fail("this checkpoint has no MTP block");
  const MtpWeights& m = *w_.mtp;
  const int n = cfg_.hc_mult, D = cfg_.dim;
  const size_t nD = size_t(n) * size_t(D);
  const float eps = float(cfg_.norm_eps);
  const ForwardContext fc = context();
  Arena& arena = fc.arena;
  Arena::Frame frame(arena);
  int64_t rows = 0;
  for (auto& s : in) {
    for (int64_t i = 0; i < s.S; ++i)
      if (s.next_ids[i] < 0 || s.next_ids[i] >= cfg_.vocab_size) fail("token id {} is outside the vocabulary", s.next_ids[i]);
    rows += s.S;
  }
  Segment* segs = arena.take<Segment>(in.size());
  int32_t* ids = arena.take<int32_t>(size_t(rows));
  for (size_t i = 0, row = 0; i < in.size(); row += size_t(in[i].S), ++i) {
    segs[i] = {int64_t(row), in[i].S, in[i].st->mtp_pos};
    std::copy_n(in[i].next_ids, in[i].S, ids + row);
  }
  // X = broadcast(e_proj(enorm(E[t+1]))) + h_proj(hnorm(X_main)), per stream (architecture.md §4.19).
  float* e = arena.take<float>(size_t(rows * D));
  float* ep = arena.take<float>(size_t(rows * D));
  float* h = arena.take<float>(size_t(rows) * nD);
  float* hp = arena.take<float>(size_t(rows) * nD);
  float* X = arena.take<float>(size_t(rows) * nD);
  for (size_t i = 0; i < in.size(); ++i)
    for (int64_t s = 0; s < in[i].S; ++s) {
      const int64_t r = segs[i].row0 + s;
      w_.embed.dequant_row(ids[size_t(r)], e + r * D);
      rmsnorm(e + r * D, m.enorm.data(), size_t(D), eps, e + r * D);
      for (int k = 0; k < n; ++k)
        rmsnorm(in[i].main_streams + size_t(s) * nD + size_t(k * D), m.hnorm.data(), size_t(D), eps,
                h + size_t(r) * nD + size_t(k * D));
    }
  matmul(m.e_proj, e, rows, ep, opt_.act_quant, fc.pool);
  matmul(m.h_proj, h, rows * n, hp, opt_.act_quant, fc.pool);
  for (int64_t r = 0; r < rows; ++r)
    for (int k = 0; k < n; ++k)
      for (int c = 0; c < D; ++c) {
        const size_t i = size_t(r) * nD + size_t(k * D + c);
        X[i] = ep[size_t(r * D + c)] + hp[i];
      }
  BlockState** states = arena.take<BlockState*>(in.size());
  for (size_t i = 0; i < in.size(); ++i) states[i] = &in[i].st->mtp[0];
  experts_->begin_forward();
  block_forward(m.block, {states, in.size()}, {segs, in.size()}, X, ids, nullptr, nullptr, fc);
  int64_t* last = arena.take<int64_t>(in.size());
  for (size_t i = 0; i < in.size(); ++i) last[i] = segs[i].row0 + segs[i].S - 1;
  float* Xh = arena.take<float>(in.size() * nD);
  gather_rows(X, last, in.size(), nD, Xh);
  const size_t V = size_t(cfg_.vocab_size);
  float* logits = arena.take<float>(in.size() * V);
  head_logits(m.hc_head, m.norm, Xh, int64_t(in.size()), fc, logits);
  out.resize(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i].last_streams) in[i].last_streams->assign(Xh + i * nD, Xh + (i + 1) * nD);
    out[i].assign(logits + i * V, logits + (i + 1) * V);
    in[i].st->mtp_pos += in[i].S;
  }
}

}  // namespace dsv4
