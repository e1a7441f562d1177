#include <gtest/gtest.h>

#include <string>

#include "core/json.h"

namespace dsv4 {
namespace {

std::string nested(int depth, const std::string& inner = "1") {
  return std::string(size_t(depth), '[') + inner + std::string(size_t(depth), ']');
}

TEST(JsonDepth, AcceptsUpToTheLimit) {
  EXPECT_NO_THROW(check_json_depth(nested(kMaxJsonDepth), "x"));
  EXPECT_EQ(parse_json(nested(3), "x").dump(), "[[[1]]]");
  EXPECT_NO_THROW(check_json_depth(R"({"a": [1, {"b": 2}], "c": "[[[[[["})", "x", 3));
}

TEST(JsonDepth, RejectsDeeperAndNamesThePath) {
  EXPECT_THROW(check_json_depth(nested(kMaxJsonDepth + 1), "x"), JsonTooDeep);
  // 25,000 levels: what crashed the server's recursive dump; rejected without recursion.
  try {
    check_json_depth(R"({"model": "m", "tools": [{"type": "function"}, {"function": {"parameters": )" +
                         nested(25000) + "}}]}",
                     "the request body");
    FAIL() << "not rejected";
  } catch (const JsonTooDeep& e) {
    EXPECT_EQ(e.path.rfind("tools[1].function.parameters[0][0][0]", 0), 0u) << e.path;
    EXPECT_NE(std::string(e.what()).find("the request body nests deeper than 128 levels"), std::string::npos);
  }
  try {
    check_json_depth(R"({"a": {"b": [1, 2, {"c": 3}]}})", "config", 3);
    FAIL() << "not rejected";
  } catch (const JsonTooDeep& e) {
    EXPECT_EQ(e.path, "a.b[2]");
    EXPECT_NE(std::string(e.what()).find("(at a.b[2])"), std::string::npos) << e.what();
  }
}

TEST(JsonDepth, SyntaxErrorsAreLeftToTheParser) {
  EXPECT_NO_THROW(check_json_depth("{\"a\": [1, 2", "x"));
  EXPECT_THROW(parse_json("{\"a\": [1, 2", "x"), nlohmann::json::parse_error);
}

}  // namespace
}  // namespace dsv4
