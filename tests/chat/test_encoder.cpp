#include <gtest/gtest.h>

#include "chat/encoder.h"
#include "chat/golden.h"
#include "core/error.h"

namespace dsv4::chat {
namespace {

using testing::load_jsonl;

const std::vector<Json>& chat_records() {
  static const std::vector<Json> recs = load_jsonl("golden-chat.jsonl");
  return recs;
}

TEST(GoldenChatFile, HasAllRecords) { EXPECT_EQ(chat_records().size(), 58u); }

class GoldenChat : public ::testing::TestWithParam<Json> {};

TEST_P(GoldenChat, PromptMatchesByteForByte) {
  const Json& rec = GetParam();
  EncodeOptions opt = options_from_json(rec.at("options"));
  std::string prompt = render_prompt(rec.at("messages"), opt);
  EXPECT_EQ(prompt, rec.at("prompt").get<std::string>()) << rec.at("name").get<std::string>();
}

INSTANTIATE_TEST_SUITE_P(Golden, GoldenChat, ::testing::ValuesIn(chat_records()),
                         [](const ::testing::TestParamInfo<Json>& info) { return testing::test_name(info.param); });

Json msgs(const char* text) { return Json::parse(text); }

std::string render(const char* messages, EncodeOptions opt = {}) { return render_prompt(msgs(messages), opt); }

std::string error_of(const char* messages, EncodeOptions opt = {}) {
  try {
    render(messages, opt);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Encoder, RejectsUnknownRole) {
  std::string e = error_of(R"([{"role":"user","content":"a"},{"role":"robot","content":"b"}])");
  EXPECT_NE(e.find("message 1"), std::string::npos) << e;
  EXPECT_NE(e.find("unknown role 'robot'"), std::string::npos) << e;
}

TEST(Encoder, RejectsMalformedMessages) {
  EXPECT_NE(error_of(R"({"role":"user"})").find("must be a JSON array"), std::string::npos);
  EXPECT_NE(error_of(R"(["hi"])").find("expected a JSON object"), std::string::npos);
  EXPECT_NE(error_of(R"([{"content":"x"}])").find("\"role\""), std::string::npos);
  EXPECT_NE(error_of(R"([{"role":5}])").find("\"role\""), std::string::npos);
  EXPECT_NE(error_of(R"([{"role":"user","content":["a"]}])").find("\"content\" must be a string"), std::string::npos);
  EXPECT_NE(error_of(R"([{"role":"system","content":{"a":1}}])").find("\"content\""), std::string::npos);
  EXPECT_NE(error_of(R"([{"role":"developer","content":""}])").find("non-empty"), std::string::npos);
  EXPECT_NE(error_of(R"([{"role":"latest_reminder"}])").find("latest_reminder"), std::string::npos);
  EXPECT_NE(error_of(R"([{"role":"tool","content":null}])").find("string or a list"), std::string::npos);
  EXPECT_NE(error_of(R"([{"role":"user","content":"a","task":"summarize"}])").find("invalid task 'summarize'"),
            std::string::npos);
}

TEST(Encoder, RejectsMalformedToolCalls) {
  EXPECT_NE(error_of(R"([{"role":"assistant","content":"","tool_calls":{"a":1}}])").find("must be an array"),
            std::string::npos);
  EXPECT_NE(error_of(R"([{"role":"assistant","tool_calls":[{"id":"x"}]}])").find("no \"function\""),
            std::string::npos);
  EXPECT_NE(error_of(R"([{"role":"assistant","tool_calls":[{"function":{"arguments":"{}"}}]}])").find("name"),
            std::string::npos);
  EXPECT_NE(error_of(R"([{"role":"assistant","tool_calls":[{"function":{"name":"f"}}]}])").find("arguments"),
            std::string::npos);
  EXPECT_NE(error_of(R"([{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":"[1,2]"}}]}])")
                .find("must encode a JSON object"),
            std::string::npos);
  EXPECT_NE(error_of(R"([{"role":"system","content":"s","tools":[{"name":"f"}]}])").find("no \"function\""),
            std::string::npos);
}

TEST(Encoder, RejectsBadOptions) {
  EXPECT_THROW(options_from_json(Json::parse(R"({"thinking_mode":"deep"})")), Error);
  EXPECT_THROW(options_from_json(Json::parse(R"({"reasoning_effort":"low"})")), Error);
  EXPECT_THROW(options_from_json(Json::parse(R"({"drop_thinking":"yes"})")), Error);
  EXPECT_THROW(options_from_json(Json::parse(R"({"context":"x"})")), Error);
  EXPECT_THROW(options_from_json(Json::parse(R"({"temperature":1})")), Error);
  EncodeOptions opt;
  opt.reasoning_effort = "medium";
  EXPECT_NE(error_of(R"([{"role":"user","content":"a"}])", opt).find("reasoning effort"), std::string::npos);
}

TEST(Encoder, OptionsDefaults) {
  EncodeOptions o = options_from_json(Json::object());
  EXPECT_FALSE(o.thinking);
  EXPECT_TRUE(o.drop_thinking);
  EXPECT_TRUE(o.add_bos);
  EXPECT_EQ(o.reasoning_effort, "");
  EXPECT_TRUE(o.context.is_null());
}

TEST(Encoder, ConsecutiveUsersFuseExceptAfterATask) {
  EXPECT_EQ(render(R"([{"role":"user","content":"a"},{"role":"user","content":"b"}])"),
            "<｜begin▁of▁sentence｜><｜User｜>a\n\nb<｜Assistant｜></think>");
  // A user text does not join a task turn, but a tool result does.
  EXPECT_EQ(render(R"([{"role":"user","content":"a","task":"query"},{"role":"user","content":"b"}])"),
            "<｜begin▁of▁sentence｜><｜User｜>a<｜User｜>b<｜Assistant｜></think>");
  EXPECT_EQ(render(R"([{"role":"user","content":"a","task":"query"},{"role":"tool","content":"r"}])"),
            "<｜begin▁of▁sentence｜><｜User｜>a\n\n<tool_result>r</tool_result><｜query｜>");
}

TEST(Encoder, ToolCallArgumentsAsObjectMatchString) {
  const char* as_string =
      R"([{"role":"assistant","content":"","tool_calls":[{"function":{"name":"f","arguments":"{\"b\": 1.5e-7, \"a\": [1, \"x\"]}"}}]}])";
  const char* as_object =
      R"([{"role":"assistant","content":"","tool_calls":[{"function":{"name":"f","arguments":{"b": 1.5e-7, "a": [1, "x"]}}}]}])";
  std::string expected =
      "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\n"
      "<｜DSML｜parameter name=\"b\" string=\"false\">1.5e-07</｜DSML｜parameter>\n"
      "<｜DSML｜parameter name=\"a\" string=\"false\">[1, \"x\"]</｜DSML｜parameter>\n"
      "</｜DSML｜invoke>\n</｜DSML｜tool_calls><｜end▁of▁sentence｜>";
  EncodeOptions opt;
  opt.add_bos = false;
  EXPECT_EQ(render(as_string, opt), expected);
  EXPECT_EQ(render(as_object, opt), expected);
}

TEST(Encoder, EmptyContextStillWritesBos) {
  EncodeOptions opt;
  opt.context = Json::array();
  EXPECT_EQ(render(R"([{"role":"user","content":"a"}])", opt), "<｜begin▁of▁sentence｜><｜User｜>a<｜Assistant｜></think>");
}

TEST(Encoder, ContextPlusMessagesEqualsFullConversationTail) {
  // Rendering with a context must continue exactly where rendering the context alone stopped.
  Json full = msgs(R"([
    {"role":"system","content":"s"},
    {"role":"user","content":"q1"},
    {"role":"assistant","content":"a1","reasoning_content":"r1"},
    {"role":"user","content":"q2"}])");
  for (bool thinking : {false, true}) {
    EncodeOptions whole;
    whole.thinking = thinking;
    whole.drop_thinking = false;
    std::string all = render_prompt(full, whole);
    EncodeOptions ctx = whole;
    ctx.context = Json(full.begin(), full.begin() + 2);
    Json tail(full.begin() + 2, full.end());
    std::string head = render_prompt(ctx.context, whole);
    EXPECT_EQ(head + render_prompt(tail, ctx), all) << "thinking=" << thinking;
  }
}

TEST(Encoder, UnknownToolResultIdsSortFirstAndStably) {
  const char* m = R"([
    {"role":"assistant","content":"","tool_calls":[
      {"id":"a","function":{"name":"f","arguments":"{}"}},
      {"id":"b","function":{"name":"g","arguments":"{}"}}]},
    {"role":"tool","tool_call_id":"b","content":"B"},
    {"role":"tool","tool_call_id":"zz","content":"Z"},
    {"role":"user","content":"txt"},
    {"role":"tool","tool_call_id":"a","content":"A"}])";
  EncodeOptions opt;
  opt.add_bos = false;
  std::string p = render(m, opt);
  // Ids: b=1, zz=unknown(0), a=0 -> stable order zz, a, b; the text block keeps its slot.
  std::string tail = "<｜User｜><tool_result>Z</tool_result>\n\n<tool_result>A</tool_result>\n\ntxt\n\n"
                     "<tool_result>B</tool_result><｜Assistant｜></think>";
  ASSERT_GE(p.size(), tail.size());
  EXPECT_EQ(p.substr(p.size() - tail.size()), tail);
}

}  // namespace
}  // namespace dsv4::chat
