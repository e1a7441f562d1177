// The V4 transformer (architecture.md §4.1–4.3, §4.18–4.19): the token embedding copied into n residual
// streams; per block an attention and an MoE sublayer, each wrapped by a hyper-connection (hc_pre with
// Sinkhorn, hc_post); hc_head collapses the streams, then the final RMSNorm and the output head. The
// preview MTP block drafts one token further from the final streams and the next token's embedding.
#include "model/transformer.h"

#include <atomic>
#include <cstring>
#include <optional>

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

void Model::prefetch_hash_experts(const std::vector<int32_t>& ids) const {
  if (!experts_->streams()) return;
  for (const BlockWeights& b : w_.blocks) {
    if (!b.moe.hash()) continue;
    std::vector<int32_t> routed;
    for (int32_t t : ids)
      for (int i = 0; i < cfg_.n_activated_experts; ++i)
        routed.push_back(int32_t(b.moe.tid2eid_at(t, i, cfg_.n_activated_experts)));
    auto e = distinct_experts(routed, cfg_.n_routed_experts);
    experts_->prefetch(b.layer_id, e.data(), e.size(), ExpertPredictor::Hash);
  }
}

ThreadPool& Model::pool() const { return ThreadPool::global(); }

SequenceState Model::new_sequence() const {
  SequenceState st;
  st.layers.resize(w_.blocks.size());
  for (size_t l = 0; l < w_.blocks.size(); ++l) st.layers[l].attn.reset(w_.blocks[l].attn, cfg_, opt_);
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

void Model::block_forward(const BlockWeights& b, const std::vector<BlockState*>& states,
                          const std::vector<Segment>& segs, float* X, const int32_t* ids,
                          std::vector<std::vector<int32_t>>* topk, const BlockWeights* next) const {
  const int n = cfg_.hc_mult, D = cfg_.dim;
  const size_t nD = size_t(n) * size_t(D);
  const int64_t rows = total_rows(segs);
  std::vector<float> x(size_t(rows * D)), f(size_t(rows * D)), post(size_t(rows * n)), C(size_t(rows * n * n));

  // hc_pre → norm → body → hc_post, the residual path of every sublayer (architecture.md §4.3).
  auto sublayer = [&](const HcWeights& hcw, const FloatVec& norm, auto&& body) {
    HcParams hp = hc_params(hcw, cfg_);
    std::optional<profile::Scope> phase(std::in_place, "hc_pre_norm");
    pool().parallel_for(size_t(rows), [&](size_t r0, size_t r1) {
      for (size_t r = r0; r < r1; ++r) {
        float* xr = x.data() + r * size_t(D);
        hc_pre(hp, X + r * nD, xr, post.data() + r * size_t(n), C.data() + r * size_t(n * n));
        rmsnorm(xr, norm.data(), size_t(D), float(cfg_.norm_eps), xr);
      }
    });
    phase.reset();
    body();
    phase.emplace("hc_post");
    pool().parallel_for(size_t(rows), [&](size_t r0, size_t r1) {
      std::vector<float> Xn(nD);
      for (size_t r = r0; r < r1; ++r) {
        hc_post(n, D, f.data() + r * size_t(D), X + r * nD, post.data() + r * size_t(n), C.data() + r * size_t(n * n),
                Xn.data());
        std::memcpy(X + r * nD, Xn.data(), nD * 4);
      }
    });
  };

  sublayer(b.hc_attn, b.attn_norm, [&] {
    std::vector<AttentionState*> as;
    for (auto* s : states) as.push_back(&s->attn);
    attention_forward(b.attn, as, segs, cfg_, rope_for(b.attn.kind), x.data(), opt_, pool(), f.data(), topk);
  });
  const MoeContext mc{*experts_, b.layer_id, next ? &next->moe : nullptr, next ? next->layer_id : -1};
  sublayer(b.hc_ffn, b.ffn_norm, [&] { moe_forward(b.moe, mc, cfg_, x.data(), ids, rows, opt_, pool(), f.data()); });
}

std::vector<float> Model::head_logits(const HcWeights& hc, const FloatVec& norm, const float* X, int64_t rows) const {
  const int D = cfg_.dim;
  const size_t nD = size_t(cfg_.hc_mult) * size_t(D);
  profile::Scope phase("head");
  HcParams hp = hc_params(hc, cfg_);
  std::vector<float> z(size_t(rows * D)), logits(size_t(rows) * size_t(cfg_.vocab_size));
  for (int64_t r = 0; r < rows; ++r) {
    hc_head(hp, X + size_t(r) * nD, z.data() + r * D);
    rmsnorm(z.data() + r * D, norm.data(), size_t(D), float(cfg_.norm_eps), z.data() + r * D);
  }
  matmul(w_.head, z.data(), rows, logits.data(), false, pool());
  return logits;
}

namespace {
// Gathers the given rows of a [rows, width] matrix.
std::vector<float> gather_rows(const std::vector<float>& m, const std::vector<int64_t>& rows, size_t width) {
  std::vector<float> out(rows.size() * width);
  for (size_t i = 0; i < rows.size(); ++i)
    std::memcpy(out.data() + i * width, m.data() + size_t(rows[i]) * width, width * 4);
  return out;
}
}  // namespace

std::vector<ForwardResult> Model::forward_batch(const std::vector<SeqInput>& in, const ForwardOptions& fo) const {
  const int n = cfg_.hc_mult, D = cfg_.dim;
  const size_t nD = size_t(n) * size_t(D);
  std::vector<Segment> segs;
  std::vector<int32_t> ids;
  int64_t row = 0;
  for (auto& s : in) {
    if (s.S <= 0) fail("forward needs at least one token per sequence");
    for (int64_t i = 0; i < s.S; ++i)
      if (s.ids[i] < 0 || s.ids[i] >= cfg_.vocab_size)
        fail("token id {} at position {} is outside the vocabulary [0, {})", s.ids[i], s.st->pos + i, cfg_.vocab_size);
    if (s.mark_after > s.S) fail("mark_after {} is past the {} tokens of the forward", s.mark_after, s.S);
    if (s.logit_rows < 1 || s.logit_rows > s.S) fail("logit_rows {} is outside [1, {}]", s.logit_rows, s.S);
    segs.push_back({row, s.S, s.st->pos, s.mark_after >= 0 ? s.st->pos + s.mark_after : -1});
    ids.insert(ids.end(), s.ids, s.ids + s.S);
    row += s.S;
  }
  // The main layers are marked inside the forward; the MTP block and DSpark rings stop journaling.
  std::vector<ForwardResult> res(in.size());
  for (size_t i = 0; i < in.size(); ++i)
    if (in[i].mark_after >= 0) {
      SequenceState& st = *in[i].st;
      for (auto* v : {&st.mtp, &st.dspark})
        for (auto& l : *v) l.attn.release();
      st.mark_id = next_mark_id.fetch_add(1);
      res[i].mark = {segs[i].mark_at, st.mtp_pos, st.dspark_pos, st.mark_id, true};
    }
  const int64_t rows = row;
  experts_->begin_forward();
  prefetch_hash_experts(ids);  // hash-routed layers' experts are known from the token ids alone
  std::vector<float> X(size_t(rows) * nD);
  pool().parallel_for(size_t(rows), [&](size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; ++r) {
      float* x0 = X.data() + r * nD;
      w_.embed.dequant_row(ids[r], x0);
      for (int k = 1; k < n; ++k) std::memcpy(x0 + size_t(k * D), x0, size_t(D) * 4);
    }
  });

  if (fo.keep_taps) {
    if (!w_.dspark) fail("keep_taps: this checkpoint has no DSpark draft head");
    const size_t TD = cfg_.dspark_target_layer_ids.size() * size_t(D);
    for (size_t i = 0; i < in.size(); ++i) res[i].taps.resize(size_t(segs[i].S) * TD);
  }
  std::vector<int64_t> last_rows;
  for (auto& s : segs) last_rows.push_back(s.row0 + s.S - 1);
  for (size_t l = 0; l < w_.blocks.size(); ++l) {
    std::vector<BlockState*> states;
    for (auto& s : in) states.push_back(&s.st->layers[l]);
    std::vector<std::vector<int32_t>> topk;
    block_forward(w_.blocks[l], states, segs, X.data(), ids.data(), &topk,
                  l + 1 < w_.blocks.size() ? &w_.blocks[l + 1] : nullptr);
    if (fo.keep_taps) keep_taps(int(l), X.data(), segs, res);
    for (size_t i = 0; i < in.size(); ++i) {
      res[i].last_topk.push_back(topk.empty() ? std::vector<int32_t>{} : topk[size_t(last_rows[i])]);
      if (fo.keep_layer_streams)
        res[i].layer_streams.insert(res[i].layer_streams.end(), X.begin() + last_rows[i] * int64_t(nD),
                                    X.begin() + (last_rows[i] + 1) * int64_t(nD));
    }
  }
  // Logits of the last row of each sequence, or of every row.
  std::vector<int64_t> head_rows;
  std::vector<size_t> nrows;
  for (size_t i = 0; i < segs.size(); ++i) {
    const Segment& s = segs[i];
    nrows.push_back(size_t(fo.all_logits ? s.S : in[i].logit_rows));
    for (int64_t r = s.row0 + s.S - int64_t(nrows[i]); r < s.row0 + s.S; ++r) head_rows.push_back(r);
  }
  std::vector<float> Xh = gather_rows(X, head_rows, nD);
  std::vector<float> logits = head_logits(w_.hc_head, w_.norm, Xh.data(), int64_t(head_rows.size()));
  const size_t V = size_t(cfg_.vocab_size);
  size_t at = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    res[i].logits.assign(logits.begin() + int64_t(at * V), logits.begin() + int64_t((at + nrows[i]) * V));
    at += nrows[i];
    if (fo.keep_streams || in[i].keep_streams)
      res[i].final_streams.assign(X.begin() + segs[i].row0 * int64_t(nD), X.begin() + (segs[i].row0 + segs[i].S) * int64_t(nD));
    in[i].st->pos += segs[i].S;
  }
  return res;
}

std::vector<std::vector<float>> Model::mtp_forward_batch(const std::vector<MtpInput>& in) const {
  if (!w_.mtp) fail("this checkpoint has no MTP block");
  const MtpWeights& m = *w_.mtp;
  const int n = cfg_.hc_mult, D = cfg_.dim;
  const size_t nD = size_t(n) * size_t(D);
  const float eps = float(cfg_.norm_eps);
  std::vector<Segment> segs;
  std::vector<int32_t> ids;
  int64_t rows = 0;
  for (auto& s : in) {
    for (int64_t i = 0; i < s.S; ++i)
      if (s.next_ids[i] < 0 || s.next_ids[i] >= cfg_.vocab_size) fail("token id {} is outside the vocabulary", s.next_ids[i]);
    segs.push_back({rows, s.S, s.st->mtp_pos});
    ids.insert(ids.end(), s.next_ids, s.next_ids + s.S);
    rows += s.S;
  }
  // X = broadcast(e_proj(enorm(E[t+1]))) + h_proj(hnorm(X_main)), per stream (architecture.md §4.19).
  std::vector<float> e(size_t(rows * D)), ep(size_t(rows * D)), h(size_t(rows) * nD), hp(size_t(rows) * nD),
      X(size_t(rows) * nD);
  for (size_t i = 0; i < in.size(); ++i)
    for (int64_t s = 0; s < in[i].S; ++s) {
      const int64_t r = segs[i].row0 + s;
      w_.embed.dequant_row(ids[size_t(r)], e.data() + r * D);
      rmsnorm(e.data() + r * D, m.enorm.data(), size_t(D), eps, e.data() + r * D);
      for (int k = 0; k < n; ++k)
        rmsnorm(in[i].main_streams + size_t(s) * nD + size_t(k * D), m.hnorm.data(), size_t(D), eps,
                h.data() + size_t(r) * nD + size_t(k * D));
    }
  matmul(m.e_proj, e.data(), rows, ep.data(), opt_.act_quant, pool());
  matmul(m.h_proj, h.data(), rows * n, hp.data(), opt_.act_quant, pool());
  for (int64_t r = 0; r < rows; ++r)
    for (int k = 0; k < n; ++k)
      for (int c = 0; c < D; ++c) {
        const size_t i = size_t(r) * nD + size_t(k * D + c);
        X[i] = ep[size_t(r * D + c)] + hp[i];
      }
  std::vector<BlockState*> states;
  for (auto& s : in) states.push_back(&s.st->mtp[0]);
  experts_->begin_forward();
  block_forward(m.block, states, segs, X.data(), ids.data(), nullptr, nullptr);
  std::vector<int64_t> last;
  for (auto& s : segs) last.push_back(s.row0 + s.S - 1);
  std::vector<float> Xh = gather_rows(X, last, nD);
  std::vector<float> logits = head_logits(m.hc_head, m.norm, Xh.data(), int64_t(last.size()));
  std::vector<std::vector<float>> out;
  const size_t V = size_t(cfg_.vocab_size);
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i].last_streams) in[i].last_streams->assign(Xh.begin() + int64_t(i * nD), Xh.begin() + int64_t((i + 1) * nD));
    out.emplace_back(logits.begin() + int64_t(i * V), logits.begin() + int64_t((i + 1) * V));
    in[i].st->mtp_pos += in[i].S;
  }
  return out;
}

}  // namespace dsv4
