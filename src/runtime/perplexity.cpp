#include "runtime/perplexity.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace dsv4 {

double PerplexityResult::perplexity() const { return std::exp(mean_ce_nats); }

PerplexityResult perplexity(const Model& m, const Tokenizer& tok, const std::string& text, int64_t ctx,
                            const std::function<void(int64_t, int64_t)>& progress) {
  if (ctx < 2) fail("--ctx must be at least 2 (BOS plus one scored token)");
  const std::vector<int32_t> ids = tok.encode(text, /*parse_special=*/false);
  if (ids.empty()) fail("the text has no tokens to score");
  const int32_t bos = m.config().bos_token_id;
  const int64_t V = m.config().vocab_size, n = int64_t(ids.size());
  ForwardOptions fo;
  fo.all_logits = true;
  double total = 0;
  for (int64_t s = 0; s < n; s += ctx - 1) {
    const int64_t len = std::min(ctx - 1, n - s);
    std::vector<int32_t> win{bos};
    win.insert(win.end(), ids.begin() + s, ids.begin() + s + len);
    SequenceState st = m.new_sequence();
    const auto r = m.forward(st, win.data(), int64_t(win.size()), fo);
    for (int64_t i = 0; i < len; ++i) {
      const float* row = r.logits.data() + i * V;
      const float mx = *std::max_element(row, row + V);
      double z = 0;
      for (int64_t v = 0; v < V; ++v) z += std::exp(double(row[v]) - mx);
      total += (double(mx) + std::log(z)) - row[win[size_t(i + 1)]];
    }
    if (progress) progress(s + len, n);
  }
  return {n, total / double(n)};
}

}  // namespace dsv4
