// Sequence semantics: chunked prefill equals one prefill, decode equals prefill, greedy output is
// identical across thread counts, and every sequence starts from fresh state.
#include "core/error.h"
#include "core/thread_pool.h"
#include "model/golden.h"
#include "model/state_compare.h"

namespace dsv4::test {
namespace {

class SequenceTest : public ::testing::TestWithParam<std::string> {};

TEST_P(SequenceTest, ChunkedPrefillIsBitIdenticalToOnePrefill) {
  Model m(fixture_dir(GetParam()));
  Golden g(GetParam());
  auto ids = g.i32("input_ids");
  const int64_t P = 300;
  SequenceState one = m.new_sequence();
  auto ref = m.forward(one, ids.data(), P).logits;
  // Chunk sizes straddle the ratio-4 groups, the window and the ratio-128 boundary.
  for (int64_t chunk : {1, 3, 4, 7, 127, 128, 129}) {
    SequenceState st = m.new_sequence();
    std::vector<float> last;
    for (int64_t p = 0; p < P; p += chunk) last = m.forward(st, ids.data() + p, std::min(chunk, P - p)).logits;
    EXPECT_EQ(last, ref) << "chunk " << chunk;
    expect_same_state(st, one);
  }
  // Continuing after a chunked prefill: a multi-token chunk equals the same tokens decoded one by one.
  SequenceState a = m.new_sequence(), b = m.new_sequence();
  m.forward(a, ids.data(), P);
  m.forward(b, ids.data(), P);
  ForwardOptions all;
  all.all_logits = true;
  auto chunk_logits = m.forward(a, ids.data() + P, 20, all).logits;
  const int64_t V = m.config().vocab_size;
  for (int64_t i = 0; i < 20; ++i) {
    auto r = m.forward(b, ids.data() + P + i, 1).logits;
    EXPECT_TRUE(std::equal(r.begin(), r.end(), chunk_logits.begin() + i * V)) << "position " << P + i;
  }
  expect_same_state(a, b);
}

TEST_P(SequenceTest, GreedyIsIdenticalAcrossThreadCounts) {
  Golden g(GetParam());
  auto ids = g.i32("input_ids");
  ids.resize(140);
  std::vector<std::vector<float>> results;
  for (int threads : {1, 2, 3}) {
    ThreadPool::set_global_threads(threads);
    Model m(fixture_dir(GetParam()));
    Schedule s = run_schedule(m, ids, 130, true);
    s.logits.insert(s.logits.end(), s.mtp.begin(), s.mtp.end());
    results.push_back(s.logits);
  }
  ThreadPool::set_global_threads(0);
  EXPECT_EQ(results[0], results[1]);
  EXPECT_EQ(results[0], results[2]);
}

TEST_P(SequenceTest, EachSequenceStartsFresh) {
  Model m(fixture_dir(GetParam()));
  Golden g(GetParam());
  auto a = g.i32("input_ids");
  auto c = g.i32("C.input_ids");
  SequenceState s1 = m.new_sequence();
  m.forward(s1, a.data(), 301);  // leaves a pending compressor group behind
  SequenceState s2 = m.new_sequence();
  auto after = m.forward(s2, c.data(), 3).logits;
  Model fresh(fixture_dir(GetParam()));
  SequenceState s3 = fresh.new_sequence();
  EXPECT_EQ(after, fresh.forward(s3, c.data(), 3).logits);
}

TEST_P(SequenceTest, BatchedSequencesEqualSeparateRuns) {
  // Continuous batching: sequences at different positions share one forward call; each result must
  // be bit-identical to running that sequence alone (batch composition never changes numerics).
  Model m(fixture_dir(GetParam()));
  Golden g(GetParam());
  auto a = g.i32("input_ids");
  auto c = g.i32("C.input_ids");
  SequenceState sa = m.new_sequence(), sc = m.new_sequence(), ra = m.new_sequence(), rc = m.new_sequence();
  ForwardOptions fo;
  fo.keep_streams = true;
  // Step 1: a long prefill and a short one together; step 2..: decode both plus MTP, batched.
  auto batch = m.forward_batch({{&sa, a.data(), 140}, {&sc, c.data(), 3}}, fo);
  auto alone_a = m.forward(ra, a.data(), 140, fo);
  auto alone_c = m.forward(rc, c.data(), 3, fo);
  EXPECT_EQ(batch[0].logits, alone_a.logits);
  EXPECT_EQ(batch[1].logits, alone_c.logits);
  auto mb = m.mtp_forward_batch({{&sa, batch[0].final_streams.data(), a.data() + 1, 140},
                                 {&sc, batch[1].final_streams.data(), c.data() + 1, 2}});
  EXPECT_EQ(mb[0], m.mtp_forward(ra, alone_a.final_streams.data(), a.data() + 1, 140));
  EXPECT_EQ(mb[1], m.mtp_forward(rc, alone_c.final_streams.data(), c.data() + 1, 2));
  for (int step = 0; step < 12; ++step) {
    auto b = m.forward_batch({{&sc, c.data() + 3 + step, 1}, {&sa, a.data() + 140 + step, 1}});
    EXPECT_EQ(b[0].logits, m.forward(rc, c.data() + 3 + step, 1).logits) << step;
    EXPECT_EQ(b[1].logits, m.forward(ra, a.data() + 140 + step, 1).logits) << step;
  }
  expect_same_state(sa, ra);
  expect_same_state(sc, rc);
}

TEST(Sequence, RejectsOutOfVocabularyIds) {
  Model m(fixture_dir("tiny-flash"));
  SequenceState st = m.new_sequence();
  int32_t bad[2] = {5, 100000};
  try {
    m.forward(st, bad, 2);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("outside the vocabulary"), std::string::npos) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, SequenceTest, ::testing::Values("tiny-flash", "tiny-pro"),
                         [](const auto& info) { return info.param == "tiny-flash" ? "Flash" : "Pro"; });

}  // namespace
}  // namespace dsv4::test
