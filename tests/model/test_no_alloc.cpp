// A steady-state decode step makes no heap allocation. This binary replaces the global operator new
// with one that counts while a flag is up (on every thread, pool workers included); after a prefill
// and a few warm-up steps, the next decode steps of Model forward must count zero: main layers of all
// three kinds (SWA, CSA with its indexer, HCA), the MTP block, the mapped routed experts, one sequence
// and two batched. The counted steps cross compressor group ends of both ratios, so compressed
// entries and index keys are appended while counting (into the room new_sequence reserved).
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

TEST_P(NoAlloc, CountsItsOwnAllocations) {
  // The counter itself must see a plain allocation, or a zero below would prove nothing.
  EXPECT_GE(allocations([] { delete new int(1); }), 1);
}

TEST_P(NoAlloc, DecodeStepOfOneSequence) {
  Model m(dir());
  const ModelConfig& c = m.config();
  std::set<LayerKind> kinds;
  for (int l = 0; l < c.n_layers; ++l) kinds.insert(c.layer_kind(l));
  ASSERT_EQ(kinds.size(), 3u) << "the model should have SWA, CSA and HCA layers";
  ASSERT_TRUE(m.has_mtp());
  auto ids = token_ids(kPrefill + kWarm + kCounted + 1, c.vocab_size);
  SequenceState st = m.new_sequence(kCtx);
  ForwardOptions fo;
  fo.keep_streams = m.has_mtp();
  std::vector<Model::SeqInput> in{{&st, ids.data(), kPrefill}};
  std::vector<ForwardResult> res;
  std::vector<Model::MtpInput> mtp_in(1);
  std::vector<std::vector<float>> mtp_out;
  std::vector<float> mtp_streams;
  m.forward_batch(in, res, fo);
  auto step = [&] {
    const int64_t t = st.pos;
    in[0] = {&st, ids.data() + t, 1};
    m.forward_batch(in, res, fo);
    if (m.has_mtp()) {
      mtp_in[0] = {&st, res[0].final_streams.data(), ids.data() + t + 1, 1, &mtp_streams};
      m.mtp_forward_batch(mtp_in, mtp_out);
    }
  };
  // The first MTP call catches the block up on every prefill position, as a real drafter would.
  if (m.has_mtp()) {
    std::vector<Model::MtpInput> catch_up{{&st, res[0].final_streams.data(), ids.data() + 1, kPrefill}};
    m.mtp_forward_batch(catch_up, mtp_out);
  }
  for (int i = 0; i < kWarm; ++i) step();
  const int64_t p0 = st.pos;
  const long n = allocations([&] {
    for (int i = 0; i < kCounted; ++i) step();
  });
  EXPECT_EQ(n, 0) << "decode steps at positions " << p0 << " .. " << st.pos - 1;
  ASSERT_EQ(res[0].logits.size(), size_t(c.vocab_size));
  // Group ends of both ratios fall inside the counted steps (position 255 completes an HCA entry).
  EXPECT_LE(p0, 255);
  EXPECT_GT(st.pos, 256);
}

// Allocations over kCounted batched decode steps of two sequences, after a prefill and kWarm steps.
long batched_decode_allocations(const Model& m) {
  auto ids = token_ids(kPrefill + kWarm + kCounted + 10, m.config().vocab_size);
  SequenceState a = m.new_sequence(kCtx), b = m.new_sequence(kCtx);
  std::vector<Model::SeqInput> in{{&a, ids.data(), kPrefill}, {&b, ids.data() + 9, kPrefill - 70}};
  std::vector<ForwardResult> res;
  m.forward_batch(in, res);
  auto step = [&] {
    in[0] = {&a, ids.data() + a.pos, 1};
    in[1] = {&b, ids.data() + b.pos + 9, 1};
    m.forward_batch(in, res);
  };
  for (int i = 0; i < kWarm; ++i) step();
  const long n = allocations([&] {
    for (int i = 0; i < kCounted; ++i) step();
  });
  EXPECT_EQ(res.size(), 2u);
  return n;
}

TEST_P(NoAlloc, DecodeStepOfTwoBatchedSequences) {
  Model m(dir());
  EXPECT_EQ(batched_decode_allocations(m), 0);
}

// Pool sizes up to the core count: with few threads the experts of a batched step run whole on each
// thread (the prefill schedule), whose scratch must not depend on how many tokens each expert got.
// Kernels keep per-thread scratch of their own (kernels/matmul_simd.cpp, index_score_simd.cpp),
// allocated by a thread's first product of a shape; threads claim chunks as they wake, so on a pool
// larger than the free cores a worker may get its first chunk of a kind only after the warm-up.
TEST_P(NoAlloc, DecodeStepForThreadCountsUpToTheCores) {
  const int cores = int(std::max(1u, std::thread::hardware_concurrency()));
  for (int threads : {1, 2, 3, 4, 8, 16}) {
    if (threads > cores) break;
    ThreadPool::set_global_threads(threads);
    Model m(dir());
    EXPECT_EQ(batched_decode_allocations(m), 0) << threads << " threads";
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
