#include "kernels/topk.h"

#include <algorithm>
#include <numeric>

namespace dsv4 {

std::vector<int32_t> topk_desc(const float* scores, int32_t n, int32_t k) {
  k = std::max(0, std::min(k, n));
  std::vector<int32_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  auto better = [&](int32_t a, int32_t b) { return scores[a] > scores[b] || (scores[a] == scores[b] && a < b); };
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), better);
  idx.resize(size_t(k));
  return idx;
}

}  // namespace dsv4
