// The ggml block formats (kernels/blocks.h), each on a 1-thread pool ("/threads:1") and
// ThreadPool::global() ("/threads:all").
//   BM_BlockDecode/<fmt>:  S = 1 over a 512 MiB matrix of random blocks (K = 4096): bytes_per_second
//                          counts the weight bytes read, to hold against BM_BlockStream.
//   BM_BlockPrefill/<fmt>: S = 16 and 64 over a 4096 × 4096 matrix; flops_per_second = 2·S·out·in / time.
//   BM_BlockStream:        simd::stream_sum over a 512 MiB buffer: the read bandwidth.
#include <benchmark/benchmark.h>

#include <cstring>
#include <string>
#include <vector>

#include "bench_common.h"
#include "core/block_format.h"
#include "kernels/blocks.h"
#include "kernels/matmul_simd.h"

namespace {

using dsv4::BlockFormat;
using dsv4::ThreadPool;
using namespace dsv4_bench;

constexpr int64_t kK = 4096;
constexpr size_t kColdBytes = size_t(512) << 20;  // above the L3 this machine reports (480 MiB)

const BlockFormat kFormats[] = {BlockFormat::Q8_0, BlockFormat::MXFP4, BlockFormat::Q4_K,
                                BlockFormat::Q6_K, BlockFormat::Q2_K,  BlockFormat::Q3_K,
                                BlockFormat::Q5_K, BlockFormat::Q4_0,  BlockFormat::IQ2_XXS};

// Random blocks whose fp16 scales are moderate and normal (no denormal arithmetic in the products).
std::vector<uint8_t> random_matrix(BlockFormat f, size_t bytes, uint32_t seed) {
  const auto& info = dsv4::block_info(f);
  std::vector<uint8_t> w(bytes / size_t(info.bytes) * size_t(info.bytes));
  uint64_t s = 0x9e3779b97f4a7c15ull ^ seed;
  for (size_t i = 0; i + 8 <= w.size(); i += 8) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    std::memcpy(&w[i], &s, 8);
  }
  std::vector<int> halves;
  switch (f) {
    case BlockFormat::Q2_K: halves = {80, 82}; break;
    case BlockFormat::Q3_K: halves = {108}; break;
    case BlockFormat::Q4_K:
    case BlockFormat::Q5_K: halves = {0, 2}; break;
    case BlockFormat::Q6_K: halves = {208}; break;
    case BlockFormat::MXFP4: break;
    default: halves = {0};
  }
  for (size_t b = 0; b < w.size(); b += size_t(info.bytes)) {
    for (int off : halves) {
      const uint16_t h = uint16_t(0x2000 + (w[b + size_t(off)] & 0x3ff));  // about 2^-7
      std::memcpy(&w[b + size_t(off)], &h, 2);
    }
    if (f == BlockFormat::MXFP4) w[b] = uint8_t(120 + (w[b] & 7));
  }
  return w;
}

// One cold matrix at a time: the formats take turns on the same 512 MiB.
const std::vector<uint8_t>& cold_matrix(BlockFormat f) {
  static BlockFormat held = BlockFormat::None;
  static std::vector<uint8_t> w;
  if (held != f) {
    w.clear();
    w.shrink_to_fit();
    w = random_matrix(f, kColdBytes, 1);
    held = f;
  }
  return w;
}

void BM_BlockDecode(benchmark::State& st, BlockFormat f, ThreadPool& pool) {
  const auto& w = cold_matrix(f);
  const int64_t rb = dsv4::block_row_bytes(f, kK), rows = int64_t(w.size()) / rb;
  const auto x = randn(size_t(kK), 2);
  std::vector<float> y(static_cast<size_t>(rows));
  const size_t P = size_t(pool.size());
  for (auto _ : st) {
    pool.parallel_for(P, [&](size_t b, size_t e) {
      for (size_t p = b; p < e; ++p) {
        const int64_t o0 = rows * int64_t(p) / int64_t(P), o1 = rows * int64_t(p + 1) / int64_t(P);
        dsv4::blocks::dot_rows(f, w.data(), kK, o0, o1, x.data(), kK, 1, y.data(), rows);
      }
    });
    benchmark::DoNotOptimize(y.data());
  }
  st.counters["bytes_per_second"] = benchmark::Counter(double(rows * rb), benchmark::Counter::kIsIterationInvariantRate);
  st.counters["threads"] = double(P);
}

void BM_BlockPrefill(benchmark::State& st, BlockFormat f, int64_t S, ThreadPool& pool) {
  const int64_t rows = 4096, rb = dsv4::block_row_bytes(f, kK);
  static std::vector<uint8_t> w;
  static BlockFormat held = BlockFormat::None;
  if (held != f) w = random_matrix(f, size_t(rows * rb), 3), held = f;
  const auto x = activations(S, kK, 4);
  std::vector<float> y(static_cast<size_t>(rows * S));
  const size_t P = size_t(pool.size());
  for (auto _ : st) {
    pool.parallel_for(P, [&](size_t b, size_t e) {
      for (size_t p = b; p < e; ++p) {
        const int64_t o0 = rows * int64_t(p) / int64_t(P), o1 = rows * int64_t(p + 1) / int64_t(P);
        dsv4::blocks::dot_rows(f, w.data(), kK, o0, o1, x.data(), kK, S, y.data(), rows);
      }
    });
    benchmark::DoNotOptimize(y.data());
  }
  st.counters["flops_per_second"] =
      benchmark::Counter(2.0 * double(S * rows * kK), benchmark::Counter::kIsIterationInvariantRate);
  st.counters["threads"] = double(P);
}

void BM_BlockStream(benchmark::State& st, ThreadPool& pool) {
  static const std::vector<float> v = uniform(kColdBytes / 4, 99, -1.0f, 1.0f);
  stream_read(st, pool, v);
}

template <typename Fn>
void add(const std::string& name, Fn fn) {
  benchmark::RegisterBenchmark(name.c_str(), fn)->UseRealTime()->MinTime(0.5)->Unit(benchmark::kMillisecond);
}

bool register_all() {
  for (const PoolChoice& p : kPools)
    add(std::string("BM_BlockStream/") + p.suffix, [&p](benchmark::State& st) { BM_BlockStream(st, p.get()); });
  for (BlockFormat f : kFormats)
    for (const PoolChoice& p : kPools)
      add(std::string("BM_BlockDecode/") + std::string(dsv4::block_name(f)) + "/" + p.suffix,
          [f, &p](benchmark::State& st) { BM_BlockDecode(st, f, p.get()); });
  for (BlockFormat f : kFormats)
    for (int64_t S : {16, 64})
      for (const PoolChoice& p : kPools)
        add(std::string("BM_BlockPrefill/") + std::string(dsv4::block_name(f)) + "/S:" + std::to_string(S) + "/" +
                p.suffix,
            [f, S, &p](benchmark::State& st) { BM_BlockPrefill(st, f, S, p.get()); });
  return true;
}

const bool registered = register_all();

}  // namespace
