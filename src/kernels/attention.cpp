#include "kernels/attention.h"

#include <cmath>
#include <vector>

#include "kernels/matmul_simd.h"

namespace dsv4 {

void sink_attention(const float* q, const float* const* rows, int32_t n, int dim, float scale, float sink,
                    float* out) {
  std::vector<float> z(static_cast<size_t>(n));
  sink_attention(q, rows, n, dim, scale, sink, out, z.data());
}

void sink_attention(const float* q, const float* const* rows, int32_t n, int dim, float scale, float sink,
                    float* out, float* z) {
  for (int d = 0; d < dim; ++d) out[d] = 0;
  if (n == 0) return;
  float m = -INFINITY;
  for (int32_t k = 0; k < n; ++k) {
    z[k] = simd::dot_f32(q, rows[k], size_t(dim)) * scale;
    m = std::max(m, z[k]);
  }
  float den = 0;
  for (int32_t k = 0; k < n; ++k) {
    float p = std::exp(z[k] - m);
    den += p;
    simd::axpy(p, rows[k], out, size_t(dim));
  }
  den += std::exp(sink - m);
  for (int d = 0; d < dim; ++d) out[d] /= den;
}

}  // namespace dsv4
