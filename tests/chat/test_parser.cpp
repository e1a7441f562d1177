#include <gtest/gtest.h>

#include <optional>
#include <random>

#include "chat/golden.h"
#include "chat/parser.h"
#include "core/error.h"

namespace dsv4::chat {
namespace {

using testing::load_jsonl;

const std::vector<Json>& parse_records() {
  static const std::vector<Json> recs = load_jsonl("golden-parse.jsonl");
  return recs;
}

bool thinking_of(const Json& rec) { return rec.at("thinking_mode").get<std::string>() == "thinking"; }

// Feeds `text` in the given chunk sizes (cycled), checking every delta as a streaming client would.
// Returns nullopt when the parser rejected the text.
std::optional<ParsedCompletion> stream(const std::string& text, bool thinking, const std::vector<size_t>& sizes) {
  StreamParser p(thinking);
  ParsedCompletion out;
  auto take = [&](StreamParser::Delta d) {
    for (const std::string* s : {&d.content, &d.reasoning}) {
      if (is_valid_utf8(text)) {
        EXPECT_TRUE(is_valid_utf8(*s)) << "delta splits a UTF-8 character: " << *s;
      }
      for (const char* bad : {"<think>", "</think>", "｜DSML｜", "<｜end▁of▁sentence｜>", "<｜begin▁of▁sentence｜>"})
        EXPECT_EQ(s->find(bad), std::string::npos) << "markup in delta: " << *s;
      // Half a marker cannot slip through either: it would make the concatenation differ from the
      // one-shot result, which the callers compare.
    }
    out.content += d.content;
    out.reasoning_content += d.reasoning;
    for (auto& c : d.tool_calls) out.tool_calls.push_back(c);
  };
  try {
    size_t i = 0, k = 0;
    while (i < text.size()) {
      size_t n = std::min(sizes[k++ % sizes.size()], text.size() - i);
      take(p.push(std::string_view(text).substr(i, n)));
      i += n;
    }
    take(p.finish());
  } catch (const Error&) {
    return std::nullopt;
  }
  return out;
}

std::optional<ParsedCompletion> oneshot(const std::string& text, bool thinking) {
  try {
    return parse_completion(text, thinking);
  } catch (const Error&) {
    return std::nullopt;
  }
}

void expect_same(const std::optional<ParsedCompletion>& a, const std::optional<ParsedCompletion>& b,
                 const std::string& what) {
  ASSERT_EQ(a.has_value(), b.has_value()) << what;
  if (!a) return;
  EXPECT_EQ(to_json(*a), to_json(*b)) << what;
}

TEST(GoldenParseFile, HasAllRecords) { EXPECT_EQ(parse_records().size(), 35u); }

class GoldenParse : public ::testing::TestWithParam<Json> {};

TEST_P(GoldenParse, OneShotMatchesReference) {
  const Json& rec = GetParam();
  const std::string text = rec.at("text").get<std::string>();
  if (rec.at("ok").get<bool>()) {
    ParsedCompletion p = parse_completion(text, thinking_of(rec));
    Json got = to_json(p);
    EXPECT_EQ(got, rec.at("result")) << "got " << got.dump();
    // Byte-exact arguments, not just JSON-equal.
    const Json& want_calls = rec.at("result").at("tool_calls");
    ASSERT_EQ(p.tool_calls.size(), want_calls.size());
    for (size_t i = 0; i < p.tool_calls.size(); ++i)
      EXPECT_EQ(p.tool_calls[i].arguments, want_calls[i].at("function").at("arguments").get<std::string>());
  } else {
    try {
      parse_completion(text, thinking_of(rec));
      ADD_FAILURE() << "accepted malformed completion; reference error: " << rec.at("error").get<std::string>();
    } catch (const Error& e) {
      EXPECT_GT(std::string(e.what()).size(), 10u);
    }
  }
}

TEST_P(GoldenParse, StreamingEqualsOneShot) {
  const Json& rec = GetParam();
  const std::string text = rec.at("text").get<std::string>();
  bool thinking = thinking_of(rec);
  auto want = oneshot(text, thinking);
  EXPECT_EQ(want.has_value(), rec.at("ok").get<bool>());
  expect_same(stream(text, thinking, {1}), want, "1-byte chunks");
  std::mt19937 rng(1234);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<size_t> sizes;
    for (int k = 0; k < 64; ++k) sizes.push_back(1 + rng() % 9);
    expect_same(stream(text, thinking, sizes), want, "random chunks, trial " + std::to_string(trial));
  }
}

TEST_P(GoldenParse, EveryPrefixStreamsLikeOneShot) {
  const Json& rec = GetParam();
  const std::string text = rec.at("text").get<std::string>();
  bool thinking = thinking_of(rec);
  for (size_t n = 0; n <= text.size(); ++n) {
    std::string prefix = text.substr(0, n);
    expect_same(stream(prefix, thinking, {1}), oneshot(prefix, thinking), "prefix " + std::to_string(n));
    if (::testing::Test::HasFailure()) return;
  }
}

INSTANTIATE_TEST_SUITE_P(Golden, GoldenParse, ::testing::ValuesIn(parse_records()),
                         [](const ::testing::TestParamInfo<Json>& info) { return testing::test_name(info.param); });

TEST(StreamParser, MutatedCompletionsStreamLikeOneShot) {
  // Random edits around the markers exercise the error paths and partial-marker holdback.
  const std::vector<std::string> pieces = {"<", ">", "\n", "｜", "</think>", "<｜end▁of▁sentence｜>", "｜DSML｜",
                                           "<｜DSML｜parameter", "</｜DSML｜invoke", "\n\n<｜DSML｜tool_calls", "\"",
                                           "x", "\xEF\xBD", " "};
  std::mt19937 rng(99);
  size_t checked = 0;
  for (const Json& rec : parse_records()) {
    const std::string text = rec.at("text").get<std::string>();
    bool thinking = thinking_of(rec);
    for (int trial = 0; trial < 30; ++trial) {
      std::string t = text;
      int edits = 1 + static_cast<int>(rng() % 3);
      for (int e = 0; e < edits; ++e) {
        size_t at = t.empty() ? 0 : rng() % (t.size() + 1);
        switch (rng() % 3) {
          case 0: t.insert(at, pieces[rng() % pieces.size()]); break;
          case 1: t.erase(at, 1 + rng() % 4); break;
          default: t = t.substr(0, at); break;
        }
      }
      auto want = oneshot(t, thinking);
      std::vector<size_t> sizes;
      for (int k = 0; k < 16; ++k) sizes.push_back(1 + rng() % 7);
      expect_same(stream(t, thinking, sizes), want, "mutated: " + t);
      expect_same(stream(t, thinking, {1}), want, "mutated 1-byte: " + t);
      if (::testing::Test::HasFailure()) return;
      ++checked;
    }
  }
  EXPECT_GT(checked, 1000u);
}

TEST(StreamParser, EmitsContentBeforeTheEnd) {
  StreamParser p(false);
  EXPECT_EQ(p.push("Hello, wor").content, "Hello, wor");
  EXPECT_EQ(p.push("ld\n").content, "ld");  // "\n" could start the tool-call block
  EXPECT_EQ(p.push("more<").content, "\nmore");
  EXPECT_EQ(p.push("b>").content, "<b>");
  auto d = p.push("<｜end▁of▁sen");
  EXPECT_EQ(d.content, "");
  d = p.push("tence｜>");
  EXPECT_EQ(d.content, "");
  EXPECT_TRUE(p.done());
  EXPECT_TRUE(p.finish().empty());
}

TEST(StreamParser, HoldsBackHalfUtf8) {
  StreamParser p(true);
  EXPECT_EQ(p.push("r\xE4\xBD").reasoning, "r");
  EXPECT_EQ(p.push("\xA0").reasoning, "\xE4\xBD\xA0");
  EXPECT_EQ(p.push("</thi").reasoning, "");
  auto d = p.push("nk>a\xF0\x9F");
  EXPECT_EQ(d.reasoning, "");
  EXPECT_EQ(d.content, "a");
  EXPECT_EQ(p.push("\x99\x82<｜end▁of▁sentence｜>").content, "\xF0\x9F\x99\x82");
}

TEST(StreamParser, EmitsEachToolCallWhenItsInvokeCloses) {
  StreamParser p(false);
  EXPECT_EQ(p.push("Checking.\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\n").content, "Checking.");
  auto d = p.push("<｜DSML｜parameter name=\"a\" string=\"true\">x\"y</｜DSML｜parameter>\n</｜DSML｜invoke>\n");
  ASSERT_EQ(d.tool_calls.size(), 1u);
  EXPECT_EQ(d.tool_calls[0].name, "f");
  EXPECT_EQ(d.tool_calls[0].arguments, R"({"a": "x\"y"})");
  d = p.push("<｜DSML｜invoke name=\"g\">\n\n</｜DSML｜invoke>\n</｜DSML｜tool_calls><｜end▁of▁sentence｜>");
  ASSERT_EQ(d.tool_calls.size(), 1u);
  EXPECT_EQ(d.tool_calls[0].name, "g");
  EXPECT_EQ(d.tool_calls[0].arguments, "{}");
  EXPECT_TRUE(p.done());
  EXPECT_THROW(p.push("x"), Error);
}

TEST(StreamParser, TruncatedCompletionKeepsHeldBackText) {
  StreamParser p(true);
  EXPECT_EQ(p.push("plan</think>answer\n\n<").content, "answer");
  auto d = p.finish_truncated();
  EXPECT_EQ(d.content, "\n\n<");
  EXPECT_THROW(p.push("x"), Error);
  StreamParser q(false);
  q.push("x\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\n");
  EXPECT_TRUE(q.finish_truncated().empty());
}

// fuzz_parser: cut inside a tool-call opener, the held-back "\n\n<｜DSML｜tool" was returned as content.
TEST(StreamParser, TruncatedCompletionNeverReturnsMarkup) {
  StreamParser p(false);
  EXPECT_EQ(p.push("a\n\n<｜DSML｜tool").content, "a");
  EXPECT_EQ(p.finish_truncated().content, "\n\n<");
  StreamParser q(true);
  EXPECT_EQ(q.push("why</think>x\n\n<｜DSML｜tool_call").content, "x");
  const auto d = q.finish_truncated();
  EXPECT_EQ(d.content.find("｜DSML｜"), std::string::npos) << d.content;
}

TEST(StreamParser, ReportsErrorsEarlyAndStaysFailed) {
  StreamParser p(false);
  EXPECT_THROW(p.push("a<think>"), Error);
  EXPECT_THROW(p.push("b"), Error);
  EXPECT_THROW(p.finish(), Error);
  StreamParser q(false);
  q.push("\n\n<｜DSML｜tool_calls>");
  EXPECT_THROW(q.push("garbage"), Error);  // certain before the block ends
}

// Edge cases of the reference grammar that the golden vectors do not cover.
TEST(Parser, ReferenceEdgeCases) {
  const std::string open = "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\n";
  const std::string param = "<｜DSML｜parameter name=\"a\" string=\"false\">1</｜DSML｜parameter>\n";
  // The text may stop right after the block opener or right after an invoke close marker.
  EXPECT_EQ(parse_completion("hi\n\n<｜DSML｜tool_calls", false).tool_calls.size(), 0u);
  EXPECT_EQ(parse_completion("hi\n\n<｜DSML｜tool_calls", false).content, "hi");
  EXPECT_EQ(parse_completion(open + param + "</｜DSML｜invoke", false).tool_calls.size(), 1u);
  EXPECT_THROW(parse_completion(open + param + "</｜DSML｜invoke>\n", false), Error);
  // An invoke header cut off after its line is a call without arguments.
  auto p = parse_completion(open, false);
  ASSERT_EQ(p.tool_calls.size(), 1u);
  EXPECT_EQ(p.tool_calls[0].arguments, "{}");
  // Python's `$` also matches before a final newline; `\s*` accepts Unicode spaces.
  p = parse_completion("\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke\u3000name=\"f\">\n\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>", false);
  ASSERT_EQ(p.tool_calls.size(), 1u);
  EXPECT_EQ(p.tool_calls[0].name, "f");
  p = parse_completion(open + "<｜DSML｜parameter name=\"a\" string=\"true\">v<x<\n/｜DSML｜parameter>\n</｜DSML｜invoke", false);
  EXPECT_EQ(p.tool_calls.at(0).arguments, R"({"a": "v<x"})");
  // Values span lines and are JSON-escaped only when string="true".
  p = parse_completion(open + "<｜DSML｜parameter name=\"k\" string=\"true\">l1\nl2\t\\</｜DSML｜parameter>\n" + param +
                           "</｜DSML｜invoke>\n</｜DSML｜tool_calls><｜end▁of▁sentence｜>",
                       false);
  EXPECT_EQ(p.tool_calls.at(0).arguments, R"({"k": "l1\nl2\t\\", "a": 1})");
  // Chat mode has no reasoning: </think> in content is an error; thinking mode needs it.
  EXPECT_THROW(parse_completion("x</think>y<｜end▁of▁sentence｜>", false), Error);
  EXPECT_THROW(parse_completion("no close<｜end▁of▁sentence｜>", true), Error);
  EXPECT_THROW(parse_completion("", false), Error);
  EXPECT_THROW(parse_completion(open + param + "</｜DSML｜invoke>\n</｜DSML｜tool_calls><｜end▁of▁sen", false), Error);
}

TEST(Parser, ErrorMessagesNameTheProblem) {
  auto msg = [](const std::string& t, bool th) {
    try {
      parse_completion(t, th);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(msg("abc", false).find("missing EOS"), std::string::npos);
  EXPECT_NE(msg("abc<｜end▁of▁sentence｜>", true).find("missing </think>"), std::string::npos);
  EXPECT_NE(msg("a<think>b<｜end▁of▁sentence｜>", false).find("'<think>' in content"), std::string::npos);
  EXPECT_NE(msg("a<｜end▁of▁sentence｜>b", false).find("unexpected content at end"), std::string::npos);
}

TEST(Parser, ToJsonShape) {
  ParsedCompletion p{"c", "r", {{"f", "{}"}}};
  EXPECT_EQ(to_json(p).dump(),
            R"({"role":"assistant","content":"c","reasoning_content":"r","tool_calls":[{"type":"function","function":{"name":"f","arguments":"{}"}}]})");
}

}  // namespace
}  // namespace dsv4::chat
