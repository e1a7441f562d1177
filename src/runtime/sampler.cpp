#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <unordered_map>

#include "core/error.h"

namespace dsv4 {
namespace {

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

// Higher logit first, then lower id: the one ordering used for every cut.
struct ByLogitDesc {
  const float* l;
  bool operator()(int32_t a, int32_t b) const { return l[a] != l[b] ? l[a] > l[b] : a < b; }
};

}  // namespace

Sampler::Sampler(const SamplingParams& p) : params_(p) {
  if (!(std::isfinite(p.temperature) && p.temperature >= 0.0f))
    fail("sampling: temperature must be a finite number >= 0, got {}", p.temperature);
  if (p.top_k < 0) fail("sampling: top_k must be >= 0 (0 = off), got {}", p.top_k);
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) fail("sampling: top_p must be in (0, 1], got {}", p.top_p);
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) fail("sampling: min_p must be in [0, 1], got {}", p.min_p);
  if (!(std::isfinite(p.repetition_penalty) && p.repetition_penalty > 0.0f))
    fail("sampling: repetition_penalty must be > 0, got {}", p.repetition_penalty);
  if (!std::isfinite(p.presence_penalty)) fail("sampling: presence_penalty must be finite");
  if (!std::isfinite(p.frequency_penalty)) fail("sampling: frequency_penalty must be finite");
  for (const auto& [id, b] : p.logit_bias) {
    if (id < 0) fail("sampling: logit_bias token id {} is negative", id);
    if (!(b >= -100.0f && b <= 100.0f)) fail("sampling: logit_bias for token {} must be in [-100, 100], got {}", id, b);
  }
  uint64_t s = p.seed;
  for (auto& w : state_) w = splitmix64(s);
}

uint64_t Sampler::next_u64() {
  // xoshiro256** (Blackman & Vigna).
  uint64_t result = rotl(state_[1] * 5, 7) * 9;
  uint64_t t = state_[1] << 17;
  state_[2] ^= state_[0];
  state_[3] ^= state_[1];
  state_[1] ^= state_[2];
  state_[0] ^= state_[3];
  state_[2] ^= t;
  state_[3] = rotl(state_[3], 45);
  return result;
}

double Sampler::next_uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

void Sampler::apply_penalties(std::span<float> logits, std::span<const int32_t> history) const {
  const auto& p = params_;
  if (history.empty() || (p.repetition_penalty == 1.0f && p.presence_penalty == 0.0f && p.frequency_penalty == 0.0f))
    return;
  std::unordered_map<int32_t, int> counts;
  counts.reserve(history.size());
  for (int32_t t : history) {
    if (t < 0 || static_cast<size_t>(t) >= logits.size())
      fail("sampling: history token id {} is outside the vocabulary (size {})", t, logits.size());
    ++counts[t];
  }
  for (const auto& [t, n] : counts) {
    float& l = logits[static_cast<size_t>(t)];
    if (p.repetition_penalty != 1.0f) l = l > 0.0f ? l / p.repetition_penalty : l * p.repetition_penalty;
    l -= p.presence_penalty + static_cast<float>(n) * p.frequency_penalty;
  }
}

void Sampler::apply_logit_bias(std::span<float> logits) const {
  for (const auto& [id, b] : params_.logit_bias) {
    if (static_cast<size_t>(id) >= logits.size())
      fail("sampling: logit_bias token id {} is outside the vocabulary (size {})", id, logits.size());
    float& l = logits[static_cast<size_t>(id)];
    l = b <= -100.0f ? -std::numeric_limits<float>::infinity() : l + b;
  }
}

std::vector<std::pair<int32_t, double>> Sampler::distribution(std::span<const float> logits,
                                                              std::span<const int32_t> history) {
  if (logits.empty()) fail("sampling: empty logits");
  if (logits.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max())) fail("sampling: vocabulary too large");
  work_.assign(logits.begin(), logits.end());
  for (float v : work_)
    if (std::isnan(v) || v == std::numeric_limits<float>::infinity()) fail("sampling: logits contain NaN or +inf");
  apply_penalties(work_, history);
  apply_logit_bias(work_);
  const float* l = work_.data();
  const auto n = static_cast<int32_t>(work_.size());

  int32_t best = 0;
  for (int32_t i = 1; i < n; ++i)
    if (l[i] > l[best]) best = i;
  if (l[best] == -std::numeric_limits<float>::infinity()) fail("sampling: every logit is -inf");
  if (params_.temperature == 0.0f) return {{best, 1.0}};

  // Candidates in id order; -inf tokens are masked out for good.
  std::vector<int32_t> cand;
  cand.reserve(work_.size());
  for (int32_t i = 0; i < n; ++i)
    if (l[i] != -std::numeric_limits<float>::infinity()) cand.push_back(i);
  bool cut = false;
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < cand.size()) {
    auto k = static_cast<std::ptrdiff_t>(params_.top_k);
    std::nth_element(cand.begin(), cand.begin() + k, cand.end(), ByLogitDesc{l});
    cand.resize(static_cast<size_t>(k));
    cut = true;
  }
  // nth_element leaves an unspecified order, and the draw walks this list: sort whenever it was cut.
  if (params_.top_p < 1.0f || cut) std::sort(cand.begin(), cand.end(), ByLogitDesc{l});
  bool sorted = params_.top_p < 1.0f;

  // Softmax of logit / T in double; the max token has weight 1.
  const double inv_t = 1.0 / static_cast<double>(params_.temperature);
  const double lmax = static_cast<double>(l[best]);
  std::vector<std::pair<int32_t, double>> dist;
  dist.reserve(cand.size());
  double total = 0.0;
  for (int32_t i : cand) {
    double w = std::exp((static_cast<double>(l[i]) - lmax) * inv_t);
    dist.emplace_back(i, w);
    total += w;
  }
  if (params_.top_p < 1.0f && sorted) {
    // Keep the smallest head whose mass reaches top_p.
    double target = static_cast<double>(params_.top_p) * total, cum = 0.0;
    size_t keep = 0;
    while (keep < dist.size() && cum < target) cum += dist[keep++].second;
    dist.resize(std::max<size_t>(keep, 1));
  }
  if (params_.min_p > 0.0f) {
    double wmax = 0.0;
    for (const auto& d : dist) wmax = std::max(wmax, d.second);
    double cut = static_cast<double>(params_.min_p) * wmax;
    std::erase_if(dist, [&](const auto& d) { return d.second < cut; });
  }
  total = 0.0;
  for (const auto& d : dist) total += d.second;
  for (auto& d : dist) d.second /= total;
  return dist;
}

int32_t Sampler::sample(std::span<const float> logits, std::span<const int32_t> history) {
  auto dist = distribution(logits, history);
  if (dist.size() == 1) return dist[0].first;
  double u = next_uniform(), cum = 0.0;
  for (const auto& [id, p] : dist) {
    cum += p;
    if (u < cum) return id;
  }
  return dist.back().first;  // u within rounding of 1
}

StopMatcher::StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
  for (const auto& s : stops_) {
    if (s.empty()) fail("stop strings must not be empty");
    max_len_ = std::max(max_len_, s.size());
  }
}

StopMatcher::Result StopMatcher::push(std::string_view text) {
  Result r;
  if (stopped_) {
    r.stopped = true;
    return r;
  }
  held_.append(text);
  size_t first = std::string::npos;
  for (const auto& s : stops_) {
    size_t p = held_.find(s);
    if (p < first) {
      first = p;
      matched_ = s;
    }
  }
  if (first != std::string::npos) {
    r.text = held_.substr(0, first);
    r.stopped = stopped_ = true;
    held_.clear();
    return r;
  }
  // Hold back the longest tail that is a proper prefix of some stop string.
  size_t n = held_.size();
  size_t keep_from = n;
  for (size_t q = n + 1 > max_len_ ? n + 1 - max_len_ : 0; q < n && keep_from == n; ++q) {
    std::string_view tail = std::string_view(held_).substr(q);
    for (const auto& s : stops_)
      if (tail.size() < s.size() && std::string_view(s).starts_with(tail)) {
        keep_from = q;
        break;
      }
  }
  r.text = held_.substr(0, keep_from);
  held_.erase(0, keep_from);
  return r;
}

std::string StopMatcher::flush() {
  std::string out = std::move(held_);
  held_.clear();
  return stopped_ ? std::string() : out;
}

}  // namespace dsv4
