#pragma once
// Helpers shared by the kernel microbenchmarks: fixed-seed random data (never zeros, so no kernel can
// take a shortcut on trivial input) and the two thread pools every parallel case runs on.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/matmul_simd.h"

namespace dsv4_bench {

inline std::vector<float> randn(size_t n, uint32_t seed, float sigma = 1.0f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

inline std::vector<float> uniform(size_t n, uint32_t seed, float lo, float hi) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

// Activations with per-row magnitude spread and a few outliers, like real hidden states; this keeps
// the FP8 activation round-trip busy with varied block scales.
inline std::vector<float> activations(int64_t S, int64_t n, uint32_t seed) {
  auto x = randn(size_t(S * n), seed);
  for (int64_t s = 0; s < S; ++s)
    for (int64_t k = 0; k < n; ++k) x[size_t(s * n + k)] *= 0.25f + 0.1f * float(s % 7);
  for (size_t i = 0; i < x.size(); i += 509) x[i] *= 40.0f;
  return x;
}

// A private single-thread pool: size() == 1, so parallel_for runs inline on the caller.
inline dsv4::ThreadPool& one_thread_pool() {
  static dsv4::ThreadPool pool(1);
  return pool;
}

struct PoolChoice {
  const char* suffix;
  dsv4::ThreadPool& (*get)();
};
inline dsv4::ThreadPool& global_pool() { return dsv4::ThreadPool::global(); }
inline const PoolChoice kPools[] = {{"threads:1", &one_thread_pool}, {"threads:all", &global_pool}};

// The read bandwidth the decode numbers are held against: simd::stream_sum over v, one slice per thread.
inline void stream_read(benchmark::State& st, dsv4::ThreadPool& pool, const std::vector<float>& v) {
  const size_t P = size_t(pool.size()), chunk = v.size() / P;
  std::vector<double> part(P);
  for (auto _ : st) {
    pool.parallel_for(P, [&](size_t b, size_t e) {
      for (size_t p = b; p < e; ++p) part[p] = dsv4::simd::stream_sum(v.data() + p * chunk, chunk);
    });
    benchmark::DoNotOptimize(part.data());
  }
  st.counters["bytes_per_second"] =
      benchmark::Counter(double(P * chunk * 4), benchmark::Counter::kIsIterationInvariantRate);
  st.counters["threads"] = double(P);
}

}  // namespace dsv4_bench
