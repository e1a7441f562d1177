#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <set>

#include "core/error.h"
#include "runtime/sampler.h"

namespace dsv4 {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

std::vector<float> log_probs(std::initializer_list<double> p) {
  std::vector<float> l;
  for (double x : p) l.push_back(static_cast<float>(std::log(x)));
  return l;
}

std::set<int32_t> support(Sampler& s, const std::vector<float>& logits) {
  std::set<int32_t> ids;
  for (const auto& [id, p] : s.distribution(logits, {})) {
    EXPECT_GT(p, 0.0);
    ids.insert(id);
  }
  return ids;
}

TEST(Sampler, GreedyTakesArgmaxLowestIdOnTies) {
  Sampler s({.temperature = 0.0f});
  std::vector<float> l = {0.1f, 2.0f, -1.0f, 2.0f, 1.9f};
  for (int i = 0; i < 5; ++i) EXPECT_EQ(s.sample(l, {}), 1);
  std::vector<float> masked = {kNegInf, kNegInf, -5.0f};
  EXPECT_EQ(s.sample(masked, {}), 2);
}

TEST(Sampler, GreedySeesPenalties) {
  Sampler s({.temperature = 0.0f, .presence_penalty = 1.0f});
  std::vector<float> l = {0.0f, 2.0f, 1.5f};
  std::vector<int32_t> hist = {1};
  EXPECT_EQ(s.sample(l, hist), 2);
}

TEST(Sampler, LogitBiasMovesTheGreedyPick) {
  const std::vector<float> l = {0.1f, 2.0f, -1.0f, 1.5f};
  EXPECT_EQ(Sampler({.temperature = 0.0f}).sample(l, {}), 1);
  // +1 on token 3 lifts it over token 1; a small bias on token 2 is not enough.
  EXPECT_EQ(Sampler({.temperature = 0.0f, .logit_bias = {{3, 1.0f}, {2, 2.5f}}}).sample(l, {}), 3);
  EXPECT_EQ(Sampler({.temperature = 0.0f, .logit_bias = {{2, 100.0f}}}).sample(l, {}), 2);
  // Applied after the penalties: the bias wins back what presence_penalty took.
  const int32_t hist[] = {1};
  EXPECT_EQ(Sampler({.temperature = 0.0f, .presence_penalty = 1.0f}).sample(l, hist), 3);
  EXPECT_EQ(Sampler({.temperature = 0.0f, .presence_penalty = 1.0f, .logit_bias = {{1, 1.0f}}}).sample(l, hist), 1);
}

TEST(Sampler, LogitBiasMinus100BansTheToken) {
  const std::vector<float> l = {0.0f, 50.0f, 0.5f};
  // Token 1 would still win after an additive -100 shift; -100 removes it from the distribution.
  Sampler greedy({.temperature = 0.0f, .logit_bias = {{1, -100.0f}}});
  EXPECT_EQ(greedy.sample(l, {}), 2);
  Sampler hot({.temperature = 5.0f, .logit_bias = {{1, -100.0f}}, .seed = 7});
  EXPECT_EQ(support(hot, l), (std::set<int32_t>{0, 2}));
  for (int i = 0; i < 200; ++i) EXPECT_NE(hot.sample(l, {}), 1);
  // -99 only shifts it.
  Sampler shifted({.temperature = 5.0f, .logit_bias = {{1, -99.0f}}, .seed = 7});
  EXPECT_EQ(support(shifted, l), (std::set<int32_t>{0, 1, 2}));
}

TEST(Sampler, LogitBiasIsValidated) {
  EXPECT_THROW(Sampler({.logit_bias = {{0, 100.5f}}}), Error);
  EXPECT_THROW(Sampler({.logit_bias = {{0, std::nanf("")}}}), Error);
  EXPECT_THROW(Sampler({.logit_bias = {{-1, 1.0f}}}), Error);
  Sampler s({.temperature = 0.0f, .logit_bias = {{3, 1.0f}}});
  const std::vector<float> l = {0.0f, 1.0f, 2.0f};
  EXPECT_THROW(s.sample(l, {}), Error);  // id 3 is outside these logits
}

TEST(Sampler, TopKRestrictsSupport) {
  Sampler s({.top_k = 3, .seed = 7});
  std::vector<float> l = {0.0f, 5.0f, 1.0f, 4.0f, 3.0f, 3.0f, -2.0f};
  // Ties at the cut keep the lower id (4 before 5).
  EXPECT_EQ(support(s, l), (std::set<int32_t>{1, 3, 4}));
  for (int i = 0; i < 2000; ++i) {
    int32_t t = s.sample(l, {});
    EXPECT_TRUE(t == 1 || t == 3 || t == 4) << t;
  }
}

TEST(Sampler, TopPKeepsSmallestHeadReachingP) {
  std::vector<float> l = log_probs({0.1, 0.5, 0.15, 0.25});
  Sampler a({.top_p = 0.7f});
  EXPECT_EQ(support(a, l), (std::set<int32_t>{1, 3}));  // 0.5 < 0.7, 0.75 >= 0.7
  Sampler b({.top_p = 0.4f});
  EXPECT_EQ(support(b, l), (std::set<int32_t>{1}));
  Sampler c({.top_p = 0.95f});
  EXPECT_EQ(support(c, l), (std::set<int32_t>{0, 1, 2, 3}));
  auto d = a.distribution(l, {});
  ASSERT_EQ(d.size(), 2u);
  EXPECT_NEAR(d[0].second, 0.5 / 0.75, 1e-6);  // renormalised
}

TEST(Sampler, MinPCutsRelativeToTheBest) {
  std::vector<float> l = log_probs({0.1, 0.5, 0.15, 0.25});
  Sampler s({.min_p = 0.4f});  // cut at 0.2
  EXPECT_EQ(support(s, l), (std::set<int32_t>{1, 3}));
  Sampler t({.min_p = 0.25f});  // cut at 0.125
  EXPECT_EQ(support(t, l), (std::set<int32_t>{1, 2, 3}));
}

TEST(Sampler, TemperatureAppliesBeforeTopP) {
  // At T=0.5 the probabilities sharpen to about 0.78/0.20/0.02, so token 0 alone reaches 0.75.
  std::vector<float> l = log_probs({0.6, 0.3, 0.1});
  Sampler s({.temperature = 0.5f, .top_p = 0.75f});
  EXPECT_EQ(support(s, l), (std::set<int32_t>{0}));
  Sampler u({.temperature = 1.0f, .top_p = 0.75f});
  EXPECT_EQ(support(u, l), (std::set<int32_t>{0, 1}));
}

TEST(Sampler, EmpiricalDistributionMatchesSoftmax) {
  std::vector<float> l = {1.0f, 0.2f, -0.5f, 2.0f, 0.0f, kNegInf, 1.5f, -1.0f};
  const float temp = 0.8f;
  std::vector<double> expect(l.size());
  double z = 0.0;
  for (size_t i = 0; i < l.size(); ++i) z += expect[i] = std::exp(static_cast<double>(l[i]) / temp);
  for (auto& e : expect) e /= z;
  Sampler s({.temperature = temp, .seed = 2024});
  const int n = 200000;
  std::vector<int> count(l.size());
  for (int i = 0; i < n; ++i) ++count[static_cast<size_t>(s.sample(l, {}))];
  EXPECT_EQ(count[5], 0);  // masked
  double chi2 = 0.0;
  int df = -1;
  for (size_t i = 0; i < l.size(); ++i) {
    if (expect[i] == 0.0) continue;
    double e = expect[i] * n;
    chi2 += (count[i] - e) * (count[i] - e) / e;
    ++df;
  }
  EXPECT_EQ(df, 6);
  EXPECT_LT(chi2, 22.46) << "chi-square above the p=0.001 critical value for 6 degrees of freedom";
}

TEST(Sampler, SameSeedSameSequence) {
  std::vector<float> l(1000);
  for (size_t i = 0; i < l.size(); ++i) l[i] = static_cast<float>(std::sin(static_cast<double>(i)) * 3.0);
  SamplingParams p{.temperature = 1.3f, .top_k = 50, .top_p = 0.9f, .seed = 42};
  Sampler a(p), b(p);
  std::vector<int32_t> sa, sb;
  for (int i = 0; i < 200; ++i) {
    sa.push_back(a.sample(l, sa));
    sb.push_back(b.sample(l, sb));
  }
  EXPECT_EQ(sa, sb);
  p.seed = 43;
  Sampler c(p);
  std::vector<int32_t> sc;
  for (int i = 0; i < 200; ++i) sc.push_back(c.sample(l, sc));
  EXPECT_NE(sa, sc);
}

TEST(Sampler, PrngIsPinned) {
  // xoshiro256** seeded with splitmix64: these values must never change (seeded runs are reproducible).
  Sampler s0({.seed = 0});
  EXPECT_DOUBLE_EQ(s0.next_uniform(), 0.6012629994179048);
  EXPECT_DOUBLE_EQ(s0.next_uniform(), 0.7477740925472398);
  EXPECT_DOUBLE_EQ(s0.next_uniform(), 0.10301998939503632);
  Sampler s42({.seed = 42});
  EXPECT_DOUBLE_EQ(s42.next_uniform(), 0.08386297105988216);
}

TEST(Sampler, PenaltiesChangeTheRightLogits) {
  std::vector<float> l = {2.0f, -2.0f, 1.0f, 0.5f, 3.0f};
  std::vector<int32_t> hist = {0, 1, 0, 3, 0};  // 0 three times, 1 and 3 once, 2 and 4 never
  {
    Sampler s({.repetition_penalty = 2.0f});
    auto x = l;
    s.apply_penalties(x, hist);
    EXPECT_EQ(x, (std::vector<float>{1.0f, -4.0f, 1.0f, 0.25f, 3.0f}));
  }
  {
    Sampler s({.presence_penalty = 0.5f});
    auto x = l;
    s.apply_penalties(x, hist);
    EXPECT_EQ(x, (std::vector<float>{1.5f, -2.5f, 1.0f, 0.0f, 3.0f}));
  }
  {
    Sampler s({.frequency_penalty = 0.25f});
    auto x = l;
    s.apply_penalties(x, hist);
    EXPECT_EQ(x, (std::vector<float>{1.25f, -2.25f, 1.0f, 0.25f, 3.0f}));
  }
  {
    Sampler s({.repetition_penalty = 2.0f, .presence_penalty = 0.5f, .frequency_penalty = 0.25f});
    auto x = l;
    s.apply_penalties(x, hist);
    EXPECT_EQ(x, (std::vector<float>{1.0f - 0.5f - 0.75f, -4.0f - 0.75f, 1.0f, 0.25f - 0.75f, 3.0f}));
  }
}

TEST(Sampler, RejectsBadInput) {
  EXPECT_THROW(Sampler({.temperature = -1.0f}), Error);
  EXPECT_THROW(Sampler({.top_k = -1}), Error);
  EXPECT_THROW(Sampler({.top_p = 0.0f}), Error);
  EXPECT_THROW(Sampler({.top_p = 1.5f}), Error);
  EXPECT_THROW(Sampler({.min_p = -0.1f}), Error);
  EXPECT_THROW(Sampler({.repetition_penalty = 0.0f}), Error);
  Sampler s({});
  std::vector<float> l = {0.0f, 1.0f};
  std::vector<int32_t> bad_hist = {2};
  Sampler penalised({.presence_penalty = 0.1f});  // history is only read when a penalty is on
  EXPECT_THROW(penalised.sample(l, bad_hist), Error);
  EXPECT_THROW(s.sample(std::vector<float>{}, {}), Error);
  EXPECT_THROW(s.sample(std::vector<float>{0.0f, std::nanf("")}, {}), Error);
  EXPECT_THROW(s.sample(std::vector<float>{kNegInf, kNegInf}, {}), Error);
}

TEST(StopMatcher, StopsAndHoldsBackPartialPrefixes) {
  StopMatcher m({"</end>", "STOP"});
  auto r = m.push("Hello <");
  EXPECT_EQ(r.text, "Hello ");
  EXPECT_FALSE(r.stopped);
  r = m.push("b> and </e");
  EXPECT_EQ(r.text, "<b> and ");
  r = m.push("nd> tail");
  EXPECT_EQ(r.text, "");
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(m.matched(), "</end>");
  r = m.push("more");
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.text, "");
  EXPECT_EQ(m.flush(), "");
}

TEST(StopMatcher, EarliestStopWinsAndFlushReleasesTail) {
  StopMatcher m({"xyz", "b"});
  auto r = m.push("aaxyzab");
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.text, "aa");
  EXPECT_EQ(m.matched(), "xyz");

  StopMatcher n({"aab"});
  EXPECT_EQ(n.push("aaa").text, "a");  // "aa" could still become "aab"
  EXPECT_EQ(n.push("c").text, "aac");
  EXPECT_EQ(n.push("a").text, "");
  EXPECT_EQ(n.flush(), "a");
  EXPECT_FALSE(n.stopped());

  StopMatcher none({});
  EXPECT_EQ(none.push("anything").text, "anything");
  EXPECT_THROW(StopMatcher({""}), Error);
}

TEST(StopMatcher, ByteAtATimeEqualsWhole) {
  const std::string text = "The answer is 42.\n\nUser: next question\n\nUser";
  StopMatcher whole({"\n\nUser:"});
  auto w = whole.push(text);
  StopMatcher bytes({"\n\nUser:"});
  std::string got;
  bool stopped = false;
  for (char c : text) {
    auto r = bytes.push(std::string_view(&c, 1));
    got += r.text;
    stopped = r.stopped;
  }
  EXPECT_TRUE(w.stopped);
  EXPECT_TRUE(stopped);
  EXPECT_EQ(got, w.text);
  EXPECT_EQ(got, "The answer is 42.");
}

}  // namespace
}  // namespace dsv4
