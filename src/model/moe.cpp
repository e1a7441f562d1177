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
#include "core/arena.h"
#include "core/profile.h"
#include "core/thread_pool.h"
#include "kernels/topk.h"

namespace dsv4 {

namespace {
// torch.nn.functional.softplus returns z itself above its threshold 20.
float softplus(float z) { return z > 20.0f ? z : std::log1p(std::exp(z)); }
}  // namespace

std::vector<int32_t> distinct_experts(const int32_t* routed, size_t n, int n_experts) {
  std::vector<char> seen(size_t(n_experts), 0);
  for (size_t i = 0; i < n; ++i) seen[size_t(routed[i])] = 1;
  std::vector<int32_t> out;
  for (int e = 0; e < n_experts; ++e)
    if (seen[size_t(e)]) out.push_back(e);
  return out;
}

Routing moe_route(const MoeWeights& w, const float* x, const int32_t* ids, int64_t S, const ForwardContext& fc) {
  const ModelConfig& cfg = fc.cfg;
  const int E = cfg.n_routed_experts, k = cfg.n_activated_experts;
  Arena& arena = fc.arena;
  Routing r{arena.take<int32_t>(size_t(S * k)), arena.take<float>(size_t(S * k))};
  Arena::Frame frame(arena);
  float* logits = arena.take<float>(size_t(S * E));
  matmul(w.gate, x, S, logits, false, fc.pool);
  float* biased = arena.take<float>(size_t(E));
  int32_t* top = arena.take<int32_t>(size_t(E));
  for (int64_t s = 0; s < S; ++s) {
    float* sc = logits + s * E;
    for (int e = 0; e < E; ++e) sc[e] = std::sqrt(softplus(sc[e]));
    int32_t* sel = r.experts + s * k;
    if (w.hash()) {
      if (ids[s] < 0 || ids[s] >= cfg.vocab_size) fail("token id {} is outside the vocabulary", ids[s]);
      for (int i = 0; i < k; ++i) sel[i] = int32_t(w.tid2eid_at(ids[s], i, k));
    } else {
      for (int e = 0; e < E; ++e) biased[size_t(e)] = sc[e] + w.bias.data()[e];
      const int32_t n = topk_desc(biased, E, k, top);
      std::copy(top, top + n, sel);
    }
    float* wt = r.weights + s * k;
    float sum = 0;
    for (int i = 0; i < k; ++i) sum += (wt[i] = sc[sel[i]]);
    for (int i = 0; i < k; ++i) wt[i] = wt[i] / sum * float(cfg.route_scale);
  }
  return r;
}

size_t expert_scratch_bytes(const ExpertWeights& e, int64_t S, bool act_quant) {
  const size_t products = std::max(matmul_pair_scratch_bytes(e.w1, e.w3, S, act_quant),
                                   matmul_scratch_bytes(e.w2, S, act_quant));
  return 2 * Arena::bytes_for<float>(size_t(S * e.w1.out)) + products;
}

void expert_forward(const ExpertWeights& e, const float* x, int64_t S, const float* row_scale, float limit,
                    bool act_quant, ThreadPool& pool, float* out) {
  const int64_t I = e.w1.out;
  Arena& arena = thread_arena();
  Arena::Frame frame(arena);
  float* g = arena.take<float>(size_t(S * I));
  float* u = arena.take<float>(size_t(S * I));
  matmul_pair(e.w1, e.w3, x, S, g, u, act_quant, pool);
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
  matmul(e.w2, g, S, out, act_quant, pool);
}

void run_expert_jobs(const MoeWeights& w, ExpertStore& store, int layer, const ExpertJobs& jb, int64_t n_bound,
                     const ForwardContext& fc) {
  ThreadPool& pool = fc.pool;
  Arena& arena = fc.arena;
  Arena::Frame frame(arena);
  const int D = fc.cfg.dim, E = fc.cfg.n_routed_experts;
  const float limit = float(fc.cfg.swiglu_limit);
  const size_t jobs = jb.n;
  auto n_of = [&](size_t j) { return jb.count[jb.expert[j]]; };
  auto run = [&](size_t j, const ExpertWeights& ew, ThreadPool& p) {
    Arena::Frame f(thread_arena());
    expert_forward(ew, jb.xs + jb.start[j] * D, n_of(j), jb.scale + jb.start[j], limit, fc.opt.act_quant, p,
                   jb.ys + jb.start[j] * D);
  };
  // Whichever thread runs an expert first reserves the scratch of one taking n_bound tokens.
  const size_t reserve = w.experts.empty() ? 0 : expert_scratch_bytes(w.experts[0], n_bound, fc.opt.act_quant);
  // The store may hold fewer experts at once than the layer needs (a prefill under a small RAM
  // budget): the experts then run in waves, each pinned while it runs and the next one prefetched.
  // Every pair's output is computed alone, so the waves change nothing in the result.
  const size_t wave = std::max<size_t>(1, std::min(jobs, store.max_pinned()));
  // Sized by E, not by this step's job count, so routing never moves a later take.
  const ExpertWeights** views = arena.take<const ExpertWeights*>(size_t(E));
  size_t* order = arena.take<size_t>(size_t(E));
  for (size_t w0 = 0; w0 < jobs; w0 += wave) {
    const size_t nw = std::min(wave, jobs - w0);
    if (w0 + nw < jobs)
      store.prefetch(layer, jb.expert + w0 + nw, std::min(wave, jobs - w0 - nw), ExpertPredictor::Wave);
    {
      profile::Scope wait("moe.expert_wait");
      store.acquire(layer, jb.expert + w0, nw, views + w0);
    }
    // Many experts (prefill): each thread takes whole experts, largest first, and its products run
    // inline, so no thread waits for another between matrices. Few (decode): every product is split.
    if (nw >= 2 * size_t(pool.size())) {
      for (size_t i = 0; i < nw; ++i) order[i] = w0 + i;
      // Largest first, ties in expert order (a stable sort, without its buffer).
      std::sort(order, order + nw, [&](size_t a, size_t b) { return n_of(a) > n_of(b) || (n_of(a) == n_of(b) && a < b); });
      std::atomic<size_t> next{0};
      pool.parallel_for(size_t(pool.size()), [&](size_t, size_t) {
        Arena& local = thread_arena();
        Arena::Frame f(local);
        local.reserve(reserve);
        for (size_t i; (i = next.fetch_add(1)) < nw;) run(order[i], *views[order[i]], pool);
      });
    } else {
      Arena::Frame f(arena);
      arena.reserve(reserve);
      for (size_t i = w0; i < w0 + nw; ++i) run(i, *views[i], pool);
    }
    store.release(layer, jb.expert + w0, nw);
  }
}

void moe_forward(const MoeWeights& w, const MoeContext& mc, const float* x, const int32_t* ids, int64_t S,
                 const ForwardContext& fc, float* out) {
  const ModelConfig& cfg = fc.cfg;
  ThreadPool& pool = fc.pool;
  Arena& arena = fc.arena;
  Arena::Frame frame(arena);
  const int D = cfg.dim, k = cfg.n_activated_experts, E = cfg.n_routed_experts;
  const int64_t P = S * k;  // (token, slot) pairs, p = s·k + i
  const float limit = float(cfg.swiglu_limit);
  std::optional<profile::Scope> phase(std::in_place, "moe.route");
  Routing r = moe_route(w, x, ids, S, fc);
  // A streaming store is told now which experts the next layer will likely route to (this layer's
  // input through the next gate), so their reads overlap this layer's experts and the next attention.
  if (mc.store.streams() && mc.next && !mc.next->hash()) {
    phase.emplace("moe.predict");
    Arena::Frame f(arena);
    std::vector<int32_t> guess = distinct_experts(moe_route(*mc.next, x, ids, S, fc).experts, size_t(P), E);
    mc.store.prefetch(mc.next_layer, guess.data(), guess.size(), ExpertPredictor::NextGate);
  }
  phase.emplace("moe.experts");
  // The pairs sorted by expert (ascending pair order within one): expert j's job is its slice
  // [start[j], start[j] + count[j]) of the gathered rows xs, their weights and their outputs ys.
  int64_t* count = arena.take<int64_t>(size_t(E));
  std::fill_n(count, E, 0);
  for (int64_t p = 0; p < P; ++p) ++count[r.experts[p]];
  int32_t* job_e = arena.take<int32_t>(size_t(E));
  int64_t* start = arena.take<int64_t>(size_t(E));
  int64_t* at = arena.take<int64_t>(size_t(E));  // next free slot per expert
  size_t jobs = 0;
  int64_t n_max = 0;
  for (int64_t e = 0, off = 0; e < E; off += count[e], ++e) {
    at[e] = off;
    if (!count[e]) continue;
    job_e[jobs] = int32_t(e);
    start[jobs++] = off;
    n_max = std::max(n_max, count[e]);
  }
  int64_t* slot_of = arena.take<int64_t>(size_t(P));  // pair → its row in xs / ys
  float* xs = arena.take<float>(size_t(P) * size_t(D));
  float* ys = arena.take<float>(size_t(P) * size_t(D));
  float* scale = arena.take<float>(size_t(P));
  for (int64_t p = 0; p < P; ++p) {
    const int64_t sl = at[r.experts[p]]++;
    slot_of[p] = sl;
    std::copy_n(x + (p / k) * D, D, xs + sl * D);
    scale[sl] = r.weights[p];
  }
  // Remote experts (expert parallel) go out first, so their owners work while this process runs its own.
  std::span<RemoteJob> remote;
  if (mc.peers) {
    RemoteJob* rj = arena.take<RemoteJob>(size_t(E));  // by E, so routing never moves a later take
    int64_t* rows = arena.take<int64_t>(size_t(P));
    for (int64_t p = 0; p < P; ++p) rows[slot_of[p]] = p / k;
    size_t n_remote = 0, n_local = 0;
    for (size_t j = 0; j < jobs; ++j) {
      const int32_t e = job_e[j];
      if (mc.peers->local(mc.layer, e)) {
        job_e[n_local] = e;
        start[n_local++] = start[j];
      } else {
        rj[n_remote++] = {e, count[e], rows + start[j], scale + start[j], ys + start[j] * D};
      }
    }
    jobs = n_local;
    remote = {rj, n_remote};
    if (n_remote) mc.peers->post(mc.layer, x, S, remote);
  }
  run_expert_jobs(w, mc.store, mc.layer, {job_e, start, count, jobs, xs, scale, ys}, std::max<int64_t>(S, n_max), fc);
  if (!remote.empty()) {
    profile::Scope wait("moe.peer_wait");
    mc.peers->wait();
  }
  // Routed sum in ascending expert id per token, whoever computed each expert.
  float* y = arena.take<float>(size_t(S * D));
  std::fill_n(y, S * D, 0.0f);
  int* slots = arena.take<int>(size_t(k));
  for (int64_t s = 0; s < S; ++s) {
    for (int i = 0; i < k; ++i) slots[i] = i;
    std::sort(slots, slots + k, [&](int a, int b) { return r.experts[s * k + a] < r.experts[s * k + b]; });
    float* yr = y + s * D;
    for (int i = 0; i < k; ++i) {
      const float* o = ys + slot_of[s * k + slots[i]] * D;
      for (int c = 0; c < D; ++c) yr[c] += o[c];
    }
  }
  phase.emplace("moe.shared");
  float* yshared = arena.take<float>(size_t(S * D));
  expert_forward(w.shared, x, S, nullptr, fc.opt.shared_expert_clamp ? limit : 0.0f, fc.opt.act_quant, pool, yshared);
  for (int64_t i = 0; i < S * D; ++i) out[i] = y[i] + yshared[i];
}

}  // namespace dsv4
