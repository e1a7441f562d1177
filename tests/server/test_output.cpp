// The server's response path from scheduler events, with synthetic events: reasoning / content / DSML
// tool calls, finish reasons, stop strings, malformed output. (The bundled model does not write DSML
// by itself, so this is where a tool call coming back from the model is checked.)
#include <gtest/gtest.h>

#include "chat/markers.h"
#include "server/generation.h"

namespace dsv4::server {
namespace {

const Tokenizer& tok() {
  static Tokenizer t = Tokenizer::load(std::string(DSV4_TEST_DATA) + "/tokenizer");
  return t;
}

struct Feed {
  OutputParser p;
  Delta all;
  bool ok = true;
  explicit Feed(OutputMode mode, std::vector<std::string> stops = {})
      : p(tok(), mode, tok().eos_id(), tok().token_id(chat::marker::kThinkClose), std::move(stops), false, 10) {}
  void token(const std::string& text, int32_t id = 100) {
    GenerationEvent e;
    e.kind = GenerationEvent::Kind::Token;
    e.token = id;
    e.text = text;
    e.completion_tokens = ++n;
    Delta d;
    ok = p.event(e, d) && ok;
    all += std::move(d);
  }
  void done(FinishReason reason, int32_t stop_token = -1) {
    GenerationEvent e;
    e.kind = GenerationEvent::Kind::Done;
    e.finish_reason = reason;
    e.stop_token = stop_token;
    e.prompt_tokens = 10;
    e.completion_tokens = n;
    Delta d;
    if (stop_token >= 0) {  // the scheduler reports the stop token as a token without text first
      token("", stop_token);
      --n;
    }
    p.event(e, d);
    all += std::move(d);
  }
  int64_t n = 0;
};

TEST(OutputParser, ThinkingThenToolCall) {
  Feed r(OutputMode::ChatThinking);
  r.token("Let me");
  r.token(" look it up.");
  r.token("</think>", tok().token_id(chat::marker::kThinkClose));
  r.token("Checking.");
  // The DSML block arrives cut at arbitrary places.
  const std::string dsml =
      "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_weather\">\n"
      "<｜DSML｜parameter name=\"city\" string=\"true\">Paris</｜DSML｜parameter>\n"
      "<｜DSML｜parameter name=\"days\" string=\"false\">2</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>";
  for (size_t i = 0; i < dsml.size(); i += 7) r.token(dsml.substr(i, 7));
  r.done(FinishReason::Stop, tok().eos_id());
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(r.all.reasoning, "Let me look it up.");
  EXPECT_EQ(r.all.content, "Checking.");
  ASSERT_EQ(r.all.tool_calls.size(), 1u);
  EXPECT_EQ(r.all.tool_calls[0].name, "get_weather");
  EXPECT_EQ(r.all.tool_calls[0].arguments, R"({"city": "Paris", "days": 2})");
  const Outcome& o = r.p.outcome();
  EXPECT_EQ(o.finish_reason, FinishReason::ToolCalls);
  EXPECT_TRUE(o.eos);
  EXPECT_EQ(o.usage.reasoning_tokens, 3);
  EXPECT_EQ(o.usage.prompt_tokens, 10);
}

TEST(OutputParser, ChatContentEndsOnEos) {
  Feed r(OutputMode::Chat);
  r.token("Hello");
  r.token(", world");
  r.done(FinishReason::Stop, tok().eos_id());
  EXPECT_EQ(r.all.content, "Hello, world");
  EXPECT_TRUE(r.all.reasoning.empty());
  EXPECT_EQ(r.p.outcome().finish_reason, FinishReason::Stop);
  EXPECT_TRUE(r.p.outcome().eos);
}

TEST(OutputParser, LengthFlushesHeldBackText) {
  Feed r(OutputMode::ChatThinking);
  r.token("reasoning that ends with half a marker </thi");
  r.done(FinishReason::Length);
  // Cut off by the token limit: the held-back tail is shown as it stands.
  EXPECT_EQ(r.all.reasoning, "reasoning that ends with half a marker </thi");
  EXPECT_EQ(r.p.outcome().finish_reason, FinishReason::Length);
  EXPECT_FALSE(r.p.outcome().eos);
}

TEST(OutputParser, StopStringIsReported) {
  Feed r(OutputMode::Chat, {"END"});
  const auto ids = tok().encode("Hello world END", false);
  // The scheduler emits the text before the stop string and holds the stop string back.
  std::string shown = "Hello world ";
  for (size_t i = 0; i < ids.size(); ++i) r.token(i == 0 ? shown : "", ids[i]);
  r.done(FinishReason::Stop);
  EXPECT_EQ(r.all.content, "Hello world ");
  EXPECT_EQ(r.p.outcome().finish_reason, FinishReason::Stop);
  EXPECT_EQ(r.p.outcome().stop_sequence, "END");
}

TEST(OutputParser, MalformedOutputStopsCleanly) {
  Feed r(OutputMode::Chat);
  r.token("fine so far");
  r.token(" then <think> where it cannot be");
  EXPECT_FALSE(r.ok);  // the caller cancels the generation
  r.token(" more text");
  r.done(FinishReason::Cancelled);
  EXPECT_EQ(r.all.content.find("<think>"), std::string::npos);
  EXPECT_EQ(r.all.content.rfind("fine so far", 0), 0u);
  EXPECT_EQ(r.p.outcome().finish_reason, FinishReason::Stop);
}

TEST(OutputParser, RawModeKeepsTextVerbatim) {
  Feed r(OutputMode::Raw);
  r.token("a <think> b");
  r.done(FinishReason::Stop, tok().eos_id());
  EXPECT_EQ(r.all.content, "a <think> b");  // no parser, and the EOS text is not added
  EXPECT_EQ(r.p.outcome().finish_reason, FinishReason::Stop);
}

TEST(OutputParser, ErrorEvent) {
  Feed r(OutputMode::Chat);
  GenerationEvent e;
  e.kind = GenerationEvent::Kind::Error;
  e.error = "out of memory";
  Delta d;
  r.p.event(e, d);
  EXPECT_TRUE(r.p.done());
  EXPECT_EQ(r.p.outcome().finish_reason, FinishReason::Error);
  EXPECT_EQ(r.p.outcome().error, "out of memory");
}

}  // namespace
}  // namespace dsv4::server
