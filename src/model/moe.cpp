// MoE sublayer (architecture.md §4.16–4.17): sqrtsoftplus gate scores; the hash-routed early layers take
// their experts from tid2eid by token id, the others the top-k of score + bias; routing weights are the
// unbiased scores, normalised and scaled. Each expert is a clamped SwiGLU; routed outputs are summed in
// ascending expert id, then the shared expert's output is added.
#include "model/moe.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <optional>

#include "core/error.h"
#include "core/profile.h"
#include "core/thread_pool.h"
#include "kernels/topk.h"

namespace dsv4 {

namespace {
// torch.nn.functional.softplus returns z itself above its threshold 20.
float softplus(float z) { return z > 20.0f ? z : std::log1p(std::exp(z)); }
}  // namespace

std::vector<int32_t> distinct_experts(const std::vector<int32_t>& routed, int n_experts) {
  std::vector<char> seen(size_t(n_experts), 0);
  for (int32_t e : routed) seen[size_t(e)] = 1;
  std::vector<int32_t> out;
  for (int e = 0; e < n_experts; ++e)
    if (seen[size_t(e)]) out.push_back(e);
  return out;
}

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
  matmul_pair(e.w1, e.w3, x, S, g.data(), u.data(), act_quant, pool);
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

void moe_forward(const MoeWeights& w, const MoeContext& mc, const ModelConfig& cfg, const float* x, const int32_t* ids,
                 int64_t S, const NumericsOptions& opt, ThreadPool& pool, float* out) {
  const int D = cfg.dim, k = cfg.n_activated_experts;
  const float limit = float(cfg.swiglu_limit);
  std::optional<profile::Scope> phase(std::in_place, "moe.route");
  Routing r = moe_route(w, cfg, x, ids, S, pool);
  // A streaming store is told now which experts the next layer will likely route to (this layer's
  // input through the next gate), so their reads overlap this layer's experts and the next attention.
  if (mc.store.streams() && mc.next && !mc.next->hash()) {
    phase.emplace("moe.predict");
    std::vector<int32_t> guess = distinct_experts(moe_route(*mc.next, cfg, x, ids, S, pool).experts, cfg.n_routed_experts);
    mc.store.prefetch(mc.next_layer, guess.data(), guess.size(), ExpertPredictor::NextGate);
  }
  phase.emplace("moe.experts");
  // One job per expert with tokens: its (token, slot) pairs; outputs land per pair.
  struct Job {
    int e;
    std::vector<int64_t> pairs;  // s * k + i
  };
  std::vector<Job> jobs;
  {
    std::vector<std::vector<int64_t>> by_expert(size_t(cfg.n_routed_experts));
    for (int64_t p = 0; p < S * k; ++p) by_expert[size_t(r.experts[size_t(p)])].push_back(p);
    for (int e = 0; e < cfg.n_routed_experts; ++e)
      if (!by_expert[size_t(e)].empty()) jobs.push_back({e, std::move(by_expert[size_t(e)])});
  }
  std::vector<float> pair_out(size_t(S * k) * size_t(D));
  auto run = [&](const Job& j, const ExpertWeights& ew, ThreadPool& p) {
    const int64_t n = int64_t(j.pairs.size());
    std::vector<float> xs(size_t(n * D)), ys(size_t(n * D)), scale(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      std::copy_n(x + (j.pairs[size_t(i)] / k) * D, D, xs.data() + i * D);
      scale[size_t(i)] = r.weights[size_t(j.pairs[size_t(i)])];
    }
    expert_forward(ew, xs.data(), n, scale.data(), limit, opt.act_quant, p, ys.data());
    for (int64_t i = 0; i < n; ++i) std::copy_n(ys.data() + i * D, D, pair_out.data() + j.pairs[size_t(i)] * D);
  };
  // The store may hold fewer experts at once than the layer needs (a prefill under a small RAM
  // budget): the experts then run in waves, each pinned while it runs and the next one prefetched.
  // Every pair's output is computed alone, so the waves change nothing in the result.
  const size_t wave = std::max<size_t>(1, std::min(jobs.size(), mc.store.max_pinned()));
  std::vector<int32_t> ids_of(jobs.size());
  for (size_t i = 0; i < jobs.size(); ++i) ids_of[i] = jobs[i].e;
  std::vector<const ExpertWeights*> views(jobs.size());
  for (size_t w0 = 0; w0 < jobs.size(); w0 += wave) {
    const size_t nw = std::min(wave, jobs.size() - w0);
    if (w0 + nw < jobs.size())
      mc.store.prefetch(mc.layer, ids_of.data() + w0 + nw, std::min(wave, jobs.size() - w0 - nw), ExpertPredictor::Wave);
    {
      profile::Scope wait("moe.expert_wait");
      mc.store.acquire(mc.layer, ids_of.data() + w0, nw, views.data() + w0);
    }
    // Many experts (prefill): each thread takes whole experts, largest first, and its products run
    // inline, so no thread waits for another between matrices. Few (decode): every product is split.
    if (nw >= 2 * size_t(pool.size())) {
      std::vector<size_t> order(nw);
      for (size_t i = 0; i < nw; ++i) order[i] = w0 + i;
      std::stable_sort(order.begin(), order.end(),
                       [&](size_t a, size_t b) { return jobs[a].pairs.size() > jobs[b].pairs.size(); });
      std::atomic<size_t> next{0};
      pool.parallel_for(size_t(pool.size()), [&](size_t, size_t) {
        for (size_t i; (i = next.fetch_add(1)) < order.size();) run(jobs[order[i]], *views[order[i]], pool);
      });
    } else {
      for (size_t i = w0; i < w0 + nw; ++i) run(jobs[i], *views[i], pool);
    }
    mc.store.release(mc.layer, ids_of.data() + w0, nw);
  }
  // Routed sum in ascending expert id per token, whoever computed each expert.
  std::vector<float> y(size_t(S * D), 0.0f), ys(size_t(S * D));
  for (int64_t s = 0; s < S; ++s) {
    std::vector<int> slots(static_cast<size_t>(k));
    for (int i = 0; i < k; ++i) slots[size_t(i)] = i;
    std::sort(slots.begin(), slots.end(),
              [&](int a, int b) { return r.experts[size_t(s * k + a)] < r.experts[size_t(s * k + b)]; });
    float* yr = y.data() + s * D;
    for (int i : slots) {
      const float* o = pair_out.data() + (s * k + i) * D;
      for (int c = 0; c < D; ++c) yr[c] += o[c];
    }
  }
  phase.emplace("moe.shared");
  expert_forward(w.shared, x, S, nullptr, opt.shared_expert_clamp ? limit : 0.0f, opt.act_quant, pool, ys.data());
  for (int64_t i = 0; i < S * D; ++i) out[i] = y[size_t(i)] + ys[size_t(i)];
}

}  // namespace dsv4
