#pragma once
// Manifold-constrained hyper-connection kernels (architecture.md §4.4, §4.5, §4.18), fp32, one token at a time.
#include <vector>

namespace dsv4 {

struct HcParams {
  const float* fn;    // [(2+n)*n, n*D] for a sublayer, [n, n*D] for the head
  const float* base;  // [(2+n)*n] or [n]
  const float* scale; // [3] or [1]
  int n = 4, D = 0;
  float norm_eps = 1e-6f, hc_eps = 1e-6f;
  int sinkhorn_iters = 20;
};

// Sinkhorn on an n×n matrix in place: row softmax + eps, column normalisation, then
// (iters-1) × (row, column) normalisations.
void sinkhorn(float* C, int n, int iters, float eps);

// From streams X [n, D]: collapsed input x [D], post [n], comb C [n, n] (C[i][j] = source i → dest j).
void hc_pre(const HcParams& p, const float* X, float* x, float* post, float* C);
// X'_j = post_j f + Σ_i C[i][j] X_i, written to Xout [n, D] (may not alias X).
void hc_post(int n, int D, const float* f, const float* X, const float* post, const float* C, float* Xout);
// Head collapse: z [D] = Σ_k (sigmoid(m_k·scale + base_k) + eps) X_k.
void hc_head(const HcParams& p, const float* X, float* z);

}  // namespace dsv4
