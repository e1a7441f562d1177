#include "kernels/topk.h"

#include <algorithm>
#include <numeric>

namespace dsv4 {

std::vector<int32_t> topk_desc(const float* scores, int32_t n, int32_t k) {
  std::vector<int32_t> idx(static_cast<size_t>(std::max(n, 0)));
  idx.resize(size_t(topk_desc(scores, n, k, idx.data())));
  return idx;
}

int32_t topk_desc(const float* scores, int32_t n, int32_t k, int32_t* idx) {
  k = std::max(0, std::min(k, n));
  if (n <= 0) return 0;
  std::iota(idx, idx + n, 0);
  auto better = [&](int32_t a, int32_t b) { return scores[a] > scores[b] || (scores[a] == scores[b] && a < b); };
  std::partial_sort(idx, idx + k, idx + n, better);
  return k;
}

}  // namespace dsv4
