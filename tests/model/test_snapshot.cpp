// Snapshot and rollback of sequence state (speculative decoding, prefix reuse): mark at p, forward N
// tokens, roll back, and the state is bit-identical to one that never saw them and continues with
// bit-identical logits, for the main model and the MTP block.
#include <algorithm>
#include <memory>

#include "core/error.h"
#include "model/golden.h"
#include "model/state_compare.h"

namespace dsv4::test {
namespace {

struct Fed {
  std::vector<float> logits;  // every row
  std::vector<float> mtp;     // the MTP block's last row per call
};

// Forwards tok[0, n) in one chunk or one token at a time and, when the model has an MTP block, runs it
// over the same positions paired with the next tokens tok[1, n] (so tok needs n + 1 entries).
Fed feed(const Model& m, SequenceState& st, const int32_t* tok, int64_t n, bool one_chunk) {
  Fed out;
  ForwardOptions fo;
  fo.all_logits = true;
  fo.keep_streams = m.has_mtp();
  const int64_t step = one_chunk ? n : 1;
  for (int64_t i = 0; i < n; i += step) {
    const int64_t s = std::min(step, n - i);
    auto r = m.forward(st, tok + i, s, fo);
    out.logits.insert(out.logits.end(), r.logits.begin(), r.logits.end());
    if (m.has_mtp()) {
      auto x = m.mtp_forward(st, r.final_streams.data(), tok + i + 1, s);
      out.mtp.insert(out.mtp.end(), x.begin(), x.end());
    }
  }
  return out;
}

class SnapshotTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    m = std::make_unique<Model>(fixture_dir(GetParam()));
    ids = Golden(GetParam()).i32("input_ids");
    ASSERT_GE(ids.size(), size_t(450));
  }
  // A fresh sequence that consumed ids[0, p).
  SequenceState prefilled(int64_t p) const {
    SequenceState st = m->new_sequence();
    if (p > 0) feed(*m, st, ids.data(), p, true);
    return st;
  }
  // Tokens a rejected draft could hold: real ids from far away, so they differ from the continuation.
  const int32_t* wrong() const { return ids.data() + 300; }
  int64_t window() const { return m->config().window_size; }

  std::unique_ptr<Model> m;
  std::vector<int32_t> ids;
};

// Prefixes on and off the ratio-4 groups (p mod 4 = 0, 1, 2, 3), one just before a ratio-128 group
// completes, one just after; N from a single token to past the window and across a ratio-128 group.
TEST_P(SnapshotTest, RollbackRestoresStateExactly) {
  const int64_t w = window();
  for (int64_t p : {0, 5, 10, 127, 131})
    for (int64_t N : {int64_t(1), int64_t(3), int64_t(4), int64_t(5), w - 1, w, w + 5, int64_t(130)})
      for (bool one_chunk : {true, false}) {
        SCOPED_TRACE("p " + std::to_string(p) + " N " + std::to_string(N) + (one_chunk ? " one chunk" : " by token"));
        SequenceState ref = prefilled(p), st = prefilled(p);
        const auto mk = st.mark();
        EXPECT_EQ(mk.pos, p);
        feed(*m, st, wrong(), N, one_chunk);
        ASSERT_EQ(st.pos, p + N);
        st.rollback(mk);
        expect_same_state(st, ref);
        if (::testing::Test::HasFailure()) return;
        // Both go on with the same tokens, one chunk then single steps: identical logits and state.
        Fed a = feed(*m, st, ids.data() + p, 6, true), b = feed(*m, ref, ids.data() + p, 6, true);
        EXPECT_EQ(a.logits, b.logits);
        EXPECT_EQ(a.mtp, b.mtp);
        a = feed(*m, st, ids.data() + p + 6, 3, false);
        b = feed(*m, ref, ids.data() + p + 6, 3, false);
        EXPECT_EQ(a.logits, b.logits);
        EXPECT_EQ(a.mtp, b.mtp);
        expect_same_state(st, ref);
        if (::testing::Test::HasFailure()) return;
      }
}

// One speculative step: mark, verify k drafted tokens of which the first j are right, roll back, feed
// the j accepted tokens plus the correction. Equals a sequence that fed those j + 1 tokens directly.
TEST_P(SnapshotTest, SpeculativeStepEqualsAcceptedPrefix) {
  const int64_t V = m->config().vocab_size;
  for (int64_t p : {5, 126, 130})
    for (int64_t k : {1, 2, 4, 5})
      for (int64_t j = 0; j <= k; ++j) {
        SCOPED_TRACE("p " + std::to_string(p) + " k " + std::to_string(k) + " j " + std::to_string(j));
        std::vector<int32_t> draft(ids.begin() + p, ids.begin() + p + j);
        draft.insert(draft.end(), wrong(), wrong() + (k - j) + 1);
        SequenceState ref = prefilled(p), st = prefilled(p);
        const auto mk = st.mark();
        Fed verify = feed(*m, st, draft.data(), k, true);
        st.rollback(mk);
        Fed got = feed(*m, st, ids.data() + p, j + 1, true);
        Fed want = feed(*m, ref, ids.data() + p, j + 1, true);
        EXPECT_EQ(got.logits, want.logits);
        EXPECT_EQ(got.mtp, want.mtp);
        expect_same_state(st, ref);
        // The verify rows of the accepted prefix already were the final logits of those positions.
        EXPECT_TRUE(std::equal(verify.logits.begin(), verify.logits.begin() + j * V, want.logits.begin()));
        if (::testing::Test::HasFailure()) return;
      }
}

// A decode loop that stays marked: each round drafts 3 tokens, accepts 0..3 of them, rolls back and
// feeds the accepted ones plus the correction, then marks again. Crosses the window and a ratio-128
// group; the MTP block runs over the drafts too and must be rolled back with the main model.
TEST_P(SnapshotTest, SpeculativeLoopEqualsPlainDecode) {
  const int64_t p0 = 100, k = 3;
  SequenceState st = prefilled(p0), ref = prefilled(p0);
  int64_t p = p0;
  for (int round = 0; p < 170; ++round) {
    SCOPED_TRACE("round " + std::to_string(round) + " at " + std::to_string(p));
    const int64_t j = round % (k + 1);
    std::vector<int32_t> draft(ids.begin() + p, ids.begin() + p + j);
    draft.insert(draft.end(), wrong() + round, wrong() + round + (k - j) + 1);
    const auto mk = st.mark();
    feed(*m, st, draft.data(), k, true);
    st.rollback(mk);
    Fed got = feed(*m, st, ids.data() + p, j + 1, true);
    Fed want = feed(*m, ref, ids.data() + p, j + 1, false);  // chunking never changes numerics
    const size_t V = size_t(m->config().vocab_size);
    EXPECT_TRUE(std::equal(got.logits.end() - int64_t(V), got.logits.end(), want.logits.end() - int64_t(V)));
    if (m->has_mtp()) {
      EXPECT_TRUE(std::equal(got.mtp.end() - int64_t(V), got.mtp.end(), want.mtp.end() - int64_t(V)));
    }
    p += j + 1;
    if (::testing::Test::HasFailure()) return;
  }
  expect_same_state(st, ref);
}

// The mark made inside a forward (SeqInput::mark_after): one pass re-feeds U committed tokens and
// scores k drafts of which the first j are right; rolling back to the mark and feeding the j accepted
// ones equals a sequence that decoded those U + j tokens one by one (state bit for bit, and the verify
// rows of the accepted prefix are its logits). Crosses ratio-4 and ratio-128 groups and the window.
TEST_P(SnapshotTest, MarkInsideForwardEqualsAcceptedPrefix) {
  const int64_t V = m->config().vocab_size, w = window();
  for (int64_t p : {0, 5, 126, 130})
    for (int64_t U : {1, 3})
      for (int64_t k : {int64_t(0), int64_t(1), int64_t(4), w + 2})
        for (int64_t j : {int64_t(0), k / 2, k}) {
          SCOPED_TRACE("p " + std::to_string(p) + " U " + std::to_string(U) + " k " + std::to_string(k) + " j " +
                       std::to_string(j));
          std::vector<int32_t> tok(ids.begin() + p, ids.begin() + p + U + j);
          tok.insert(tok.end(), wrong(), wrong() + (k - j));
          SequenceState st = prefilled(p), ref = prefilled(p);
          auto r = m->forward_batch({{&st, tok.data(), U + k, U, k + 1}})[0];
          ASSERT_EQ(r.logits.size(), size_t((k + 1) * V));
          EXPECT_EQ(r.mark.pos, p + U);
          st.rollback(r.mark);
          if (j > 0) m->forward(st, ids.data() + p + U, j);
          std::vector<float> want;
          for (int64_t i = 0; i < U + j; ++i) {
            auto x = m->forward(ref, ids.data() + p + i, 1).logits;
            if (i >= U - 1) want.insert(want.end(), x.begin(), x.end());
          }
          expect_same_state(st, ref);
          EXPECT_TRUE(std::equal(want.begin(), want.end(), r.logits.begin()));
          if (::testing::Test::HasFailure()) return;
        }
}

// The mark survives a rollback (roll back again after other tokens); a stale or foreign mark and a
// released one are refused.
TEST_P(SnapshotTest, MarkStaysUntilReplacedOrReleased) {
  const int64_t p = 9;
  SequenceState ref = prefilled(p), st = prefilled(p), other = prefilled(p);  // all at p
  const auto mk = st.mark();
  EXPECT_TRUE(st.marked());
  feed(*m, st, wrong(), 5, true);
  st.rollback(mk);
  feed(*m, st, wrong() + 20, 11, false);
  st.rollback(mk);
  expect_same_state(st, ref);
  const auto later = other.mark();
  EXPECT_THROW(st.rollback(later), Error);
  const auto mk2 = st.mark();
  EXPECT_THROW(st.rollback(mk), Error);
  feed(*m, st, ids.data() + p, 2, true);
  st.rollback(mk2);
  st.release();
  EXPECT_FALSE(st.marked());
  EXPECT_EQ(st.journal_bytes(), size_t(0));
  EXPECT_THROW(st.rollback(mk2), Error);
  expect_same_state(st, ref);
}

// The copy constructor is a deep snapshot: forwarding the copy leaves the original untouched, and a
// copy of a marked state rolls back on its own.
TEST_P(SnapshotTest, CopyIsIndependentSnapshot) {
  const int64_t p = 130;
  SequenceState st = prefilled(p);
  SequenceState copy = st;
  feed(*m, copy, ids.data() + p, 20, true);
  expect_same_state(st, prefilled(p));
  const auto mk = st.mark();
  feed(*m, st, wrong(), 13, false);
  SequenceState fork = st;
  feed(*m, fork, wrong() + 40, 4, true);
  fork.rollback(mk);
  expect_same_state(fork, prefilled(p));
  st.rollback(mk);
  expect_same_state(st, prefilled(p));
  feed(*m, st, ids.data() + p, 20, true);
  expect_same_state(st, copy);
}

// What a mark costs: nothing at mark(); afterwards exactly the ring slots and compressor slot rows the
// new tokens overwrote (plus the previous group of an overlapping compressor whose group completed).
TEST_P(SnapshotTest, JournalHoldsOnlyOverwrittenRows) {
  // Bytes saved per layer when the ring and compressors each had `slots` of their rows written, and
  // whether an overlapping group completed.
  auto expected = [&](const SequenceState& st, int64_t N, bool group_done) {
    size_t b = 0;
    auto comp = [&](const CompressorWeights& c) {
      if (c.ratio == 0) return size_t(0);
      const size_t row = size_t(c.width()) * 4;
      size_t n = 2 * size_t(std::min<int64_t>(N, c.ratio)) * row;
      if (c.overlap && group_done) n += 2 * size_t(c.ratio) * row;
      return n;
    };
    auto layer = [&](const AttentionState& a, const AttentionWeights& w) {
      b += size_t(std::min<int64_t>(N, window())) * a.ring.row_bytes();
      if (has_compressor(w.kind)) b += comp(w.comp);
      if (has_indexer(w.kind)) b += comp(w.indexer.comp);
    };
    for (size_t l = 0; l < st.layers.size(); ++l) layer(st.layers[l].attn, m->weights().blocks[l].attn);
    if (m->has_mtp()) layer(st.mtp[0].attn, m->weights().mtp->block.attn);
    return b;
  };
  SequenceState st = prefilled(5);
  const auto mk = st.mark();
  EXPECT_EQ(st.journal_bytes(), size_t(0));
  feed(*m, st, wrong(), 1, true);  // position 5: slot 1 of a ratio-4 group, no group completes
  EXPECT_EQ(st.journal_bytes(), expected(st, 1, false));
  st.rollback(mk);
  EXPECT_EQ(st.journal_bytes(), size_t(0));
  feed(*m, st, ids.data() + 200, 200, false);  // every slot written, many times; each is saved once
  EXPECT_EQ(st.journal_bytes(), expected(st, 200, true));
  st.rollback(mk);
  expect_same_state(st, prefilled(5));
}

INSTANTIATE_TEST_SUITE_P(Fixtures, SnapshotTest, ::testing::Values("tiny-flash", "tiny-pro"),
                         [](const auto& info) { return info.param == "tiny-flash" ? "Flash" : "Pro"; });

// fp32 rows (KV round-trip off) have another row width; the journal follows it.
TEST(Snapshot, RollbackWithFp32Rows) {
  Model m(fixture_dir("tiny-flash"), NumericsOptions::first_revision());
  auto ids = Golden("tiny-flash").i32("input_ids");
  for (bool one_chunk : {true, false}) {
    SequenceState ref = m.new_sequence(), st = m.new_sequence();
    feed(m, ref, ids.data(), 14, true);
    feed(m, st, ids.data(), 14, true);
    const auto mk = st.mark();
    feed(m, st, ids.data() + 300, 131, one_chunk);
    st.rollback(mk);
    expect_same_state(st, ref);
    EXPECT_EQ(feed(m, st, ids.data() + 14, 5, true).logits, feed(m, ref, ids.data() + 14, 5, true).logits);
  }
}

// KVRows on its own: overwrites, a shrink and regrowth, and appends all undo to the marked rows,
// compact (e4m3 + scales + fp32 tail) and fp32 alike.
TEST(Snapshot, KVRowsRollbackUndoesPutsShrinksAndAppends) {
  for (bool compact : {true, false}) {
    KVRows r(192, 128, compact);
    std::vector<float> x(192);
    auto row = [&](int seed) {
      for (int i = 0; i < 192; ++i) x[size_t(i)] = float((seed * 131 + i * 17) % 97) / 8.0f - 6.0f;
      return x.data();
    };
    for (int i = 0; i < 6; ++i) r.append(row(i));
    const KVRows before = r;
    r.mark();
    r.put(2, row(40));
    r.put(2, row(41));
    r.put(5, row(42));
    r.resize(3);
    for (int i = 0; i < 4; ++i) r.append(row(50 + i));
    EXPECT_EQ(r.journal_bytes(), 4 * r.row_bytes());  // rows 2, 5, then 3 and 4 as they were dropped
    r.rollback();
    EXPECT_EQ(r.size(), before.size());
    EXPECT_TRUE(r.encoded() == before.encoded()) << (compact ? "compact" : "fp32");
    EXPECT_TRUE(r.marked());
    r.append(row(60));
    r.rollback();
    EXPECT_TRUE(r.encoded() == before.encoded());
    r.release();
    EXPECT_FALSE(r.marked());
    EXPECT_THROW(r.rollback(), Error);
  }
}

}  // namespace
}  // namespace dsv4::test
