#include "model/transformer.h"

#include <cstring>

#include "core/error.h"
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

}  // namespace

size_t SequenceState::kv_bytes() const {
  size_t b = 0;
  for (auto* v : {&layers, &mtp})
    for (auto& l : *v)
      b += l.attn.ring.bytes() + l.attn.compressed.bytes() + l.attn.indexer.keys.size() * 4;
  return b;
}

Model::Model(const std::string& dir, const NumericsOptions& opt)
    : ckpt_(std::make_unique<Checkpoint>(dir)),
      cfg_(load_config(dir)),
      w_(bind_weights(*ckpt_, cfg_)),
      opt_(opt),
      rope_window_(rope_params(cfg_, false)),
      rope_compressed_(rope_params(cfg_, true)) {}

ThreadPool& Model::pool() const { return ThreadPool::global(); }

SequenceState Model::new_sequence() const {
  SequenceState st;
  st.layers.resize(w_.blocks.size());
  for (size_t l = 0; l < w_.blocks.size(); ++l) st.layers[l].attn.reset(w_.blocks[l].attn, cfg_, opt_);
  if (w_.mtp) {
    st.mtp.resize(1);
    st.mtp[0].attn.reset(w_.mtp->block.attn, cfg_, opt_);
  }
  return st;
}

void Model::block_forward(const BlockWeights& b, BlockState& st, float* X, const int32_t* ids, int64_t S, int64_t p0,
                          std::vector<int32_t>* last_topk) const {
  const int n = cfg_.hc_mult, D = cfg_.dim;
  const size_t nD = size_t(n) * size_t(D);
  std::vector<float> x(size_t(S * D)), f(size_t(S * D)), post(size_t(S * n)), C(size_t(S * n * n)), Xn(nD);

  auto sublayer = [&](const HcWeights& hcw, const FloatVec& norm, auto&& body) {
    HcParams hp = hc_params(hcw, cfg_);
    pool().parallel_for(size_t(S), [&](size_t s0, size_t s1) {
      for (size_t s = s0; s < s1; ++s) {
        hc_pre(hp, X + s * nD, x.data() + s * size_t(D), post.data() + s * size_t(n), C.data() + s * size_t(n * n));
        rmsnorm(x.data() + s * size_t(D), norm.data(), size_t(D), float(cfg_.norm_eps), x.data() + s * size_t(D));
      }
    });
    body();
    for (int64_t s = 0; s < S; ++s) {
      hc_post(n, D, f.data() + s * D, X + size_t(s) * nD, post.data() + s * n, C.data() + s * n * n, Xn.data());
      std::memcpy(X + size_t(s) * nD, Xn.data(), nD * 4);
    }
  };

  sublayer(b.hc_attn, b.attn_norm, [&] {
    std::vector<std::vector<int32_t>> picks;
    attention_forward(b.attn, st.attn, cfg_, rope_for(b.attn.ratio), x.data(), S, p0, opt_, pool(), f.data(),
                      last_topk ? &picks : nullptr);
    if (last_topk) *last_topk = picks.empty() ? std::vector<int32_t>{} : picks.back();
  });
  sublayer(b.hc_ffn, b.ffn_norm, [&] { moe_forward(b.moe, cfg_, x.data(), ids, S, opt_, pool(), f.data()); });
}

std::vector<float> Model::head_logits(const HcWeights& hc, const FloatVec& norm, const float* X, int64_t rows) const {
  const int D = cfg_.dim;
  const size_t nD = size_t(cfg_.hc_mult) * size_t(D);
  HcParams hp = hc_params(hc, cfg_);
  std::vector<float> z(size_t(rows * D)), logits(size_t(rows) * size_t(cfg_.vocab_size));
  for (int64_t r = 0; r < rows; ++r) {
    hc_head(hp, X + size_t(r) * nD, z.data() + r * D);
    rmsnorm(z.data() + r * D, norm.data(), size_t(D), float(cfg_.norm_eps), z.data() + r * D);
  }
  matmul(w_.head, z.data(), rows, logits.data(), false, pool());
  return logits;
}

ForwardResult Model::forward(SequenceState& st, const int32_t* ids, int64_t S, const ForwardOptions& fo) const {
  if (S <= 0) fail("forward needs at least one token");
  const int n = cfg_.hc_mult, D = cfg_.dim;
  const size_t nD = size_t(n) * size_t(D);
  const int64_t p0 = st.pos;
  std::vector<float> X(size_t(S) * nD), e(static_cast<size_t>(D));
  for (int64_t s = 0; s < S; ++s) {
    if (ids[s] < 0 || ids[s] >= cfg_.vocab_size)
      fail("token id {} at position {} is outside the vocabulary [0, {})", ids[s], p0 + s, cfg_.vocab_size);
    w_.embed.dequant_row(ids[s], e.data());
    for (int k = 0; k < n; ++k) std::memcpy(X.data() + size_t(s) * nD + size_t(k * D), e.data(), size_t(D) * 4);
  }
  ForwardResult res;
  res.last_topk.resize(w_.blocks.size());
  for (size_t l = 0; l < w_.blocks.size(); ++l) {
    block_forward(w_.blocks[l], st.layers[l], X.data(), ids, S, p0, &res.last_topk[l]);
    if (fo.keep_layer_streams)
      res.layer_streams.insert(res.layer_streams.end(), X.end() - std::ptrdiff_t(nD), X.end());
  }
  st.pos += S;
  const int64_t rows = fo.all_logits ? S : 1;
  res.logits = head_logits(w_.hc_head, w_.norm, X.data() + size_t(S - rows) * nD, rows);
  if (fo.keep_streams) res.final_streams = std::move(X);
  return res;
}

std::vector<float> Model::mtp_forward(SequenceState& st, const float* main_streams, const int32_t* next_ids,
                                      int64_t S) const {
  if (!w_.mtp) fail("this checkpoint has no MTP block");
  const MtpWeights& m = *w_.mtp;
  const int n = cfg_.hc_mult, D = cfg_.dim;
  const size_t nD = size_t(n) * size_t(D);
  const float eps = float(cfg_.norm_eps);
  std::vector<float> e(size_t(S * D)), ep(size_t(S * D)), h(size_t(S) * nD), hp(size_t(S) * nD), X(size_t(S) * nD);
  for (int64_t s = 0; s < S; ++s) {
    if (next_ids[s] < 0 || next_ids[s] >= cfg_.vocab_size) fail("token id {} is outside the vocabulary", next_ids[s]);
    w_.embed.dequant_row(next_ids[s], e.data() + s * D);
    rmsnorm(e.data() + s * D, m.enorm.data(), size_t(D), eps, e.data() + s * D);
    for (int k = 0; k < n; ++k)
      rmsnorm(main_streams + size_t(s) * nD + size_t(k * D), m.hnorm.data(), size_t(D), eps,
              h.data() + size_t(s) * nD + size_t(k * D));
  }
  matmul(m.e_proj, e.data(), S, ep.data(), opt_.act_quant, pool());
  matmul(m.h_proj, h.data(), S * n, hp.data(), opt_.act_quant, pool());
  for (int64_t s = 0; s < S; ++s)
    for (int k = 0; k < n; ++k)
      for (int c = 0; c < D; ++c) {
        size_t i = size_t(s) * nD + size_t(k * D + c);
        X[i] = ep[size_t(s * D + c)] + hp[i];
      }
  block_forward(m.block, st.mtp[0], X.data(), next_ids, S, st.mtp_pos, nullptr);
  st.mtp_pos += S;
  return head_logits(m.hc_head, m.norm, X.data() + size_t(S - 1) * nD, 1);
}

}  // namespace dsv4
