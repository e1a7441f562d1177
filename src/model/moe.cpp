#include "model/moe.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/thread_pool.h"
#include "kernels/topk.h"

namespace dsv4 {

namespace {
// torch.nn.functional.softplus returns z itself above its threshold 20.
float softplus(float z) { return z > 20.0f ? z : std::log1p(std::exp(z)); }
}  // namespace

Routing moe_route(const MoeWeights& w, const ModelConfig& cfg, const float* x, const int32_t* ids, int64_t S,
                  ThreadPool& pool) {
  const int E = cfg.n_routed_experts, k = cfg.n_activated_experts;
  std::vector<float> logits(size_t(S * E));
  matmul(w.gate, x, S, logits.data(), false, pool);
  Routing r;
  r.experts.resize(size_t(S * k));
  r.weights.resize(size_t(S * k));
  std::vector<float> biased(static_cast<size_t>(E));
  for (int64_t s = 0; s < S; ++s) {
    float* sc = logits.data() + s * E;
    for (int e = 0; e < E; ++e) sc[e] = std::sqrt(softplus(sc[e]));
    int32_t* sel = r.experts.data() + s * k;
    if (w.hash()) {
      if (ids[s] < 0 || ids[s] >= cfg.vocab_size) fail("token id {} is outside the vocabulary", ids[s]);
      for (int i = 0; i < k; ++i) sel[i] = int32_t(w.tid2eid_at(ids[s], i, k));
    } else {
      for (int e = 0; e < E; ++e) biased[size_t(e)] = sc[e] + w.bias.data()[e];
      auto top = topk_desc(biased.data(), E, k);
      std::copy(top.begin(), top.end(), sel);
    }
    float* wt = r.weights.data() + s * k;
    float sum = 0;
    for (int i = 0; i < k; ++i) sum += (wt[i] = sc[sel[i]]);
    for (int i = 0; i < k; ++i) wt[i] = wt[i] / sum * float(cfg.route_scale);
  }
  return r;
}

void expert_forward(const ExpertWeights& e, const float* x, int64_t S, const float* row_scale, float limit,
                    bool act_quant, ThreadPool& pool, float* out) {
  const int64_t I = e.w1.out;
  std::vector<float> g(size_t(S * I)), u(size_t(S * I));
  matmul(e.w1, x, S, g.data(), act_quant, pool);
  matmul(e.w3, x, S, u.data(), act_quant, pool);
  for (int64_t s = 0; s < S; ++s)
    for (int64_t i = 0; i < I; ++i) {
      float gi = g[size_t(s * I + i)], ui = u[size_t(s * I + i)];
      if (limit > 0) {
        ui = std::clamp(ui, -limit, limit);
        gi = std::min(gi, limit);
      }
      float h = gi / (1.0f + std::exp(-gi)) * ui;
      g[size_t(s * I + i)] = row_scale ? h * row_scale[s] : h;  // routing weight before w2
    }
  matmul(e.w2, g.data(), S, out, act_quant, pool);
}

void moe_forward(const MoeWeights& w, const ModelConfig& cfg, const float* x, const int32_t* ids, int64_t S,
                 const NumericsOptions& opt, ThreadPool& pool, float* out) {
  const int D = cfg.dim, k = cfg.n_activated_experts;
  const float limit = float(cfg.swiglu_limit);
  Routing r = moe_route(w, cfg, x, ids, S, pool);
  std::vector<float> y(size_t(S * D), 0.0f), xs, ys, scale;
  std::vector<int64_t> rows;
  // Ascending expert id; each expert processes all of its tokens as one batch.
  for (int e = 0; e < cfg.n_routed_experts; ++e) {
    rows.clear();
    scale.clear();
    for (int64_t s = 0; s < S; ++s)
      for (int i = 0; i < k; ++i)
        if (r.experts[size_t(s * k + i)] == e) {
          rows.push_back(s);
          scale.push_back(r.weights[size_t(s * k + i)]);
        }
    if (rows.empty()) continue;
    const int64_t n = int64_t(rows.size());
    xs.resize(size_t(n * D));
    ys.resize(size_t(n * D));
    for (int64_t i = 0; i < n; ++i) std::copy_n(x + rows[size_t(i)] * D, D, xs.data() + i * D);
    expert_forward(w.experts[size_t(e)], xs.data(), n, scale.data(), limit, opt.act_quant, pool, ys.data());
    for (int64_t i = 0; i < n; ++i)
      for (int c = 0; c < D; ++c) y[size_t(rows[size_t(i)] * D + c)] += ys[size_t(i * D + c)];
  }
  ys.resize(size_t(S * D));
  expert_forward(w.shared, x, S, nullptr, opt.shared_expert_clamp ? limit : 0.0f, opt.act_quant, pool, ys.data());
  for (int64_t i = 0; i < S * D; ++i) out[i] = y[size_t(i)] + ys[size_t(i)];
}

}  // namespace dsv4
