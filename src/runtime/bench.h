#pragma once
// Decode and prefill speed together with the roofline measured in the same run (issue: report
// tokens/s against bytes moved per token vs read bandwidth, and FLOPs vs peak).
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "model/transformer.h"
#include "runtime/speculative.h"
#include "tokenizer/tokenizer.h"

namespace dsv4 {

struct BenchResult {
  int64_t ctx = 0;
  double decode_tokens_per_s = 0, decode_bytes_per_token = 0, read_bandwidth_bytes_per_s = 0, decode_roofline_ratio = 0;
  double prefill_tokens_per_s = 0, prefill_flops_per_token = 0, peak_flops_per_s = 0, prefill_roofline_ratio = 0;
  // The quantised linears' instructions ("bf16" dot products or "fp32" FMAs) give peak_flops_per_s;
  // both peaks are measured, and the ratio against the fp32 FMA peak compares with older runs.
  std::string dot;
  double fma_peak_flops_per_s = 0, bf16_peak_flops_per_s = 0, prefill_fma_roofline_ratio = 0;
  // With routed experts streamed from disk (--ram-budget): what the decode steps read.
  bool streaming = false;
  double expert_cache_hit_rate = 0, disk_bytes_per_token = 0, process_disk_bytes_per_token = 0;
  double disk_read_bandwidth_bytes_per_s = 0, stream_roofline_ratio = 0;
  double hash_predictor_hit_rate = 0, next_gate_predictor_hit_rate = 0;
  bool disk_probe_direct = false;
  // Expert parallel (mpirun): per decode token, what went over the wire and where the step's time
  // went — blocked on the peers, of which the slowest peer's compute and the rest (the wire).
  bool parallel = false;
  double peer_bytes_per_token = 0, peer_messages_per_token = 0;
  double peer_wait_s_per_token = 0, peer_compute_s_per_token = 0, peer_wire_s_per_token = 0;
  // With profile::enable(true): seconds per forward phase, for the prefill and per decode step.
  std::vector<std::pair<std::string, double>> prefill_phases, decode_phases;
  // With verify_max > 0: the median time of a step that verifies k drafts (k + 1 tokens, rolled
  // back) over one decode step, k = 1..verify_max; and one MTP draft step over one decode step.
  std::vector<double> verify_cost_ratio;
  double mtp_step_cost_ratio = 0;
};

// Multi-threaded streaming read of a random buffer larger than the caches (filled once).
class ReadBandwidthProbe {
 public:
  explicit ReadBandwidthProbe(size_t bytes = size_t(512) << 20);
  double measure(int reps = 1) const;  // bytes/s, the best of `reps` passes
 private:
  std::vector<float> buf_;
};
// Random 4 MiB reads of the checkpoint's own shards, `threads` in flight, O_DIRECT where the filesystem
// allows (so the page cache does not flatter the drive), for about `seconds`: bytes/s.
double measure_disk_read(const Checkpoint& ck, double seconds = 2.0, int threads = 8, bool* direct = nullptr);
// fp32 FMA peak of all threads (the precision the engine's GEMMs run in), the best of `reps`: a
// repetition slowed by another tenant of the host says nothing about the machine's limit.
double measure_peak_flops(int reps = 5);
// The same for BF16 dot products (vdpbf16ps, 4 flops per fp32 lane); 0 where the CPU has none.
double measure_bf16_peak_flops(int reps = 5);
// The middle element (the upper one of an even count): timings are quoted as medians.
double median(std::vector<double> v);
// Weight and KV bytes one decode token reads at context ctx (routed experts: k of E per layer).
double decode_bytes_per_token(const Model& m, int64_t ctx);
// FLOPs per token of a prefill of ctx tokens (linears, attention, indexer, compressors).
double prefill_flops_per_token(const Model& m, int64_t ctx);
// FLOPs of one decode token at position ctx (every linear and the head, attention over what it reads).
double decode_flops_per_token(const Model& m, int64_t ctx);
// Random token ids, prefill ctx of them, then `decode_steps` single-token steps. decode_roofline_ratio
// is the median over steps of each step's ratio to the bandwidth probed just before it.
BenchResult run_bench(const Model& m, int64_t ctx, int decode_steps, uint64_t seed, int verify_max = 0);

// One decode step of `batch` sequences at context ctx in one forward (bench --batch), medians over
// steps. The binding roof is the larger of bytes_per_step / read bandwidth and flops_per_step / peak
// (the instructions the quantised linears use); roofline_ratio is that time over the step's.
struct BatchBenchResult {
  int batch = 0;
  int64_t ctx = 0;
  double step_s = 0, tokens_per_s = 0;  // tokens/s of all sequences together
  double experts_per_layer = 0;         // distinct routed experts read per MoE layer per step
  double bytes_per_step = 0, flops_per_step = 0, read_bandwidth_bytes_per_s = 0, peak_flops_per_s = 0;
  std::string dot, binding;             // "bandwidth" or "compute"
  double roofline_ratio = 0;
};
// Needs the routed experts in RAM: it counts them through its own expert store.
std::vector<BatchBenchResult> run_batch_bench(Model& m, int64_t ctx, const std::vector<int>& batches, int steps,
                                              uint64_t seed = 42);

// End-to-end speculative decoding on real text: greedy continuations of `prompts` (token ids) with
// and without drafts, alternated A/B `reps` times on one sequence at a time; medians.
struct SpecBenchResult {
  double plain_tokens_per_s = 0, spec_tokens_per_s = 0, speedup = 0;
  double acceptance_rate = 0;       // accepted / drafted
  double tokens_per_step = 0;       // mean accepted length + 1: tokens per verification step
  uint64_t generated = 0;
  bool identical = true;            // the greedy tokens of both runs agree
};
SpecBenchResult run_spec_bench(const Model& m, const Tokenizer& tok, const std::vector<std::vector<int32_t>>& prompts,
                               int max_tokens, const SpecOptions& spec, int reps = 3);

}  // namespace dsv4
