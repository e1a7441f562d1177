#include "kernels/hyper_connection.h"

#include <algorithm>
#include <cmath>

#include "kernels/matmul_simd.h"

namespace dsv4 {

namespace {
float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

// m = (fn · v) · rsqrt(mean(v²) + eps) over the flattened streams.
void hc_mix(const float* fn, int rows, const float* X, int nD, float eps, float* m) {
  float ss = simd::dot_f32(X, X, size_t(nD));
  float rho = 1.0f / std::sqrt(ss / float(nD) + eps);
  for (int r = 0; r < rows; ++r) m[r] = simd::dot_f32(fn + size_t(r) * size_t(nD), X, size_t(nD)) * rho;
}
}  // namespace

void sinkhorn(float* C, int n, int iters, float eps) {
  auto col_norm = [&] {
    for (int j = 0; j < n; ++j) {
      float s = 0;
      for (int i = 0; i < n; ++i) s += C[i * n + j];
      for (int i = 0; i < n; ++i) C[i * n + j] /= (s + eps);
    }
  };
  for (int i = 0; i < n; ++i) {
    float* row = C + i * n;
    float mx = *std::max_element(row, row + n), s = 0;
    for (int j = 0; j < n; ++j) s += (row[j] = std::exp(row[j] - mx));
    for (int j = 0; j < n; ++j) row[j] = row[j] / s + eps;
  }
  col_norm();
  for (int it = 1; it < iters; ++it) {
    for (int i = 0; i < n; ++i) {
      float s = 0;
      for (int j = 0; j < n; ++j) s += C[i * n + j];
      for (int j = 0; j < n; ++j) C[i * n + j] /= (s + eps);
    }
    col_norm();
  }
}

void hc_pre(const HcParams& p, const float* X, float* x, float* post, float* C) {
  const int n = p.n, D = p.D, rows = (2 + n) * n;
  float m[(2 + 16) * 16] = {};  // n ≤ 16, as pre[] below
  hc_mix(p.fn, rows, X, n * D, p.norm_eps, m);
  float pre[16];
  for (int k = 0; k < n; ++k) {
    pre[k] = sigmoid(m[size_t(k)] * p.scale[0] + p.base[k]) + p.hc_eps;
    post[k] = 2.0f * sigmoid(m[size_t(n + k)] * p.scale[1] + p.base[n + k]);
  }
  for (int i = 0; i < n * n; ++i) C[i] = m[size_t(2 * n + i)] * p.scale[2] + p.base[2 * n + i];
  sinkhorn(C, n, p.sinkhorn_iters, p.hc_eps);
  for (int d = 0; d < D; ++d) {
    float acc = 0;
    for (int k = 0; k < n; ++k) acc += pre[k] * X[size_t(k) * size_t(D) + size_t(d)];
    x[d] = acc;
  }
}

void hc_post(int n, int D, const float* f, const float* X, const float* post, const float* C, float* Xout) {
  for (int j = 0; j < n; ++j) {
    float* out = Xout + size_t(j) * size_t(D);
    for (int d = 0; d < D; ++d) {
      float acc = post[j] * f[d];
      for (int i = 0; i < n; ++i) acc += C[i * n + j] * X[size_t(i) * size_t(D) + size_t(d)];
      out[d] = acc;
    }
  }
}

void hc_head(const HcParams& p, const float* X, float* z) {
  const int n = p.n, D = p.D;
  float m[16], pre[16];
  hc_mix(p.fn, n, X, n * D, p.norm_eps, m);
  for (int k = 0; k < n; ++k) pre[k] = sigmoid(m[k] * p.scale[0] + p.base[k]) + p.hc_eps;
  for (int d = 0; d < D; ++d) {
    float acc = 0;
    for (int k = 0; k < n; ++k) acc += pre[k] * X[size_t(k) * size_t(D) + size_t(d)];
    z[d] = acc;
  }
}

}  // namespace dsv4
