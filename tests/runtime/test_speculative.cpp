// Speculative decoding: greedy output identical token for token to plain decoding (drafts from the
// MTP block or DSpark, several draft lengths, thread counts and batch mixes, stops and the prefix cache), the
// acceptance rule preserving the target distribution (chi-square over 10^5 draws), and acceptance
// measured on the bundled model's real text.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "core/error.h"
#include "core/thread_pool.h"
#include "runtime/scheduler.h"
#include "runtime/speculative.h"
#include "runtime/test_util.h"

namespace dsv4 {
namespace {

SchedulerOptions with_spec(int draft_max, int parallel = 3) {
  SchedulerOptions o;
  o.max_parallel = parallel;
  o.max_context = 4096;
  o.prefill_chunk = 7;  // several chunks per prompt: the drafter follows the prefill chunk by chunk
  o.prefix_cache_bytes = 64u << 20;
  if (draft_max > 0) o.spec = {SpecMode::Mtp, draft_max, 0};
  return o;
}

struct Outputs {
  std::vector<std::unique_ptr<Collected>> out;
  SchedulerStats stats;
};

// All prompts submitted at once (so prefill chunks, first steps without a draft and drafted steps
// share forwards), greedy with logprobs.
Outputs run_all(const Model& m, const Tokenizer& tok, const SchedulerOptions& o, const std::vector<std::vector<int32_t>>& prompts,
            int n) {
  Scheduler s(m, tok, o);
  Outputs r;
  for (auto& p : prompts) {
    r.out.push_back(std::make_unique<Collected>());
    GenerationRequest q = greedy(p, n);
    q.top_logprobs = 0;
    submit(s, q, *r.out.back());
  }
  for (auto& c : r.out) c->done.get_future().wait();
  r.stats = s.stats();
  return r;
}

std::vector<std::vector<int32_t>> nano_prompts() {
  return {prompt_ids("In the beginning"), prompt_ids("What is a lawyer?"), prompt_ids("Blessed are the meek"),
          prompt_ids("And the LORD said unto Moses")};
}

TEST(Speculative, GreedyMtpEqualsPlainGreedyOnNano) {
  const auto prompts = nano_prompts();
  const Outputs plain = run_all(nano().model, nano().tok, with_spec(0), prompts, 40);
  for (int threads : {1, 2})
    for (int k : {1, 3, 6}) {
      SCOPED_TRACE("threads " + std::to_string(threads) + " draft-max " + std::to_string(k));
      ThreadPool::set_global_threads(threads);
      const Outputs spec = run_all(nano().model, nano().tok, with_spec(k), prompts, 40);
      for (size_t i = 0; i < prompts.size(); ++i) {
        EXPECT_EQ(spec.out[i]->tokens, plain.out[i]->tokens) << i;
        EXPECT_EQ(spec.out[i]->logprobs, plain.out[i]->logprobs) << i;
        EXPECT_EQ(spec.out[i]->text, plain.out[i]->text) << i;
        EXPECT_EQ(spec.out[i]->finish, plain.out[i]->finish) << i;
      }
      EXPECT_GT(spec.stats.spec_steps, 0u);
      EXPECT_GT(spec.stats.spec_accepted, 0u);  // a trained MTP head on the text it was trained on
      EXPECT_LE(spec.stats.spec_accepted, spec.stats.spec_drafted);
      EXPECT_EQ(spec.stats.generated_tokens, plain.stats.generated_tokens);
      std::printf("draft-max %d: %llu steps, acceptance %.3f\n", k, (unsigned long long)spec.stats.spec_steps,
                  double(spec.stats.spec_accepted) / double(spec.stats.spec_drafted));
    }
  ThreadPool::set_global_threads(0);
}

// The tiny fixtures: random weights, so drafts are mostly rejected and every rollback path runs
// (windows of 8 and 16, CSA and HCA layers, FP4 and FP8 experts).
TEST(Speculative, GreedyMtpEqualsPlainGreedyOnFixtures) {
  const Tokenizer tok = bytes_only_tokenizer();
  for (const char* f : {"tiny-flash", "tiny-pro"}) {
    SCOPED_TRACE(f);
    Model m(std::string(DSV4_TEST_DATA) + "/fixtures/" + f);
    const std::vector<std::vector<int32_t>> prompts = {tok.encode("hello there"), tok.encode("abc"),
                                                       tok.encode("The quick brown fox jumps over the lazy dog")};
    const Outputs plain = run_all(m, tok, with_spec(0, 2), prompts, 60);
    const Outputs spec = run_all(m, tok, with_spec(4, 2), prompts, 60);
    for (size_t i = 0; i < prompts.size(); ++i) {
      EXPECT_EQ(spec.out[i]->tokens, plain.out[i]->tokens) << i;
      EXPECT_EQ(spec.out[i]->logprobs, plain.out[i]->logprobs) << i;
    }
    EXPECT_GT(spec.stats.spec_drafted, 0u);
  }
}

// DSpark (0731): a block of 5 after every step, cut at the confidence threshold; random weights, so
// most drafts are rejected and the commits of accepted positions, resyncs and rollbacks all run.
TEST(Speculative, GreedyDSparkEqualsPlainGreedyOn0731) {
  const Tokenizer tok = bytes_only_tokenizer();
  Model m(std::string(DSV4_TEST_DATA) + "/fixtures/tiny-0731");
  const std::vector<std::vector<int32_t>> prompts = {tok.encode("hello there"), tok.encode("abc"),
                                                     tok.encode("The quick brown fox jumps over the lazy dog")};
  const Outputs plain = run_all(m, tok, with_spec(0, 2), prompts, 60);
  std::vector<uint64_t> drafted;
  for (float conf : {0.0f, 0.02f}) {
    SCOPED_TRACE("min confidence " + std::to_string(conf));
    SchedulerOptions o = with_spec(5, 2);
    o.spec = {SpecMode::DSpark, 5, conf};
    const Outputs spec = run_all(m, tok, o, prompts, 60);
    for (size_t i = 0; i < prompts.size(); ++i) {
      EXPECT_EQ(spec.out[i]->tokens, plain.out[i]->tokens) << i;
      EXPECT_EQ(spec.out[i]->logprobs, plain.out[i]->logprobs) << i;
    }
    EXPECT_GT(spec.stats.spec_drafted, 0u);
    drafted.push_back(spec.stats.spec_drafted);
    std::printf("dspark, min confidence %.2f: %llu drafted, %llu accepted in %llu steps\n", conf,
                (unsigned long long)spec.stats.spec_drafted, (unsigned long long)spec.stats.spec_accepted,
                (unsigned long long)spec.stats.spec_steps);
  }
  EXPECT_LT(drafted[1], drafted[0]) << "the confidence threshold cuts blocks short";
}

TEST(Speculative, StopsLimitsAndPrefixCacheUnchanged) {
  const auto p = prompt_ids("Who was the father of Isaac, and what did the LORD promise him?");
  Scheduler plain(nano().model, nano().tok, with_spec(0));
  Scheduler spec(nano().model, nano().tok, with_spec(4));
  auto one = [](Scheduler& s, GenerationRequest r) {
    auto c = std::make_unique<Collected>();
    submit(s, std::move(r), *c);
    c->done.get_future().wait();
    return c;
  };
  auto full = one(plain, greedy(p, 48));
  ASSERT_GT(full->text.size(), 30u);
  // A stop string inside an accepted draft ends the text at the same byte.
  GenerationRequest r = greedy(p, 48);
  r.stop = {full->text.substr(full->text.size() / 2, 4)};
  auto a = one(plain, r), b = one(spec, r);
  EXPECT_EQ(a->text, b->text);
  EXPECT_EQ(a->finish, b->finish);
  // max_tokens mid-draft, and a stop token (one of the generated ids).
  for (int n : {1, 2, 5, 17}) EXPECT_EQ(one(spec, greedy(p, n))->tokens, one(plain, greedy(p, n))->tokens) << n;
  r = greedy(p, 48);
  r.stop_ids = {full->tokens[20]};
  EXPECT_EQ(one(spec, r)->tokens, one(plain, r)->tokens);
  // The same prompt again starts from the cached state, drafter included.
  auto again = one(spec, greedy(p, 48));
  EXPECT_EQ(again->cached, int64_t(p.size()) - 1);
  EXPECT_EQ(again->tokens, full->tokens);
}

TEST(Speculative, BadOptionsAreRefused) {
  Model m(std::string(DSV4_TEST_DATA) + "/fixtures/tiny-0731");
  const Tokenizer tok = bytes_only_tokenizer();
  auto make = [&](const Model& mm, SpecOptions o) {
    SchedulerOptions so;
    so.spec = o;
    Scheduler s(mm, tok, so);
  };
  EXPECT_THROW(make(nano().model, {SpecMode::Mtp, 0, 0}), Error);
  EXPECT_THROW(make(nano().model, {SpecMode::Mtp, 3, 1.5f}), Error);
  try {
    make(m, {SpecMode::Mtp, 3, 0});
    FAIL() << "a checkpoint without mtp.0 must refuse --spec mtp";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no MTP block"), std::string::npos) << e.what();
  }
  try {
    make(nano().model, {SpecMode::DSpark, 3, 0});
    FAIL() << "a checkpoint without a DSpark head must refuse --spec dspark";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no DSpark draft head"), std::string::npos) << e.what();
  }
  EXPECT_THROW(parse_spec_mode("eagle"), Error);
}

// The acceptance rule alone: for a real logits row, a fixed draft and each sampling setting, the
// tokens it emits follow the target distribution (chi-square over 10^5 draws, cells of expected
// count >= 5 pooled as usual), whatever the draft — likely, unlikely or outside the candidates.
TEST(Speculative, AcceptanceRulePreservesTheTargetDistribution) {
  const Model& m = nano().model;
  SequenceState st = m.new_sequence();
  const auto p = prompt_ids("In the beginning God created");
  const std::vector<float> logits = m.forward(st, p.data(), int64_t(p.size())).logits;
  struct Case {
    SamplingParams sp;
    int draft_rank;  // the draft is the token of this rank in the target (0 = most likely)
  };
  std::vector<Case> cases;
  for (int rank : {0, 3, 40}) {
    SamplingParams a;
    a.temperature = 1.0f;
    cases.push_back({a, rank});
    SamplingParams b;
    b.temperature = 0.7f;
    b.top_k = 20;
    b.top_p = 0.9f;
    cases.push_back({b, rank});  // rank 40 lies outside top-k: never accepted
  }
  for (size_t ci = 0; ci < cases.size(); ++ci) {
    SCOPED_TRACE("case " + std::to_string(ci));
    SamplingParams sp = cases[ci].sp;
    sp.seed = 1234 + ci;
    Sampler s(sp);
    const auto target = s.distribution(logits, {});
    std::vector<std::pair<int32_t, float>> byp;
    for (int32_t v = 0; v < int32_t(logits.size()); ++v) byp.push_back({v, logits[size_t(v)]});
    std::sort(byp.begin(), byp.end(), [](auto& x, auto& y) { return x.second > y.second; });
    const int32_t draft = byp[size_t(cases[ci].draft_rank)].first;
    const int N = 100000;
    std::map<int32_t, int> count;
    for (int i = 0; i < N; ++i) ++count[verify_draft(s, logits, {}, draft).token];
    double chi2 = 0, pooled_e = 0, pooled_o = 0;
    int cells = 0;
    for (auto& [id, prob] : target) {
      const double e = prob * N, o = count.count(id) ? count[id] : 0;
      if (e < 5) {
        pooled_e += e, pooled_o += o;
        continue;
      }
      chi2 += (o - e) * (o - e) / e;
      ++cells;
    }
    if (pooled_e >= 5) chi2 += (pooled_o - pooled_e) * (pooled_o - pooled_e) / pooled_e, ++cells;
    int outside = N;
    for (auto& [id, prob] : target) outside -= count.count(id) ? count[id] : 0;
    EXPECT_EQ(outside, 0) << "tokens drawn outside the target's support";
    const double df = std::max(1, cells - 1);
    // p ≈ 1e-4 for these df: a wrong rule (e.g. always accepting) is off by thousands.
    EXPECT_LT(chi2, df + 4.0 * std::sqrt(2.0 * df) + 10) << "chi2 " << chi2 << " df " << df;
  }
}

}  // namespace
}  // namespace dsv4
