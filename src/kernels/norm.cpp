#include "kernels/norm.h"

#include <cmath>

namespace dsv4 {

void rmsnorm(const float* x, const float* w, size_t n, float eps, float* y) {
  float ss = 0;
  for (size_t i = 0; i < n; ++i) ss += x[i] * x[i];
  float r = 1.0f / std::sqrt(ss / float(n) + eps);
  for (size_t i = 0; i < n; ++i) y[i] = w ? w[i] * (x[i] * r) : x[i] * r;
}

void rmsnorm_rows(const float* x, const float* w, size_t S, size_t n, float eps, float* y) {
  for (size_t s = 0; s < S; ++s) rmsnorm(x + s * n, w, n, eps, y + s * n);
}

}  // namespace dsv4
