// A steady-state decode step makes no heap allocation. This binary replaces the global operator new
// with one that counts while a flag is up (on every thread, pool workers included); after a prefill
// and a few warm-up steps, the next decode steps of Model forward must count zero: main layers of all
// three kinds (SWA, CSA with its indexer, HCA), the MTP block, the mapped routed experts, one sequence
// and two batched. The counted steps on one thread cross compressor group ends of both ratios, so
// compressed entries and index keys are appended while counting (into the room new_sequence reserved).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <set>
#include <thread>

#include "core/thread_pool.h"
#include "model/golden.h"

namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_allocs{0};

void* counted_alloc(size_t n, size_t align) {
  if (g_counting.load(std::memory_order_relaxed)) g_allocs.fetch_add(1, std::memory_order_relaxed);
  if (n == 0) n = 1;
  void* p = align <= alignof(std::max_align_t) ? std::malloc(n) : std::aligned_alloc(align, (n + align - 1) / align * align);
  if (!p) throw std::bad_alloc();
  return p;
}
}  // namespace

void* operator new(size_t n) { return counted_alloc(n, 0); }
void* operator new[](size_t n) { return counted_alloc(n, 0); }
void* operator new(size_t n, std::align_val_t a) { return counted_alloc(n, size_t(a)); }
void* operator new[](size_t n, std::align_val_t a) { return counted_alloc(n, size_t(a)); }
void* operator new(size_t n, const std::nothrow_t&) noexcept {
  try {
    return counted_alloc(n, 0);
  } catch (...) {
    return nullptr;
  }
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t, std::align_val_t) noexcept { std::free(p); }

namespace dsv4::test {
namespace {

// Counts the allocations of fn().
template <class F>
long allocations(F&& fn) {
  g_allocs = 0;
  g_counting = true;
  fn();
  g_counting = false;
  return g_allocs.load();
}

std::vector<int32_t> token_ids(int64_t n, int32_t vocab) {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) ids[size_t(i)] = int32_t((i * 37 + 11) % vocab);
  return ids;
}

constexpr int64_t kCtx = 512, kPrefill = 240, kWarm = 6, kCounted = 12;

class NoAlloc : public ::testing::TestWithParam<std::string> {
 protected:
  std::string dir() const { return GetParam() == "dsv4-nano" ? std::string(DSV4_NANO_MODEL) : fixture_dir(GetParam()); }
};

// One sequence decoding with its MTP block, or two batched (reusing inputs and results, as a serving
// loop would), after a prefill.
struct Decoder {
  const Model& m;
  bool batched;
  std::vector<int32_t> ids = token_ids(kCtx, m.config().vocab_size);
  SequenceState a = m.new_sequence(kCtx), b = m.new_sequence(kCtx);
  std::vector<Model::SeqInput> in;
  std::vector<ForwardResult> res;
  std::vector<Model::MtpInput> mtp_in = std::vector<Model::MtpInput>(1);
  std::vector<std::vector<float>> mtp_out;
  std::vector<float> mtp_streams;
  ForwardOptions fo;

  Decoder(const Model& model, bool two) : m(model), batched(two) {
    fo.keep_streams = !batched && m.has_mtp();
    in = {{&a, ids.data(), kPrefill}};
    if (batched) in.push_back({&b, ids.data() + 9, kPrefill - 70});
    m.forward_batch(in, res, fo);
    // The MTP block catches up on every prefill position, as a drafter would.
    if (fo.keep_streams)
      m.mtp_forward_batch({{&a, res[0].final_streams.data(), ids.data() + 1, kPrefill}}, mtp_out);
  }
  void step() {
    in[0] = {&a, ids.data() + a.pos, 1};
    if (batched) in[1] = {&b, ids.data() + b.pos + 9, 1};
    m.forward_batch(in, res, fo);
    if (fo.keep_streams) {
      mtp_in[0] = {&a, res[0].final_streams.data(), ids.data() + a.pos, 1, &mtp_streams};
      m.mtp_forward_batch(mtp_in, mtp_out);
    }
  }
  long counted_steps() {
    return allocations([&] {
      for (int i = 0; i < kCounted; ++i) step();
    });
  }
};

TEST_P(NoAlloc, CountsItsOwnAllocations) {
  // The counter itself must see a plain allocation, or a zero below would prove nothing.
  EXPECT_GE(allocations([] { delete new int(1); }), 1);
}

// On one thread everything runs on the caller, so the first counted window is already the steady
// state: it must be zero.
TEST_P(NoAlloc, DecodeStepOnOneThread) {
  ThreadPool::set_global_threads(1);
  {
    Model m(dir());
    const ModelConfig& c = m.config();
    std::set<LayerKind> kinds;
    for (int l = 0; l < c.n_layers; ++l) kinds.insert(c.layer_kind(l));
    ASSERT_EQ(kinds.size(), 3u) << "the model should have SWA, CSA and HCA layers";
    ASSERT_TRUE(m.has_mtp());
    for (bool batched : {false, true}) {
      Decoder d(m, batched);
      for (int i = 0; i < kWarm; ++i) d.step();
      const int64_t p0 = d.a.pos;
      EXPECT_EQ(d.counted_steps(), 0) << (batched ? "two batched sequences" : "one sequence with MTP")
                                      << ", positions " << p0 << " .. " << d.a.pos - 1;
      // Group ends of both ratios fall inside the counted steps (position 255 completes an HCA entry).
      EXPECT_LE(p0, 255);
      EXPECT_GT(d.a.pos, 256);
      ASSERT_EQ(d.res[0].logits.size(), size_t(c.vocab_size));
    }
  }
  ThreadPool::set_global_threads(0);
}

// With workers, the model's own scratch is as steady, but kernels keep per-thread scratch of their own
// (kernels/matmul_simd.cpp, index_score_simd.cpp) that a thread allocates at its first product of a
// shape, and threads claim chunks as they wake: a worker the OS kept off a core through the warm-up
// (other processes, a pool larger than the free cores) does that first product later. So windows
// are counted until one is quiet; a step that allocated every time would never give one.
void expect_quiet_window(const Model& m, bool batched, const std::string& what) {
  Decoder d(m, batched);
  for (int i = 0; i < kWarm; ++i) d.step();
  std::string counts;
  for (int w = 0; w < 5; ++w) {
    const long n = d.counted_steps();
    counts += std::to_string(n) + " ";
    if (n == 0) return;
  }
  ADD_FAILURE() << what << ": no window of " << kCounted << " steps without allocations; counts " << counts;
}

TEST_P(NoAlloc, DecodeStepOfOneSequence) {
  Model m(dir());
  expect_quiet_window(m, false, "one sequence with MTP");
}

TEST_P(NoAlloc, DecodeStepOfTwoBatchedSequences) {
  Model m(dir());
  expect_quiet_window(m, true, "two batched sequences");
}

// Pool sizes up to the core count: with few threads the experts of a batched step run whole on each
// thread (the prefill schedule), whose scratch must not depend on how many tokens each expert got.
TEST_P(NoAlloc, DecodeStepForThreadCountsUpToTheCores) {
  const int cores = int(std::max(1u, std::thread::hardware_concurrency()));
  for (int threads : {2, 3, 4, 8, 16}) {
    if (threads > cores) break;
    ThreadPool::set_global_threads(threads);
    Model m(dir());
    expect_quiet_window(m, true, std::to_string(threads) + " threads");
  }
  ThreadPool::set_global_threads(0);
}

INSTANTIATE_TEST_SUITE_P(Models, NoAlloc, ::testing::Values("tiny-flash", "dsv4-nano"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& ch : s)
                             if (ch == '-') ch = '_';
                           return s;
                         });

}  // namespace
}  // namespace dsv4::test
