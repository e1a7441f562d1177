#include "dist/placement.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <fmt/format.h>

#include "core/error.h"
#include "runtime/ram_budget.h"

namespace dsv4::dist {

int Placement::owner_of(int layer, int expert) const {
  auto it = std::lower_bound(layers.begin(), layers.end(), layer);
  if (it == layers.end() || *it != layer || expert < 0 || expert >= n_experts) return -1;
  return owner[size_t(it - layers.begin()) * size_t(n_experts) + size_t(expert)];
}

Placement place_experts(const PlacementInput& in) {
  const int R = in.ranks, E = in.n_experts;
  const size_t L = in.layers.size();
  if (R < 1 || R > 32767) fail("{} ranks: expert parallel needs 1 to 32767", R);
  if (!std::is_sorted(in.layers.begin(), in.layers.end())) fail("placement: layer ids must ascend");
  if (!in.budget.empty() && in.budget.size() != size_t(R)) fail("placement: {} budgets for {} ranks", in.budget.size(), R);
  if (!in.load.empty() && in.load.size() != L * size_t(E)) fail("placement: routing counts of the wrong shape");
  Placement p;
  p.ranks = R;
  p.n_experts = E;
  p.layers = in.layers;
  p.owner.assign(L * size_t(E), 0);
  p.bytes.assign(size_t(R), 0);
  p.experts.assign(size_t(R), 0);
  p.bytes[0] = in.dense_bytes;
  const uint64_t expert_total = uint64_t(L) * uint64_t(E) * in.expert_bytes;
  const double total = double(in.dense_bytes) + double(expert_total);
  // Each rank's share of the whole model; rank 0's dense bytes come out of its share first.
  std::vector<double> share(static_cast<size_t>(R), 1.0 / R);
  const bool given = !in.budget.empty() && std::any_of(in.budget.begin(), in.budget.end(), [](uint64_t b) { return b; });
  if (given) {
    uint64_t sum = 0;
    for (int r = 0; r < R; ++r) {
      if (!in.budget[size_t(r)]) fail("rank {} has no RAM budget while others do: give every rank one", r);
      sum += in.budget[size_t(r)];
    }
    if (double(sum) < total)
      fail("the ranks' RAM budgets add up to {}, the model needs {}: add ranks or budget", format_bytes(sum),
           format_bytes(uint64_t(total)));
    if (in.budget[0] < in.dense_bytes)
      fail("rank 0's RAM budget {} is below the {} of dense weights it keeps", format_bytes(in.budget[0]),
           format_bytes(in.dense_bytes));
    for (int r = 0; r < R; ++r) share[size_t(r)] = double(in.budget[size_t(r)]) / double(sum);
  }
  std::vector<double> want(static_cast<size_t>(R));  // experts per layer each rank should own, fractional
  double want_sum = 0;
  for (int r = 0; r < R; ++r) {
    double bytes = share[size_t(r)] * total - (r == 0 ? double(in.dense_bytes) : 0.0);
    want[size_t(r)] = std::max(0.0, bytes);
    want_sum += want[size_t(r)];
  }
  for (auto& w : want) w = want_sum > 0 ? w / want_sum * E : double(E) / R;
  // Experts per layer by largest remainder, remainders carried over the layers so the totals follow
  // the shares even when E is small.
  std::vector<double> carry(static_cast<size_t>(R), 0.0);
  std::vector<int> quota(static_cast<size_t>(R));
  std::vector<int> order(static_cast<size_t>(E)), ranks(static_cast<size_t>(R));
  std::vector<double> load_of(static_cast<size_t>(R));
  for (size_t l = 0; l < L; ++l) {
    int given_out = 0;
    for (int r = 0; r < R; ++r) {
      const double w = want[size_t(r)] + carry[size_t(r)];
      quota[size_t(r)] = int(std::floor(w));
      given_out += quota[size_t(r)];
    }
    std::iota(ranks.begin(), ranks.end(), 0);
    std::sort(ranks.begin(), ranks.end(), [&](int a, int b) {
      const double fa = want[size_t(a)] + carry[size_t(a)] - quota[size_t(a)];
      const double fb = want[size_t(b)] + carry[size_t(b)] - quota[size_t(b)];
      return fa > fb || (fa == fb && a < b);
    });
    for (int i = 0; given_out < E; ++i, ++given_out) ++quota[size_t(ranks[size_t(i % R)])];
    for (int r = 0; r < R; ++r) carry[size_t(r)] += want[size_t(r)] - quota[size_t(r)];
    // The hottest expert first, to the rank with room whose load so far is the smallest per slot.
    const float* ld = in.load.empty() ? nullptr : in.load.data() + l * size_t(E);
    std::iota(order.begin(), order.end(), 0);
    if (ld) std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return ld[a] > ld[b]; });
    std::fill(load_of.begin(), load_of.end(), 0.0);
    std::vector<int> left = quota;
    for (int e : order) {
      int best = -1;  // the smallest load per slot so far, ties to the lower rank
      for (int r = 0; r < R; ++r)
        if (left[size_t(r)] &&
            (best < 0 || load_of[size_t(r)] * quota[size_t(best)] < load_of[size_t(best)] * quota[size_t(r)]))
          best = r;
      p.owner[l * size_t(E) + size_t(e)] = int16_t(best);
      --left[size_t(best)];
      load_of[size_t(best)] += (ld ? std::max(0.0f, ld[e]) : 0.0) + 1e-6;  // the epsilon spreads unrouted experts
      ++p.experts[size_t(best)];
      p.bytes[size_t(best)] += in.expert_bytes;
    }
  }
  if (given)
    for (int r = 0; r < R; ++r)
      if (p.bytes[size_t(r)] > in.budget[size_t(r)] + in.expert_bytes * L)
        fail("rank {} would hold {}, over its RAM budget {}", r, format_bytes(p.bytes[size_t(r)]),
             format_bytes(in.budget[size_t(r)]));
  return p;
}

WireEstimate estimate_wire(const Placement& p, const PlacementInput& in) {
  WireEstimate w;
  const size_t L = p.layers.size();
  const int E = p.n_experts, k = in.n_activated;
  if (!L || !E || p.ranks < 2) return w;
  for (size_t l = 0; l < L; ++l) {
    const float* ld = in.load.empty() ? nullptr : in.load.data() + l * size_t(E);
    double sum = 0;
    for (int e = 0; e < E; ++e) sum += ld ? std::max(0.0f, ld[e]) : 1.0;
    for (int r = 1; r < p.ranks; ++r) {
      double mass = 0;
      int n = 0;
      for (int e = 0; e < E; ++e)
        if (p.owner[l * size_t(E) + size_t(e)] == r) mass += ld ? std::max(0.0f, ld[e]) : 1.0, ++n;
      const double q = sum > 0 ? mass / sum : 0;
      // Uniform routing draws k distinct experts: a rank with n of E is missed with C(E-n, k)/C(E, k).
      double miss = 1;
      if (!ld)
        for (int i = 0; i < k; ++i) miss *= std::max(0.0, double(E - n - i)) / double(E - i);
      else
        miss = std::pow(1 - q, k);
      w.remote_ranks += 1 - miss;
      w.outputs_received += k * q;
    }
  }
  w.remote_ranks /= double(L);
  w.outputs_received /= double(L);
  w.rows_sent = w.remote_ranks;
  // A row goes out in BF16 with its pairs' indices and weights; each output comes back in BF16.
  w.bytes = w.rows_sent * (2.0 * in.dim) + w.outputs_received * (2.0 * in.dim + 8.0);
  return w;
}

std::string describe_placement(const Placement& p, const PlacementInput& in) {
  std::string s = fmt::format("expert parallel over {} ranks ({} routed experts in {} layers):\n", p.ranks,
                              uint64_t(p.layers.size()) * uint64_t(p.n_experts), p.layers.size());
  for (int r = 0; r < p.ranks; ++r)
    s += fmt::format("  rank {}: {}{} + {} experts\n", r, format_bytes(p.bytes[size_t(r)]),
                     r == 0 ? fmt::format(" ({} dense, sequences, tokenizer, server)", format_bytes(in.dense_bytes)) : "",
                     p.experts[size_t(r)]);
  const WireEstimate w = estimate_wire(p, in);
  s += fmt::format(
      "  per token per MoE layer (rank 0's view, {} routing): {:.2f} rows out to {:.2f} ranks, {:.2f} expert outputs "
      "back, {:.1f} KB on the wire; per token {:.2f} MB over {} layers, {} round trips",
      in.load.empty() ? "uniform" : "measured", w.rows_sent, w.remote_ranks, w.outputs_received, w.bytes / 1e3,
      w.bytes * double(p.layers.size()) / 1e6, p.layers.size(), p.layers.size());
  return s;
}

}  // namespace dsv4::dist
