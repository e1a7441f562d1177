#include "runtime/perplexity.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace dsv4 {

double PerplexityResult::perplexity() const { return std::exp(mean_ce_nats); }

namespace {
// log-softmax normaliser of one logit row, in double.
double log_z(const float* row, int64_t V) {
  const float mx = *std::max_element(row, row + V);
  double z = 0;
  for (int64_t v = 0; v < V; ++v) z += std::exp(double(row[v]) - mx);
  return double(mx) + std::log(z);
}
}  // namespace

PerplexityResult perplexity(const Model& m, const Tokenizer& tok, const std::string& text, int64_t ctx,
                            const std::function<void(int64_t, int64_t)>& progress, const Model* base) {
  if (ctx < 2) fail("--ctx must be at least 2 (BOS plus one scored token)");
  if (base && base->config().vocab_size != m.config().vocab_size)
    fail("--kl-base has vocab_size {}, the model {}: not the same vocabulary", base->config().vocab_size,
         m.config().vocab_size);
  const std::vector<int32_t> ids = tok.encode(text, /*parse_special=*/false);
  if (ids.empty()) fail("the text has no tokens to score");
  const int32_t bos = m.config().bos_token_id;
  const int64_t V = m.config().vocab_size, n = int64_t(ids.size());
  ForwardOptions fo;
  fo.all_logits = true;
  double total = 0, base_total = 0, agree = 0;
  std::vector<double> kls;
  for (int64_t s = 0; s < n; s += ctx - 1) {
    const int64_t len = std::min(ctx - 1, n - s);
    std::vector<int32_t> win{bos};
    win.insert(win.end(), ids.begin() + s, ids.begin() + s + len);
    SequenceState st = m.new_sequence();
    const auto r = m.forward(st, win.data(), int64_t(win.size()), fo);
    std::vector<float> base_logits;
    if (base) {
      SequenceState bs = base->new_sequence();
      base_logits = base->forward(bs, win.data(), int64_t(win.size()), fo).logits;
    }
    for (int64_t i = 0; i < len; ++i) {
      const float* row = r.logits.data() + i * V;
      const double lz = log_z(row, V);
      total += lz - row[win[size_t(i + 1)]];
      if (!base) continue;
      const float* brow = base_logits.data() + i * V;
      const double blz = log_z(brow, V);
      base_total += blz - brow[win[size_t(i + 1)]];
      double kl = 0;  // Σ p (log p − log q), p the base distribution
      for (int64_t v = 0; v < V; ++v) {
        const double lp = brow[v] - blz, lq = row[v] - lz;
        kl += std::exp(lp) * (lp - lq);
      }
      kls.push_back(std::max(0.0, kl));
      agree += std::max_element(row, row + V) - row == std::max_element(brow, brow + V) - brow;
    }
    if (progress) progress(s + len, n);
  }
  PerplexityResult res{n, total / double(n)};
  if (base) {
    res.has_base = true;
    res.base_mean_ce_nats = base_total / double(n);
    res.top1_agreement = agree / double(n);
    double sum = 0;
    for (double k : kls) sum += k;
    res.mean_kl = sum / double(n);
    std::sort(kls.begin(), kls.end());
    res.kl_p99 = kls[std::min(kls.size() - 1, size_t(0.99 * double(kls.size())))];
  }
  return res;
}

}  // namespace dsv4
