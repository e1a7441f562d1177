// The small per-token kernels at DeepSeek-V4-Flash sizes (D 4096, 64 heads × 512, 64 RoPE dims,
// hc_mult 4, window 128, indexer top-k 512), single thread: in the engine they run inside per-token or
// per-head loops, so their single-call latency is what matters.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "bench_common.h"
#include "kernels/attention.h"
#include "kernels/hadamard.h"
#include "kernels/hyper_connection.h"
#include "kernels/norm.h"
#include "kernels/quant.h"
#include "kernels/rope.h"
#include "kernels/topk.h"

namespace {

using namespace dsv4_bench;

constexpr int kD = 4096, kHeads = 64, kHeadDim = 512, kHc = 4;

// ---- RMSNorm: D (attn/ffn norm), q_lora 1024 (q_norm), 512 (kv_norm) ----

void BM_RmsNorm(benchmark::State& st) {
  const size_t n = size_t(st.range(0));
  const auto x = randn(n, 1), w = uniform(n, 2, 0.5f, 1.5f);
  std::vector<float> y(n);
  for (auto _ : st) {
    dsv4::rmsnorm(x.data(), w.data(), n, 1e-6f, y.data());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(int64_t(st.iterations()) * int64_t(3 * n * 4));
}
BENCHMARK(BM_RmsNorm)->Arg(512)->Arg(1024)->Arg(kD)->MinTime(0.1);

// Prefill normalises S rows at once.
void BM_RmsNormRows(benchmark::State& st) {
  const size_t S = size_t(st.range(0));
  const auto x = randn(S * kD, 3), w = uniform(kD, 4, 0.5f, 1.5f);
  std::vector<float> y(S * kD);
  for (auto _ : st) {
    dsv4::rmsnorm_rows(x.data(), w.data(), S, kD, 1e-6f, y.data());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(int64_t(st.iterations()) * int64_t((2 * S + 1) * kD * 4));
}
BENCHMARK(BM_RmsNormRows)->Arg(64)->Arg(256)->MinTime(0.1);

// ---- RoPE on the last 64 dims of each of the 64 query heads (one token) ----

// ratio-0 layers: base 10000, no YaRN; compressed layers: base 160000 with YaRN (architecture.md §4.7).
dsv4::RopeParams rope_params(bool yarn) {
  dsv4::RopeParams p;
  p.rope_dim = 64;
  if (yarn) {
    p.base = 160000;
    p.yarn = true;
    p.factor = 16;
    p.original_seq_len = 65536;
  }
  return p;
}

void rope_bench(benchmark::State& st, bool yarn) {
  const dsv4::Rope rope(rope_params(yarn));
  auto q = randn(size_t(kHeads * kHeadDim), 5);
  int64_t t = 0;
  for (auto _ : st) {
    // Positions vary like a real run, since sin/cos cost depends on the argument's size.
    t = (t + 7919) % 65536;
    for (int h = 0; h < kHeads; ++h) rope.apply(q.data() + size_t(h) * kHeadDim, kHeadDim, t);
    benchmark::DoNotOptimize(q.data());
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(int64_t(st.iterations()) * kHeads);
}
void BM_Rope64Heads(benchmark::State& st) { rope_bench(st, false); }
void BM_Rope64HeadsYarn(benchmark::State& st) { rope_bench(st, true); }
BENCHMARK(BM_Rope64Heads)->MinTime(0.1);
BENCHMARK(BM_Rope64HeadsYarn)->MinTime(0.1);

// ---- Hyper-connections, hc_mult 4 over D 4096 ----

struct HcData {
  std::vector<float> fn, base, scale, X, f;
  dsv4::HcParams p{};
  explicit HcData(bool head) {
    const int rows = head ? kHc : (2 + kHc) * kHc;
    fn = randn(size_t(rows) * kHc * kD, 6, 0.02f);
    base = randn(size_t(rows), 7, 0.5f);
    scale = uniform(head ? 1 : 3, 8, 0.5f, 2.0f);
    X = randn(size_t(kHc) * kD, 9);
    f = randn(size_t(kD), 10);
    p.fn = fn.data();
    p.base = base.data();
    p.scale = scale.data();
    p.n = kHc;
    p.D = kD;
  }
};

void BM_Sinkhorn4x4(benchmark::State& st) {
  const auto logits = randn(kHc * kHc, 11, 2.0f);
  float C[kHc * kHc];
  for (auto _ : st) {
    // In place, so start each iteration from the same logits.
    std::memcpy(C, logits.data(), sizeof(C));
    dsv4::sinkhorn(C, kHc, 20, 1e-6f);
    benchmark::DoNotOptimize(C);
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_Sinkhorn4x4)->MinTime(0.1);

void BM_HcPre(benchmark::State& st) {
  const HcData d(false);
  std::vector<float> x(kD), post(kHc), C(kHc * kHc);
  for (auto _ : st) {
    dsv4::hc_pre(d.p, d.X.data(), x.data(), post.data(), C.data());
    benchmark::DoNotOptimize(x.data());
    benchmark::ClobberMemory();
  }
  // Dominated by streaming the [24, 4·D] mixing matrix.
  st.SetBytesProcessed(int64_t(st.iterations()) * int64_t((d.fn.size() + d.X.size() + kD) * 4));
}
BENCHMARK(BM_HcPre)->MinTime(0.1);

void BM_HcPost(benchmark::State& st) {
  const HcData d(false);
  const auto post = uniform(kHc, 12, 0.0f, 2.0f);
  std::vector<float> C = randn(kHc * kHc, 13, 2.0f);
  dsv4::sinkhorn(C.data(), kHc, 20, 1e-6f);
  std::vector<float> Xout(size_t(kHc) * kD);
  for (auto _ : st) {
    dsv4::hc_post(kHc, kD, d.f.data(), d.X.data(), post.data(), C.data(), Xout.data());
    benchmark::DoNotOptimize(Xout.data());
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(int64_t(st.iterations()) * int64_t((2 * kHc + 1) * kD * 4));
}
BENCHMARK(BM_HcPost)->MinTime(0.1);

void BM_HcHead(benchmark::State& st) {
  const HcData d(true);
  std::vector<float> z(kD);
  for (auto _ : st) {
    dsv4::hc_head(d.p, d.X.data(), z.data());
    benchmark::DoNotOptimize(z.data());
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(int64_t(st.iterations()) * int64_t((d.fn.size() + d.X.size() + kD) * 4));
}
BENCHMARK(BM_HcHead)->MinTime(0.1);

// ---- Hadamard: the indexer rotates 128-d vectors (64 query heads + keys per token) ----

void BM_Hadamard(benchmark::State& st) {
  const size_t n = size_t(st.range(0));
  auto x = randn(n, 14);
  for (auto _ : st) {
    // The scaled transform is an involution, so repeating it in place stays bounded.
    dsv4::hadamard(x.data(), n);
    benchmark::DoNotOptimize(x.data());
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(int64_t(st.iterations()));
}
BENCHMARK(BM_Hadamard)->Arg(128)->MinTime(0.1);

// ---- Indexer top-k: 512 of n compressed-entry scores (n = context / 4) ----

void BM_TopK512(benchmark::State& st) {
  const int32_t n = int32_t(st.range(0));
  const auto scores = randn(size_t(n), 15);
  for (auto _ : st) {
    auto idx = dsv4::topk_desc(scores.data(), n, 512);
    benchmark::DoNotOptimize(idx.data());
  }
  st.SetItemsProcessed(int64_t(st.iterations()) * n);
}
BENCHMARK(BM_TopK512)->Arg(1024)->Arg(4096)->Arg(16384)->MinTime(0.1);

// ---- Sink attention: one query token, 64 heads × 512 dims, over the shared latent KV rows ----
// 128 rows = the sliding window (SWA layers); 640 = window + 512 indexer-selected entries (CSA layers).

void BM_SinkAttention64Heads(benchmark::State& st) {
  const int32_t n = int32_t(st.range(0));
  const auto kv = randn(size_t(n) * kHeadDim, 16);
  const auto q = randn(size_t(kHeads) * kHeadDim, 17);
  const auto sinks = randn(kHeads, 18);
  std::vector<const float*> rows(static_cast<size_t>(n));
  for (int32_t k = 0; k < n; ++k) rows[size_t(k)] = kv.data() + size_t(k) * kHeadDim;
  std::vector<float> out(size_t(kHeads) * kHeadDim);
  const float scale = 1.0f / std::sqrt(float(kHeadDim));
  for (auto _ : st) {
    for (int h = 0; h < kHeads; ++h)
      dsv4::sink_attention(q.data() + size_t(h) * kHeadDim, rows.data(), n, kHeadDim, scale, sinks[size_t(h)],
                           out.data() + size_t(h) * kHeadDim);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  // Every head reads every row twice (score, then weighted sum).
  st.SetBytesProcessed(int64_t(st.iterations()) * int64_t(kHeads) * n * kHeadDim * 4 * 2);
}
BENCHMARK(BM_SinkAttention64Heads)->Arg(128)->Arg(640)->MinTime(0.1);

// ---- Quantisation round-trips (in place, so each iteration restores the input: the copy is timed too,
//      but it is a small fraction of the work) ----

void roundtrip_bench(benchmark::State& st, size_t n, void (*fn)(float*, size_t, size_t), size_t block) {
  auto src = randn(n, 19);
  for (size_t i = 0; i < n; i += 97) src[i] *= 50.0f;  // outliers spread the block scales
  std::vector<float> x(n);
  for (auto _ : st) {
    std::memcpy(x.data(), src.data(), n * 4);
    fn(x.data(), n, block);
    benchmark::DoNotOptimize(x.data());
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(int64_t(st.iterations()) * int64_t(n * 4));
}
// Activations before every quantised linear: 1×128 blocks over D.
void BM_Fp8RoundtripAct4096(benchmark::State& st) { roundtrip_bench(st, kD, dsv4::fp8_roundtrip, 128); }
// KV nope dims: 448 values in 64-wide blocks per cached vector.
void BM_Fp8RoundtripKv448(benchmark::State& st) { roundtrip_bench(st, 448, dsv4::fp8_roundtrip, 64); }
// Indexer q (64 heads) and keys: 128 values in 32-wide FP4 blocks.
void BM_Fp4RoundtripIndexer128(benchmark::State& st) { roundtrip_bench(st, 128, dsv4::fp4_roundtrip, 32); }
BENCHMARK(BM_Fp8RoundtripAct4096)->MinTime(0.1);
BENCHMARK(BM_Fp8RoundtripKv448)->MinTime(0.1);
BENCHMARK(BM_Fp4RoundtripIndexer128)->MinTime(0.1);

// The KV cache stores the 448 nope dims as FP8 codes in 7 blocks of 64 (write on append, read per step).
void BM_Fp8EncodeDecodeKv448(benchmark::State& st) {
  const auto x = randn(448, 20, 3.0f);
  uint8_t codes[448], scales[7];
  float out[448];
  for (auto _ : st) {
    for (int b = 0; b < 7; ++b) scales[b] = dsv4::fp8_encode_block(x.data() + 64 * b, 64, codes + 64 * b);
    for (int b = 0; b < 7; ++b) dsv4::fp8_decode_block(codes + 64 * b, scales[b], 64, out + 64 * b);
    benchmark::DoNotOptimize(out);
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(int64_t(st.iterations()) * 448 * 4);
}
BENCHMARK(BM_Fp8EncodeDecodeKv448)->MinTime(0.1);

}  // namespace
