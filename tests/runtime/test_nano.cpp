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

namespace dsv4 {
namespace {

const std::string kNano = std::string(DSV4_TEST_DATA) + "/../../models/dsv4-nano";

struct Nano {
  Tokenizer tok = Tokenizer::load(kNano);
  Model model{kNano};
};
Nano& nano() {
  static Nano n;
  return n;
}

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

std::vector<int32_t> prompt_ids(const std::string& user) {
  nlohmann::ordered_json msgs = nlohmann::ordered_json::array({{{"role", "user"}, {"content", user}}});
  return nano().tok.encode(chat::render_prompt(msgs, {}), true);
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

struct Collected {
  std::vector<int32_t> tokens;
  std::string text, finish;
  int64_t cached = -1;
  std::promise<void> done;
};

uint64_t submit(Scheduler& s, GenerationRequest req, Collected& c) {
  return s.submit(std::move(req), [&c](const GenerationEvent& e) {
    if (e.kind == GenerationEvent::Kind::Token) {
      if (e.token >= 0) c.tokens.push_back(e.token);
      c.text += e.text;
    } else if (e.kind == GenerationEvent::Kind::Done || e.kind == GenerationEvent::Kind::Error) {
      c.finish = e.kind == GenerationEvent::Kind::Error ? "error: " + e.error : finish_reason_name(e.finish_reason);
      c.cached = e.cached_tokens;
      c.done.set_value();
    }
  });
}

GenerationRequest greedy(std::vector<int32_t> prompt, int n) {
  GenerationRequest r;
  r.prompt = std::move(prompt);
  r.sampling.temperature = 0;
  r.max_tokens = n;
  return r;
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

// A byte-level tokenizer with only the 256 byte tokens: the tiny fixture's head has 512 rows, so half
// of its ids are padding the tokenizer cannot decode (as V4's 129280-row head is past the last token).
Tokenizer bytes_only_tokenizer() {
  nlohmann::json vocab = nlohmann::json::object();
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    // GPT-2's byte-to-unicode map: printable Latin-1 bytes stand for themselves, the rest from U+0100.
    const bool direct = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
    const int cp = direct ? b : 256 + n++;
    std::string u;
    if (cp < 0x80) u += char(cp);
    else {
      u += char(0xC0 | (cp >> 6));
      u += char(0x80 | (cp & 0x3F));
    }
    vocab[u] = b;
  }
  nlohmann::json j = {{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}}},
                      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}},
                      {"decoder", {{"type", "ByteLevel"}}},
                      {"added_tokens", nlohmann::json::array()}};
  return Tokenizer::from_json(j.dump(), "bytes-only");
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
