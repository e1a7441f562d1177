// Batched decode (bench --batch): the decode step of B concurrent sequences in one forward, the
// call the continuous-batching scheduler makes, against the roof that binds at that B. Dense weights
// are read once per step whatever B is; routed experts once per distinct expert the B tokens pick
// (counted as the MoE asks for them); every sequence reads its own KV; FLOPs grow with B.
#include <algorithm>
#include <chrono>
#include <random>
#include <vector>

#include "core/error.h"
#include "kernels/matmul_bf16.h"
#include "model/expert_store.h"
#include "runtime/bench.h"

namespace dsv4 {
namespace {

using Clock = std::chrono::steady_clock;

// The mapped experts, counting the distinct experts each layer is asked for since reset().
class CountingExperts final : public ExpertStore {
 public:
  explicit CountingExperts(const ModelWeights& w) : inner_(w), w_(w) {}
  bool streams() const override { return false; }
  size_t max_pinned() const override { return inner_.max_pinned(); }
  void acquire(int layer, const int32_t* e, size_t n, const ExpertWeights** views) override {
    if (size_t(layer) >= seen_.size()) seen_.resize(size_t(layer) + 1);
    auto& s = seen_[size_t(layer)];
    if (s.empty()) s.assign(moe_of(w_, layer)->experts.size(), 0);
    for (size_t i = 0; i < n; ++i) s[size_t(e[i])] = 1;
    inner_.acquire(layer, e, n, views);
  }
  void release(int layer, const int32_t* e, size_t n) override { inner_.release(layer, e, n); }
  void reset() { seen_.clear(); }
  int64_t distinct() const {
    int64_t d = 0;
    for (auto& s : seen_) d += std::count(s.begin(), s.end(), uint8_t(1));
    return d;
  }

 private:
  MappedExperts inner_;
  const ModelWeights& w_;
  std::vector<std::vector<uint8_t>> seen_;
};

}  // namespace

std::vector<BatchBenchResult> run_batch_bench(Model& m, int64_t ctx, const std::vector<int>& batches, int steps,
                                              uint64_t seed) {
  if (m.expert_store().streams()) fail("bench --batch measures in-RAM decode: use --ram-budget off");
  const ModelConfig& c = m.config();
  const ModelWeights& w = m.weights();
  std::mt19937_64 rng(seed);
  auto token = [&] { return int32_t(rng() % uint64_t(c.vocab_size)); };
  std::vector<int32_t> prompt(static_cast<size_t>(ctx));
  for (auto& t : prompt) t = token();
  SequenceState base = m.new_sequence();
  m.forward(base, prompt.data(), ctx);

  // Bytes of one step: dense weights (and the other per-step reads) once, each sequence's KV, each
  // distinct routed expert once; decode_bytes_per_token(ctx) is that sum for one token.
  const ExpertWeights& e0 = w.blocks.front().moe.experts.front();
  const double expert = double(e0.w1.weight_bytes() + e0.w2.weight_bytes() + e0.w3.weight_bytes());
  const double one0 = decode_bytes_per_token(m, 0), kv = decode_bytes_per_token(m, ctx) - one0;
  const double dense = one0 - double(c.n_activated_experts) * double(w.blocks.size()) * expert;
  const double flops_token = decode_flops_per_token(m, ctx);
  const bool bf16 = bf16dot::available() && m.numerics().act_quant;
  const double peak = bf16 ? measure_bf16_peak_flops() : measure_peak_flops();

  auto counting = std::make_shared<CountingExperts>(w);
  m.set_expert_store(counting);
  ReadBandwidthProbe probe;
  std::vector<BatchBenchResult> out;
  for (int B : batches) {
    if (B < 1) fail("--batch sizes must be positive, got {}", B);
    std::vector<SequenceState> seqs(size_t(B), base);  // B sequences at the same context, each its own KV
    std::vector<int32_t> ids(static_cast<size_t>(B));
    std::vector<double> times, bws, bytes;
    for (int i = 0; i <= steps; ++i) {  // step 0 warms the batch's buffers up
      for (auto& t : ids) t = token();
      std::vector<Model::SeqInput> in;
      for (int b = 0; b < B; ++b) in.push_back({&seqs[size_t(b)], &ids[size_t(b)], 1});
      const double bw = probe.measure();
      counting->reset();
      const auto t0 = Clock::now();
      m.forward_batch(in);
      const double s = std::chrono::duration<double>(Clock::now() - t0).count();
      for (auto& st : seqs) st = base;  // every step at the same context
      if (i == 0) continue;
      times.push_back(s);
      bws.push_back(bw);
      bytes.push_back(dense + B * kv + double(counting->distinct()) * expert);
    }
    BatchBenchResult r;
    r.batch = B;
    r.ctx = ctx;
    r.step_s = median(times);
    r.tokens_per_s = B / r.step_s;
    r.bytes_per_step = median(bytes);
    r.experts_per_layer = (r.bytes_per_step - dense - B * kv) / expert / double(w.blocks.size());
    r.flops_per_step = B * flops_token;
    r.read_bandwidth_bytes_per_s = median(bws);
    r.peak_flops_per_s = peak;
    r.dot = bf16 ? "bf16" : "fp32";
    const double t_bw = r.bytes_per_step / r.read_bandwidth_bytes_per_s, t_fl = r.flops_per_step / peak;
    r.binding = t_bw >= t_fl ? "bandwidth" : "compute";
    r.roofline_ratio = std::max(t_bw, t_fl) / r.step_s;
    out.push_back(r);
  }
  m.set_expert_store(nullptr);
  return out;
}

}  // namespace dsv4
