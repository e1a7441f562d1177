// The bundled dsv4-nano model through the runtime: held-out cross-entropy equals the trainer's own
// evaluation, and the scheduler (batching, prefix cache, stops) never changes what greedy decoding says.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <future>
#include <mutex>

#include "chat/encoder.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "runtime/perplexity.h"
#include "runtime/scheduler.h"
#include "runtime/test_util.h"

namespace dsv4 {
namespace {

TEST(Nano, HeldOutCrossEntropyMatchesTheTrainer) {
  // eval.json was written by tools/nano/eval.py from the exported checkpoint (quantized numerics) with
  // the same protocol; the issue asks for agreement within 1%.
  auto ev = nlohmann::json::parse(read_text_file(kNano + "/eval.json"));
  const std::string text = read_text_file(kNano + "/heldout.txt");
  PerplexityResult r = perplexity(nano().model, nano().tok, text, ev["ctx"].get<int64_t>());
  EXPECT_EQ(r.tokens, ev["tokens"].get<int64_t>());
  const double want = ev["heldout_ce_nats"].get<double>();
  std::printf("held-out CE: engine %.5f, trainer %.5f nats/token (relative %.2e)\n", r.mean_ce_nats, want,
              std::fabs(r.mean_ce_nats - want) / want);
  EXPECT_LT(std::fabs(r.mean_ce_nats - want) / want, 0.01);
  EXPECT_LT(r.mean_ce_nats, 4.5);  // a trained model, far below ln(4096) = 8.3
}

TEST(Nano, HeldOutCrossEntropyWithoutQuantizationMatchesTheTrainer) {
  auto ev = nlohmann::json::parse(read_text_file(kNano + "/eval.json"));
  Model nq(kNano, NumericsOptions::no_act_quant());
  std::string text = read_text_file(kNano + "/heldout.txt");
  PerplexityResult r = perplexity(nq, nano().tok, text, ev["ctx"].get<int64_t>());
  EXPECT_LT(std::fabs(r.mean_ce_nats - ev["heldout_ce_nats_nq"].get<double>()) / r.mean_ce_nats, 0.01);
}

TEST(Nano, KlDivergenceAgainstABaseModel) {
  // The same model as its own base: every distribution agrees exactly. Against the model without the
  // activation round trips: a small, positive divergence, and the base's cross-entropy is that model's.
  const std::string text = read_text_file(kNano + "/heldout.txt").substr(0, 6000);
  const PerplexityResult self = perplexity(nano().model, nano().tok, text, 256, {}, &nano().model);
  ASSERT_TRUE(self.has_base);
  EXPECT_EQ(self.mean_kl, 0.0);
  EXPECT_EQ(self.top1_agreement, 1.0);
  EXPECT_EQ(self.base_mean_ce_nats, self.mean_ce_nats);
  Model nq(kNano, NumericsOptions::no_act_quant());
  const PerplexityResult other = perplexity(nano().model, nano().tok, text, 256, {}, &nq);
  EXPECT_GT(other.mean_kl, 1e-6);
  EXPECT_LT(other.mean_kl, 0.05);
  EXPECT_GE(other.kl_p99, other.mean_kl);
  EXPECT_GT(other.top1_agreement, 0.8);
  EXPECT_EQ(other.mean_ce_nats, self.mean_ce_nats);
  EXPECT_NEAR(other.base_mean_ce_nats, perplexity(nq, nano().tok, text, 256).mean_ce_nats, 1e-12);
}

// Greedy decoding by hand, one sequence, no scheduler.
std::vector<int32_t> direct_greedy(const std::vector<int32_t>& prompt, int n) {
  const Model& m = nano().model;
  SequenceState st = m.new_sequence();
  auto r = m.forward(st, prompt.data(), int64_t(prompt.size()));
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    const float* l = r.logits.data();
    int32_t t = int32_t(std::max_element(l, l + m.config().vocab_size) - l);
    out.push_back(t);
    if (t == m.config().eos_token_id) break;
    r = m.forward(st, &t, 1);
  }
  return out;
}

TEST(NanoScheduler, BatchedGreedyEqualsDirectGreedy) {
  Scheduler s(nano().model, nano().tok, SchedulerOptions{3, 4096, 7, 64u << 20});
  const std::vector<std::string> users = {"In the beginning", "What is a lawyer?", "Blessed are the meek",
                                          "And the LORD said unto Moses"};
  std::vector<std::unique_ptr<Collected>> got;
  for (auto& u : users) {
    got.push_back(std::make_unique<Collected>());
    submit(s, greedy(prompt_ids(u), 24), *got.back());
  }
  for (size_t i = 0; i < users.size(); ++i) {
    got[i]->done.get_future().wait();
    auto want = direct_greedy(prompt_ids(users[i]), 24);
    EXPECT_EQ(got[i]->tokens, want) << users[i];
    EXPECT_EQ(got[i]->text, nano().tok.decode(std::vector<int32_t>(want.begin(), want.end() - (want.back() == 1))));
  }
}

TEST(NanoScheduler, PrefixCacheReusesTheLongestPrompt) {
  Scheduler s(nano().model, nano().tok, SchedulerOptions{2, 4096, 16, 64u << 20});
  auto p = prompt_ids("Who was the father of Isaac, and what did the LORD promise him?");
  Collected a, b;
  submit(s, greedy(p, 12), a);
  a.done.get_future().wait();
  submit(s, greedy(p, 12), b);
  b.done.get_future().wait();
  EXPECT_EQ(a.cached, 0);
  EXPECT_EQ(b.cached, int64_t(p.size()) - 1);
  EXPECT_EQ(a.tokens, b.tokens);
  auto st = s.stats();
  EXPECT_EQ(st.cache_hits, 1u);
}

TEST(NanoScheduler, StopStringsAndLimits) {
  Scheduler s(nano().model, nano().tok);
  auto p = prompt_ids("In the beginning");
  Collected full;
  submit(s, greedy(p, 40), full);
  full.done.get_future().wait();
  ASSERT_GT(full.text.size(), 20u);
  EXPECT_EQ(full.finish, "length");
  EXPECT_EQ(full.tokens.size(), 40u);
  // Stop on a string the greedy text contains: the text ends right before it.
  const std::string stop = full.text.substr(10, 5);
  GenerationRequest r = greedy(p, 40);
  r.stop = {stop};
  Collected cut;
  submit(s, r, cut);
  cut.done.get_future().wait();
  EXPECT_EQ(cut.finish, "stop");
  EXPECT_EQ(cut.text, full.text.substr(0, full.text.find(stop)));
  // A prompt that does not fit the context is refused at once.
  Scheduler small(nano().model, nano().tok, SchedulerOptions{1, 4, 4, 0});
  try {
    small.submit(greedy(p, 4), [](const GenerationEvent&) {});
    FAIL() << "expected a context error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not fit the context"), std::string::npos) << e.what();
  }
}

TEST(NanoScheduler, CancelStopsARequest) {
  Scheduler s(nano().model, nano().tok);
  Collected c;
  std::atomic<int> seen{0};
  uint64_t id = 0;
  std::mutex mu;
  std::unique_lock<std::mutex> hold(mu);  // the callback may run before submit() returns the id
  id = s.submit(greedy(prompt_ids("In the beginning"), 100000), [&](const GenerationEvent& e) {
    if (e.kind == GenerationEvent::Kind::Token && ++seen == 5) {
      std::lock_guard<std::mutex> lk(mu);
      s.cancel(id);
    }
    if (e.kind == GenerationEvent::Kind::Done) {
      c.finish = finish_reason_name(e.finish_reason);
      c.done.set_value();
    }
  });
  hold.unlock();
  c.done.get_future().wait();
  EXPECT_EQ(c.finish, "cancelled");
  EXPECT_LT(seen.load(), 50);
}

TEST(Scheduler, NeverSamplesIdsTheTokenizerCannotDecode) {
  Model m(std::string(DSV4_TEST_DATA) + "/fixtures/tiny-flash");
  Tokenizer tok = bytes_only_tokenizer();
  ASSERT_EQ(tok.vocab_size(), 256u);
  Scheduler s(m, tok);
  GenerationRequest r;
  r.prompt = tok.encode("hello");
  r.sampling.temperature = 1.5;
  r.sampling.seed = 3;
  r.max_tokens = 200;
  r.ignore_eos = true;
  Collected c;
  submit(s, r, c);
  c.done.get_future().wait();
  EXPECT_EQ(c.finish, "length");
  ASSERT_EQ(c.tokens.size(), 200u);
  for (int32_t t : c.tokens) EXPECT_LT(t, 256);
}

}  // namespace
}  // namespace dsv4
