#pragma once
#include <cstddef>

namespace dsv4 {

// y = w ⊙ (x / sqrt(mean(x²) + eps)); normalise first, then weight. w may be null (no weight).
void rmsnorm(const float* x, const float* w, size_t n, float eps, float* y);
// Row-wise over S rows of width n.
void rmsnorm_rows(const float* x, const float* w, size_t S, size_t n, float eps, float* y);

}  // namespace dsv4
