// Linear-layer products (kernels/linear.h) at the real DeepSeek-V4-Flash shapes (architecture.md §6.2), in every
// weight format the checkpoints use, each on a 1-thread pool ("/threads:1") and ThreadPool::global()
// ("/threads:all").
//   BM_MatmulDecode:  S = 1, the memory-bound case; bytes_per_second = (weights + scales + x + y) / time.
//                     Weights rotate through copies totalling >= 256 MiB so every token streams them
//                     from DRAM, as real decode does (13B active parameters never fit in a cache).
//   BM_MatmulPrefill: S = 64, 256, the compute-bound case; flops_per_second = 2·S·out·in / time.
//   BM_StreamSum: the machine's read bandwidth, to read the decode numbers against.
//   BM_FmaPeak:   the fp32 FMA peak (simd::fma_burn), to read the prefill numbers against.
// FP8/FP4 layers run with act_quant on, as the model does; BF16/F32 layers never quantise activations.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "bench_common.h"
#include "core/dtype.h"
#include "io/safetensors.h"
#include "kernels/linear.h"
#include "kernels/matmul_simd.h"
#include "model/weights.h"

namespace {

using dsv4::DType;
using dsv4::Linear;
using dsv4::ThreadPool;
using Fmt = Linear::Format;
using namespace dsv4_bench;

struct Shape {
  const char* name;
  Fmt fmt;
  int64_t out, in;
  int groups = 1;  // > 1: matmul_grouped (wo_a), x is [S, groups*in]
};

// Decode: one of each distinct Flash linear. Expert weights are FP4 ([out, in/2] I8 on disk).
const Shape kDecode[] = {
    {"fp4_expert_w1_2048x4096", Fmt::FP4, 2048, 4096},
    {"fp4_expert_w2_4096x2048", Fmt::FP4, 4096, 2048},
    {"fp8_shared_w1_2048x4096", Fmt::FP8, 2048, 4096},
    {"fp8_shared_w2_4096x2048", Fmt::FP8, 4096, 2048},
    {"fp8_wq_a_1024x4096", Fmt::FP8, 1024, 4096},
    {"fp8_wq_b_32768x1024", Fmt::FP8, 32768, 1024},
    {"fp8_wkv_512x4096", Fmt::FP8, 512, 4096},
    {"fp8_wo_a_g8_8192x4096", Fmt::FP8, 8192, 4096, 8},
    {"fp8_wo_b_4096x8192", Fmt::FP8, 4096, 8192},
    {"fp8_idx_wq_b_8192x1024", Fmt::FP8, 8192, 1024},
    {"bf16_gate_256x4096", Fmt::BF16, 256, 4096},
    {"bf16_compressor_wkv_1024x4096", Fmt::BF16, 1024, 4096},
    {"bf16_head_129280x4096", Fmt::BF16, 129280, 4096},
    // No Flash linear is F32, but converted/toy checkpoints (dsv4-nano) may be.
    {"f32_1024x4096", Fmt::F32, 1024, 4096},
};

// Prefill: the expert FFN in both quantised formats (same shape, so FP4 vs FP8 compares directly),
// the grouped wo_a and one BF16 layer.
const Shape kPrefill[] = {
    {"fp4_expert_w1_2048x4096", Fmt::FP4, 2048, 4096},
    {"fp4_expert_w2_4096x2048", Fmt::FP4, 4096, 2048},
    {"fp8_shared_w1_2048x4096", Fmt::FP8, 2048, 4096},
    {"fp8_wo_a_g8_8192x4096", Fmt::FP8, 8192, 4096, 8},
    {"bf16_compressor_wkv_1024x4096", Fmt::BF16, 1024, 4096},
};
const int64_t kPrefillS[] = {24, 64, 256};

constexpr size_t kColdBytes = size_t(256) << 20;

// Fills weight bytes and scale bytes with valid random codes of the format.
void fill_random(const Shape& sh, std::vector<uint8_t>& w, std::vector<uint8_t>& s, uint32_t seed) {
  std::mt19937 g(seed);
  std::uniform_int_distribution<int> e8m0(120, 130);  // scales 2^-7 .. 2^3
  const size_t n = size_t(sh.out * sh.in);
  switch (sh.fmt) {
    case Fmt::Block: break;  // bench_blocks covers the block formats
    case Fmt::F32: {
      w.resize(4 * n);
      std::normal_distribution<float> d(0.0f, 0.05f);
      for (size_t i = 0; i < n; ++i) {
        const float f = d(g);
        std::memcpy(w.data() + 4 * i, &f, 4);
      }
      break;
    }
    case Fmt::BF16: {
      // Random sign, exponent 2^-7 .. 2^0 and mantissa: finite, normal, never zero. Two values per
      // draw keeps the 1 GiB head affordable to generate.
      w.resize(2 * n);
      for (size_t i = 0; i < n; i += 2) {
        const uint32_t r = g();
        for (size_t j = 0; j < 2 && i + j < n; ++j) {
          const uint32_t h = r >> (16 * j);
          const uint16_t v = uint16_t(((h & 0x8000u)) | ((120u + (h >> 7) % 8u) << 7) | (h & 0x7fu));
          std::memcpy(w.data() + 2 * (i + j), &v, 2);
        }
      }
      break;
    }
    case Fmt::FP8:
    case Fmt::FP4: {
      w.resize(sh.fmt == Fmt::FP8 ? n : n / 2);
      for (size_t i = 0; i < w.size(); i += 4) {
        const uint32_t r = g();
        for (size_t j = 0; j < 4 && i + j < w.size(); ++j) {
          uint8_t c = uint8_t(r >> (8 * j));
          // e4m3 NaN is S.1111.111; flipping the low bit gives the largest finite code. FP4 has no NaN.
          if (sh.fmt == Fmt::FP8 && (c & 0x7f) == 0x7f) c ^= 1;
          w[i + j] = c;
        }
      }
      s.resize(sh.fmt == Fmt::FP8 ? size_t(((sh.out + 127) / 128) * ((sh.in + 127) / 128))
                                  : size_t(sh.out * (sh.in / 32)));
      for (auto& c : s) c = uint8_t(e8m0(g));
      break;
    }
  }
}

// Goes through make_linear, so the views are built exactly as from a checkpoint (shape checks included).
Linear view(const Shape& sh, const uint8_t* w, const uint8_t* s) {
  dsv4::TensorInfo wt, sc;
  wt.name = std::string(sh.name) + ".weight";
  wt.data = w;
  sc.name = std::string(sh.name) + ".scale";
  sc.dtype = DType::F8_E8M0;
  sc.data = s;
  switch (sh.fmt) {
    case Fmt::Block: break;  // bench_blocks covers the block formats
    case Fmt::F32: wt.dtype = DType::F32; wt.shape = {sh.out, sh.in}; break;
    case Fmt::BF16: wt.dtype = DType::BF16; wt.shape = {sh.out, sh.in}; break;
    case Fmt::FP8:
      wt.dtype = DType::F8_E4M3;
      wt.shape = {sh.out, sh.in};
      sc.shape = {(sh.out + 127) / 128, (sh.in + 127) / 128};
      break;
    case Fmt::FP4:
      wt.dtype = DType::I8;
      wt.shape = {sh.out, sh.in / 2};
      sc.shape = {sh.out, sh.in / 32};
      break;
  }
  return dsv4::make_linear(wt, sh.fmt == Fmt::FP8 || sh.fmt == Fmt::FP4 ? &sc : nullptr, sh.out, sh.in);
}

// Copies of one layer's bytes (weights then scales, one block each) and their Linear views.
struct Weights {
  std::vector<std::vector<uint8_t>> blocks;
  std::vector<Linear> copies;
};

std::unique_ptr<Weights> build(const Shape& sh, bool cold) {
  std::vector<uint8_t> w, s;
  fill_random(sh, w, s, 1234);
  const size_t bytes = w.size() + s.size();
  const size_t n = cold ? std::max<size_t>(1, (kColdBytes + bytes - 1) / bytes) : 1;
  auto W = std::make_unique<Weights>();
  W->blocks.resize(n);
  for (auto& b : W->blocks) {
    b.resize(bytes);
    std::memcpy(b.data(), w.data(), w.size());
    if (!s.empty()) std::memcpy(b.data() + w.size(), s.data(), s.size());
    W->copies.push_back(view(sh, b.data(), b.data() + w.size()));
  }
  return W;
}

// One layer at a time stays resident: the threads:1 and threads:all cases of a shape run back to back
// and share it, and the 1 GiB head is freed before the next shape is generated.
const Weights& weights_for(const Shape& sh, bool cold) {
  static std::string key;
  static std::unique_ptr<Weights> cur;
  const std::string k = std::string(sh.name) + (cold ? "/cold" : "/hot");
  if (!cur || k != key) {
    cur.reset();
    cur = build(sh, cold);
    key = k;
  }
  return *cur;
}

void run_matmul(benchmark::State& st, const Shape& sh, int64_t S, bool cold, ThreadPool& pool) {
  const Weights& W = weights_for(sh, cold);
  const int64_t xin = int64_t(sh.groups) * sh.in;
  const auto x = activations(S, xin, 77);
  std::vector<float> y(size_t(S * sh.out));
  size_t i = 0;
  for (auto _ : st) {
    const Linear& L = W.copies[i];
    i = (i + 1) % W.copies.size();
    if (sh.groups > 1)
      dsv4::matmul_grouped(L, sh.groups, x.data(), S, y.data(), pool);
    else
      dsv4::matmul(L, x.data(), S, y.data(), L.quantized(), pool);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  const double flops = 2.0 * double(S) * double(sh.out) * double(sh.in);
  if (S == 1) {
    const double bytes = double(W.copies[0].weight_bytes()) + 4.0 * double(S * (xin + sh.out));
    st.counters["bytes_per_second"] = benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate);
  } else {
    st.counters["flops_per_second"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
  }
  st.counters["threads"] = double(pool.size());
}

// ---- bandwidth roof ----

const std::vector<float>& stream_buffer() {
  static const std::vector<float> v = uniform(kColdBytes / 4, 99, -1.0f, 1.0f);
  return v;
}

void BM_StreamSum(benchmark::State& st, ThreadPool& pool) {
  const auto& v = stream_buffer();
  stream_read(st, pool, v);
}

void BM_FmaPeak(benchmark::State& st, ThreadPool& pool) {
  const size_t P = size_t(pool.size());
  std::vector<float> sink(P * 16, 1.0f);
  std::vector<double> flops(P);
  for (auto _ : st)
    pool.parallel_for(P, [&](size_t b, size_t e) {
      for (size_t p = b; p < e; ++p) flops[p] = dsv4::simd::fma_burn(2'000'000, &sink[p * 16]);
    });
  double total = 0;
  for (double f : flops) total += f;
  st.counters["flops_per_second"] = benchmark::Counter(total, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["threads"] = double(P);
}

// Parallel cases need wall time: the default (main-thread CPU time) would not count the workers.
template <typename Fn>
void add(const std::string& name, Fn fn) {
  benchmark::RegisterBenchmark(name.c_str(), fn)->UseRealTime()->MinTime(0.2)->Unit(benchmark::kMicrosecond);
}

bool register_all() {
  for (const PoolChoice& p : kPools) {
    const std::string sfx = std::string("/") + p.suffix;
    add("BM_StreamSum" + sfx, [&p](benchmark::State& st) { BM_StreamSum(st, p.get()); });
    add("BM_FmaPeak" + sfx, [&p](benchmark::State& st) { BM_FmaPeak(st, p.get()); });
  }
  for (const Shape& sh : kDecode)
    for (const PoolChoice& p : kPools)
      add(std::string("BM_MatmulDecode/") + sh.name + "/" + p.suffix,
          [&sh, &p](benchmark::State& st) { run_matmul(st, sh, 1, true, p.get()); });
  // Prefill reuses each dequantised panel across S tokens, so hot (cache-resident) weights are fine.
  for (const Shape& sh : kPrefill)
    for (int64_t S : kPrefillS)
      for (const PoolChoice& p : kPools)
        add(std::string("BM_MatmulPrefill/") + sh.name + "/S:" + std::to_string(S) + "/" + p.suffix,
            [&sh, &p, S](benchmark::State& st) { run_matmul(st, sh, S, false, p.get()); });
  return true;
}

const bool registered = register_all();

}  // namespace
