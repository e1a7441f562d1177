#include "runtime/bench.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <cstdlib>
#include <fstream>
#include <random>
#include <set>
#include <thread>

#include "core/profile.h"
#include "core/thread_pool.h"
#include "kernels/matmul_bf16.h"
#include "kernels/matmul_simd.h"
#include "model/schema.h"
#include "runtime/expert_cache.h"
#include "runtime/scheduler.h"

namespace dsv4 {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }
}  // namespace

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

ReadBandwidthProbe::ReadBandwidthProbe(size_t bytes) : buf_(bytes / 4) {
  ThreadPool::global().parallel_for(buf_.size(), [&](size_t a, size_t b) {
    uint64_t z = 0x9E3779B97F4A7C15ull * (a + 1);  // xorshift64: random enough, and fast
    for (size_t i = a; i < b; ++i) {
      z ^= z << 13, z ^= z >> 7, z ^= z << 17;
      buf_[i] = float(int32_t(z >> 32)) * 0x1p-31f;  // [-1, 1)
    }
  });
}

double ReadBandwidthProbe::measure(int reps) const {
  ThreadPool& pool = ThreadPool::global();
  const size_t n = buf_.size(), T = size_t(pool.size());
  double best = 0;
  volatile double sink = 0;
  for (int r = 0; r < reps; ++r) {
    std::vector<double> part(T * 8);
    auto t0 = Clock::now();
    pool.parallel_for(T, [&](size_t a, size_t b) {
      for (size_t t = a; t < b; ++t) part[t * 8] = simd::stream_sum(buf_.data() + n * t / T, n * (t + 1) / T - n * t / T);
    });
    best = std::max(best, double(n * 4) / seconds_since(t0));
    for (double p : part) sink = sink + p;
  }
  return best;
}

double measure_disk_read(const Checkpoint& ck, double seconds, int threads, bool* direct) {
  constexpr uint64_t kBlock = uint64_t(4) << 20;
  std::set<std::string> paths;
  for (auto& [name, t] : ck.tensors()) paths.insert(*t->file);
  struct File {
    int fd;
    uint64_t size;
  };
  std::vector<File> files;
  bool all_direct = true;
  for (auto& p : paths) {
    int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT);
    if (fd < 0) {
      all_direct = false;
      fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    }
    struct stat sb;
    if (fd >= 0 && ::fstat(fd, &sb) == 0 && uint64_t(sb.st_size) >= kBlock) files.push_back({fd, uint64_t(sb.st_size)});
    else if (fd >= 0) ::close(fd);
  }
  if (direct) *direct = all_direct;
  if (files.empty()) return 0;
  std::atomic<uint64_t> total{0};
  const auto t0 = Clock::now();
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      void* buf = std::aligned_alloc(4096, kBlock);
      std::mt19937_64 rng(0x5eed + uint64_t(t));
      while (seconds_since(t0) < seconds) {
        const File& f = files[rng() % files.size()];
        const uint64_t off = (rng() % ((f.size - kBlock) / 4096 + 1)) * 4096;
        ssize_t r = ::pread(f.fd, buf, kBlock, off_t(off));
        if (r <= 0) break;
        total += uint64_t(r);
      }
      std::free(buf);
    });
  for (auto& t : ts) t.join();
  const double s = seconds_since(t0);
  for (auto& f : files) ::close(f.fd);
  return double(total.load()) / s;
}

namespace {
// read_bytes of /proc/self/io: what this process made the block layer read.
uint64_t process_read_bytes() {
  std::ifstream f("/proc/self/io");
  std::string k;
  uint64_t v = 0;
  while (f >> k >> v)
    if (k == "read_bytes:") return v;
  return 0;
}
}  // namespace

namespace {
double measure_burn(int reps, double (*burn)(int64_t, float*)) {
  ThreadPool& pool = ThreadPool::global();
  std::vector<double> v;
  for (int r = 0; r < reps; ++r) {
    std::vector<double> flops(size_t(pool.size()));
    std::vector<float> sink(size_t(pool.size()) * 16);
    auto t0 = Clock::now();
    pool.parallel_for(size_t(pool.size()), [&](size_t a, size_t b) {
      for (size_t t = a; t < b; ++t) flops[t] = burn(20'000'000, &sink[t * 16]);
    });
    double s = seconds_since(t0), total = 0;
    for (double f : flops) total += f;
    v.push_back(total / s);
  }
  return *std::max_element(v.begin(), v.end());
}
}  // namespace

double measure_peak_flops(int reps) { return measure_burn(reps, simd::fma_burn); }
double measure_bf16_peak_flops(int reps) { return bf16dot::supported() ? measure_burn(reps, bf16dot::burn) : 0.0; }

namespace {
// The weights' share of the cost model comes from the schema; the checkpoint gives each tensor's stored size.
WeightCost model_weight_cost(const Model& m) {
  const Checkpoint& ck = m.checkpoint();
  return weight_cost(m.config(), [&](const std::string& name) {
    const TensorInfo* t = ck.find(name);
    return t ? t->nbytes : size_t(0);
  });
}
}  // namespace

double decode_bytes_per_token(const Model& m, int64_t ctx) {
  const ModelConfig& c = m.config();
  const WeightCost wc = model_weight_cost(m);
  double b = wc.head_bytes + wc.final_bytes;
  const double kv_row = double(c.nope_dim() + c.nope_dim() / 64 + 4 * c.rope_head_dim);  // compact KV row
  for (int l = 0; l < c.n_layers; ++l) {
    const LayerKind kind = c.layer_kind(l);
    const int ratio = c.layer_ratio(l);
    const LayerWeightCost& lc = wc.layers[size_t(l)];
    b += lc.attn_bytes;
    b += double(std::min<int64_t>(ctx, c.window_size)) * kv_row;
    if (has_indexer(kind)) {
      b += double(ctx / ratio) * c.index_head_dim * 4.0;                   // index-key scan
      b += double(std::min<int64_t>(ctx / ratio, c.index_topk)) * kv_row;  // picked rows
    } else if (reads_all_compressed(kind)) {
      b += double(ctx / ratio) * kv_row;
    }
    b += lc.ffn_bytes;
  }
  return b;
}

namespace {
// One token's FLOPs when `preceding` positions come before it; the head runs once per head_every tokens.
double token_flops(const Model& m, double preceding, double head_every) {
  const ModelConfig& c = m.config();
  const WeightCost wc = model_weight_cost(m);
  double f = wc.head_flops / head_every;
  for (int l = 0; l < c.n_layers; ++l) {
    const LayerKind kind = c.layer_kind(l);
    const int ratio = c.layer_ratio(l);
    for (double x : wc.layers[size_t(l)].attn_flops) f += x;
    double rows = std::min<double>(preceding, c.window_size);
    if (has_indexer(kind)) {
      f += 2.0 * c.index_n_heads * c.index_head_dim * (preceding / ratio);
      rows += std::min<double>(preceding / ratio, c.index_topk);
    } else if (reads_all_compressed(kind)) {
      rows += preceding / ratio;
    }
    f += 2.0 * 2.0 * c.n_heads * c.head_dim * rows;  // scores and weighted sum
    f += wc.layers[size_t(l)].ffn_flops;
  }
  return f;
}
}  // namespace

// The mean token sees ctx/2 preceding positions; the head runs for the last position only.
double prefill_flops_per_token(const Model& m, int64_t ctx) {
  return token_flops(m, double(ctx) / 2, double(ctx));
}
double decode_flops_per_token(const Model& m, int64_t ctx) { return token_flops(m, double(ctx), 1.0); }

constexpr int64_t kWarmupTokens = 2048;  // longer contexts: the warm-up covers part of the heap

BenchResult run_bench(const Model& m, int64_t ctx, int decode_steps, uint64_t seed, int verify_max) {
  BenchResult r;
  r.ctx = ctx;
  std::mt19937_64 rng(seed);
  std::vector<int32_t> ids(size_t(ctx + decode_steps + verify_max + 1));
  for (auto& t : ids) t = int32_t(rng() % uint64_t(m.config().vocab_size));
  r.fma_peak_flops_per_s = measure_peak_flops();
  r.bf16_peak_flops_per_s = measure_bf16_peak_flops();
  // Timed as in a running server: a warm-up request (up to kWarmupTokens) has mapped the weights in
  // and grown the heap, so first-touch page faults are not counted as compute.
  {
    SequenceState warm = m.new_sequence();
    m.forward(warm, ids.data(), std::min(ctx, kWarmupTokens));
  }
  SequenceState st = m.new_sequence();
  profile::take();
  auto t0 = Clock::now();
  m.forward(st, ids.data(), ctx);
  const double prefill_s = seconds_since(t0);
  r.prefill_phases = profile::take();
  // The FMA peak only drops when the host takes a core away: the better of before and after.
  r.fma_peak_flops_per_s = std::max(r.fma_peak_flops_per_s, measure_peak_flops());
  r.bf16_peak_flops_per_s = std::max(r.bf16_peak_flops_per_s, measure_bf16_peak_flops());
  const bool bf16 = bf16dot::available() && m.numerics().act_quant;
  r.dot = bf16 ? "bf16" : "fp32";
  r.peak_flops_per_s = bf16 ? r.bf16_peak_flops_per_s : r.fma_peak_flops_per_s;
  // On a shared host the bandwidth available shifts from second to second, so each decode step is
  // paired with a bandwidth probe taken just before it, and the ratio is the median over steps.
  ReadBandwidthProbe probe;
  std::vector<double> steps, bws, ratios;
  const double bytes = decode_bytes_per_token(m, ctx);
  auto* cache = dynamic_cast<ExpertCache*>(&m.expert_store());
  const ExpertCacheStats before = cache ? cache->stats() : ExpertCacheStats{};
  const uint64_t io_before = process_read_bytes();
  const ExpertPeers* peers = m.expert_peers();
  const PeerTraffic p0 = peers ? peers->traffic() : PeerTraffic{};
  for (int i = 0; i < decode_steps; ++i) {
    bws.push_back(probe.measure());
    auto t1 = Clock::now();
    m.forward(st, ids.data() + ctx + i, 1);
    steps.push_back(seconds_since(t1));
    ratios.push_back(bytes / steps.back() / bws.back());
  }
  r.decode_phases = profile::take();
  if (peers) {
    const PeerTraffic p1 = peers->traffic();
    r.parallel = true;
    r.peer_bytes_per_token = double(p1.bytes_sent + p1.bytes_received - p0.bytes_sent - p0.bytes_received) / decode_steps;
    r.peer_messages_per_token = double(p1.messages - p0.messages) / decode_steps;
    r.peer_wait_s_per_token = (p1.wait_s - p0.wait_s) / decode_steps;
    r.peer_compute_s_per_token = (p1.remote_compute_s - p0.remote_compute_s) / decode_steps;
    r.peer_wire_s_per_token = (p1.wire_s - p0.wire_s) / decode_steps;
  }
  for (auto& p : r.decode_phases) p.second /= decode_steps;
  // The cost curve of verification: k + 1 tokens in one step (the last sampled token and k drafts),
  // marked after the first and rolled back, so every rep runs at the same context.
  const double step_s = median(steps);
  const int64_t at = ctx + decode_steps;
  for (int k = 1; k <= verify_max; ++k) {
    std::vector<double> t;
    for (int i = 0; i < decode_steps; ++i) {
      auto t1 = Clock::now();
      auto res = m.forward_batch({{&st, ids.data() + at, k + 1, 1, k + 1}});
      t.push_back(seconds_since(t1));
      st.rollback(res[0].mark);
    }
    r.verify_cost_ratio.push_back(median(t) / step_s);
  }
  if (verify_max > 0) st.release();
  if (verify_max > 0 && m.has_mtp()) {
    ForwardOptions fo;
    fo.keep_streams = true;
    auto last = m.forward(st, ids.data() + at, 1, fo);
    st.mtp_pos = st.pos - 1;  // level with the main model (the bench prefill ran no MTP)
    std::vector<double> t;
    for (int i = 0; i < decode_steps; ++i) {
      std::vector<BlockState> saved = st.mtp;
      auto t1 = Clock::now();
      m.mtp_forward(st, last.final_streams.data(), ids.data() + at + 1, 1);
      t.push_back(seconds_since(t1));
      st.mtp = std::move(saved);
      st.mtp_pos -= 1;
    }
    r.mtp_step_cost_ratio = median(t) / step_s;
  }
  if (cache) {
    const ExpertCacheStats after = cache->stats();
    r.streaming = true;
    const double asked = double(after.acquired - before.acquired);
    r.expert_cache_hit_rate = asked ? double(after.ready + after.in_flight - before.ready - before.in_flight) / asked : 0;
    r.disk_bytes_per_token = double(after.bytes_read - before.bytes_read) / decode_steps;
    r.process_disk_bytes_per_token = double(process_read_bytes() - io_before) / decode_steps;
    auto rate = [](const ExpertCacheStats::Predictor& a, const ExpertCacheStats::Predictor& b) {
      return a.named > b.named ? double(a.used - b.used) / double(a.named - b.named) : 0.0;
    };
    r.hash_predictor_hit_rate = rate(after.hash, before.hash);
    r.next_gate_predictor_hit_rate = rate(after.next_gate, before.next_gate);
    r.disk_read_bandwidth_bytes_per_s = measure_disk_read(m.checkpoint(), 2.0, 8, &r.disk_probe_direct);
  }
  r.prefill_tokens_per_s = double(ctx) / prefill_s;
  r.prefill_flops_per_token = prefill_flops_per_token(m, ctx);
  r.prefill_roofline_ratio = r.prefill_tokens_per_s * r.prefill_flops_per_token / r.peak_flops_per_s;
  r.prefill_fma_roofline_ratio = r.prefill_tokens_per_s * r.prefill_flops_per_token / r.fma_peak_flops_per_s;
  r.decode_tokens_per_s = 1.0 / step_s;
  r.decode_bytes_per_token = bytes;
  r.read_bandwidth_bytes_per_s = median(bws);
  r.decode_roofline_ratio = median(ratios);
  if (r.streaming && r.disk_read_bandwidth_bytes_per_s > 0)
    r.stream_roofline_ratio = r.disk_bytes_per_token * r.decode_tokens_per_s / r.disk_read_bandwidth_bytes_per_s;
  return r;
}

SpecBenchResult run_spec_bench(const Model& m, const Tokenizer& tok, const std::vector<std::vector<int32_t>>& prompts,
                               int max_tokens, const SpecOptions& spec, int reps) {
  struct Pass {
    double seconds = 0;
    uint64_t generated = 0, steps = 0, drafted = 0, accepted = 0;
    std::vector<int32_t> tokens;
  };
  auto pass = [&](bool with_spec) {
    SchedulerOptions o;
    o.max_parallel = 1;
    o.prefix_cache_bytes = 0;  // every prompt prefilled afresh, in both runs
    if (with_spec) o.spec = spec;
    Scheduler s(m, tok, o);
    Pass p;
    for (const auto& prompt : prompts) {
      GenerationRequest q;
      q.prompt = prompt;
      q.sampling.temperature = 0;
      q.max_tokens = max_tokens;
      q.ignore_eos = true;
      std::mutex mu;
      std::condition_variable cv;
      bool done = false;
      Clock::time_point first;
      bool started = false;
      s.submit(q, [&](const GenerationEvent& e) {
        if (e.kind == GenerationEvent::Kind::Token && e.token >= 0) {
          if (!started) first = Clock::now(), started = true;  // decode time starts after the first token
          p.tokens.push_back(e.token);
        }
        if (e.kind == GenerationEvent::Kind::Done || e.kind == GenerationEvent::Kind::Error) {
          std::lock_guard<std::mutex> lk(mu);
          p.seconds += started ? seconds_since(first) : 0;
          done = true;
          cv.notify_all();
        }
      });
      std::unique_lock<std::mutex> lk(mu);
      cv.wait(lk, [&] { return done; });
    }
    const SchedulerStats st = s.stats();
    p.generated = st.generated_tokens - prompts.size();  // the first token of each is not timed
    p.steps = st.spec_steps, p.drafted = st.spec_drafted, p.accepted = st.spec_accepted;
    return p;
  };
  SpecBenchResult r;
  std::vector<double> plain, fast;
  for (int i = 0; i < std::max(reps, 1); ++i) {
    const Pass a = pass(false), b = pass(true);
    plain.push_back(double(a.generated) / a.seconds);
    fast.push_back(double(b.generated) / b.seconds);
    r.identical = r.identical && a.tokens == b.tokens;
    r.generated = b.generated;
    r.acceptance_rate = b.drafted ? double(b.accepted) / double(b.drafted) : 0;
    r.tokens_per_step = b.steps ? 1.0 + double(b.accepted) / double(b.steps) : 1;
  }
  r.plain_tokens_per_s = median(plain);
  r.spec_tokens_per_s = median(fast);
  std::vector<double> ratio;
  for (size_t i = 0; i < plain.size(); ++i) ratio.push_back(fast[i] / plain[i]);
  r.speedup = median(ratio);
  return r;
}

}  // namespace dsv4
