// Routed experts streamed through the RAM-budgeted expert cache: the math never changes (greedy tokens
// and logits bit-identical under any budget, in prefill waves, decode and MTP), a budget below the dense
// weights is refused with the minimum, and the cache's own figures (bytes read, hit rates, warm start)
// say what happened.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "core/error.h"
#include "model/golden.h"
#include "runtime/expert_cache.h"
#include "runtime/ram_budget.h"

namespace dsv4::test {
namespace {

const std::string kNano = std::string(DSV4_TEST_DATA) + "/../../models/dsv4-nano";

struct Greedy {
  std::vector<int32_t> tokens;
  std::vector<float> logits;  // every step's
  std::vector<float> mtp;     // MTP logits after the prefill, when the model has the block
};

int32_t argmax(const std::vector<float>& v) {
  return int32_t(std::max_element(v.begin(), v.end()) - v.begin());
}

// Prefill `prompt` in chunks of `chunk`, then greedy-decode n tokens.
Greedy greedy(const Model& m, const std::vector<int32_t>& prompt, int n, int64_t chunk) {
  Greedy r;
  SequenceState st = m.new_sequence();
  ForwardOptions fo;
  fo.keep_streams = m.has_mtp();
  ForwardResult f;
  std::vector<float> streams;
  for (size_t p = 0; p < prompt.size(); p += size_t(chunk)) {
    const int64_t s = std::min<int64_t>(chunk, int64_t(prompt.size() - p));
    f = m.forward(st, prompt.data() + p, s, fo);
    streams.insert(streams.end(), f.final_streams.begin(), f.final_streams.end());
  }
  if (m.has_mtp()) r.mtp = m.mtp_forward(st, streams.data(), prompt.data() + 1, int64_t(prompt.size()) - 1);
  for (int i = 0; i < n; ++i) {
    r.logits.insert(r.logits.end(), f.logits.begin(), f.logits.end());
    int32_t t = argmax(f.logits);
    r.tokens.push_back(t);
    f = m.forward(st, &t, 1);
  }
  return r;
}

std::vector<int32_t> prompt_of(const std::string& fixture, size_t n) {
  auto ids = Golden(fixture).i32("input_ids");
  ids.resize(std::min(ids.size(), n));
  return ids;
}

class ExpertCacheTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("dsv4-cache-test-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    ::setenv("DSV4_CACHE_DIR", dir_.c_str(), 1);
  }
  void TearDown() override {
    std::filesystem::remove_all(dir_);
    ::unsetenv("DSV4_CACHE_DIR");
  }
  std::string model_dir() const { return GetParam() == "nano" ? kNano : fixture_dir(GetParam()); }
  std::vector<int32_t> prompt() const {
    if (GetParam() != "nano") return prompt_of(GetParam(), 70);
    std::vector<int32_t> p;
    for (int i = 0; i < 70; ++i) p.push_back(int32_t((i * 37 + 11) % 4000));
    return p;
  }
  std::filesystem::path dir_;
};

TEST_P(ExpertCacheTest, GreedyOutputIsIdenticalUnderEveryBudget) {
  Model ref(model_dir());
  const auto ids = prompt();
  const Greedy want = greedy(ref, ids, 12, int64_t(ids.size()));
  const WeightPlan plan = plan_weights(ref);
  ASSERT_GT(plan.n_experts, 0u);
  for (double frac : {1.0, 0.5, 0.1}) {
    for (int64_t chunk : {int64_t(ids.size()), int64_t(16)}) {
      Model m(model_dir());
      const uint64_t slots = uint64_t(frac * double(plan.n_experts) + 0.5);
      const uint64_t budget = std::max(plan.min_budget, plan.dense + slots * plan.expert_slot);
      RamSetup s = apply_ram_budget(m, budget, true);
      ASSERT_TRUE(s.streaming);
      Greedy got = greedy(m, ids, 12, chunk);
      EXPECT_EQ(got.tokens, want.tokens) << "budget " << frac << " of the experts, chunk " << chunk;
      EXPECT_EQ(got.logits, want.logits) << "budget " << frac << ", chunk " << chunk;
      EXPECT_EQ(got.mtp, want.mtp) << "budget " << frac << ", chunk " << chunk;
      const ExpertCacheStats st = s.cache->stats();
      EXPECT_GT(st.reads, 0u);
      EXPECT_GE(st.bytes_read, st.reads * plan.expert_unit) << "each read expert is whole";
      EXPECT_LE(st.ready + st.in_flight, st.acquired);
      EXPECT_EQ(s.cache->slots(), std::max<uint64_t>(slots, (plan.min_budget - plan.dense) / plan.expert_slot));
    }
  }
}

TEST_P(ExpertCacheTest, AFullBudgetReadsEachExpertOnceAndTheHashPredictorIsExact) {
  Model m(model_dir());
  const WeightPlan plan = plan_weights(m);
  RamSetup s = apply_ram_budget(m, plan.total + (uint64_t(64) << 20), true);
  const auto ids = prompt();
  greedy(m, ids, 8, int64_t(ids.size()));
  const ExpertCacheStats a = s.cache->stats();
  EXPECT_LE(a.reads, plan.n_experts);
  greedy(m, ids, 8, int64_t(ids.size()));
  const ExpertCacheStats b = s.cache->stats();
  EXPECT_EQ(b.reads, a.reads) << "everything was resident the second time";
  EXPECT_EQ(b.ready - a.ready, b.acquired - a.acquired);
  if (m.config().n_hash_layers > 0) {
    EXPECT_GT(b.hash.named, 0u);
    EXPECT_EQ(b.hash.used, b.hash.named) << "hash routing is known from the token ids";
  }
  EXPECT_GT(b.next_gate.named, 0u);
  EXPECT_LE(b.next_gate.used, b.next_gate.named);
}

TEST_P(ExpertCacheTest, RoutingCountsSurviveARestartAndWarmTheCache) {
  const auto ids = prompt();
  std::vector<int32_t> first;
  {
    Model m(model_dir());
    const WeightPlan plan = plan_weights(m);
    RamSetup s = apply_ram_budget(m, plan.min_budget + plan.expert_slot * 2, true);
    first = greedy(m, ids, 6, int64_t(ids.size())).tokens;
  }  // the cache writes its counts when it goes
  bool found = false;
  for (auto& e : std::filesystem::directory_iterator(dir_)) found |= e.path().filename().string().rfind("routing-", 0) == 0;
  ASSERT_TRUE(found) << "no routing counts file in " << dir_;
  Model m(model_dir());
  const WeightPlan plan = plan_weights(m);
  RamSetup s = apply_ram_budget(m, plan.min_budget + plan.expert_slot * 2, true);
  const ExpertCacheStats warmed = s.cache->stats();
  EXPECT_GT(warmed.reads, 0u) << "the warm start read the hot experts before any forward";
  EXPECT_EQ(warmed.acquired, 0u);
  EXPECT_EQ(greedy(m, ids, 6, int64_t(ids.size())).tokens, first);
}

TEST_P(ExpertCacheTest, ABudgetBelowTheDenseWeightsNamesTheMinimum) {
  Model m(model_dir());
  const WeightPlan plan = plan_weights(m);
  try {
    apply_ram_budget(m, plan.dense / 2, true);
    FAIL() << "a budget below the dense weights was accepted";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("below"), std::string::npos) << msg;
    EXPECT_NE(msg.find(format_bytes(plan.min_budget)), std::string::npos) << msg;
  }
  EXPECT_FALSE(m.expert_store().streams()) << "a refused budget leaves the model as it was";
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ExpertCacheTest, ::testing::Values("tiny-flash", "tiny-pro", "nano"));

TEST(RamBudget, ParsesSizes) {
  EXPECT_EQ(parse_byte_size("4G"), uint64_t(4) << 30);
  EXPECT_EQ(parse_byte_size("4GiB"), uint64_t(4) << 30);
  EXPECT_EQ(parse_byte_size("512m"), uint64_t(512) << 20);
  EXPECT_EQ(parse_byte_size("1.5T"), uint64_t(3) << 39);
  EXPECT_EQ(parse_byte_size("123456"), 123456u);
  EXPECT_EQ(parse_byte_size("10KB"), 10240u);
  for (const char* bad : {"", "G", "-1G", "4X", "0", "nan", "1e30T"}) EXPECT_THROW(parse_byte_size(bad), Error) << bad;
}

TEST(RamBudget, DefaultLeavesHeadroomUnderTheSmallerLimit) {
  const uint64_t G = uint64_t(1) << 30;
  EXPECT_EQ(default_ram_budget({0, 20 * G}), 18 * G);        // 10% of MemAvailable
  EXPECT_EQ(default_ram_budget({5 * G, 20 * G}), 4 * G);      // the cgroup is smaller; at least 1 GiB headroom
  EXPECT_EQ(default_ram_budget({0, G / 2}), 0u);
}

}  // namespace
}  // namespace dsv4::test
