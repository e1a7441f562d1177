#include "kernels/hadamard.h"

#include <cmath>

namespace dsv4 {

void hadamard(float* x, size_t n) {
  for (size_t h = 1; h < n; h *= 2)
    for (size_t i = 0; i < n; i += 2 * h)
      for (size_t j = i; j < i + h; ++j) {
        float a = x[j], b = x[j + h];
        x[j] = a + b;
        x[j + h] = a - b;
      }
  const float s = 1.0f / std::sqrt(float(n));
  for (size_t i = 0; i < n; ++i) x[i] *= s;
}

}  // namespace dsv4
