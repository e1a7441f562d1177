// Request validation shared by the dialects: logit_bias parsing and `n`.
#include <gtest/gtest.h>

#include "server/common.h"

namespace dsv4::server {
namespace {

std::string param_of(const Json& body, int64_t vocab = 100) {
  try {
    parse_logit_bias(body, vocab);
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 400);
    return e.param;
  }
  return "(accepted)";
}

TEST(LogitBias, ParsesIdsAndBiases) {
  const auto lb = parse_logit_bias(Json::parse(R"({"logit_bias": {"5": -100, "0": 2.5, "99": 100, "007": 1}})"), 100);
  const std::vector<std::pair<int32_t, float>> want = {{5, -100.0f}, {0, 2.5f}, {99, 100.0f}, {7, 1.0f}};
  EXPECT_EQ(lb, want);
  EXPECT_TRUE(parse_logit_bias(Json::parse(R"({})"), 100).empty());
  EXPECT_TRUE(parse_logit_bias(Json::parse(R"({"logit_bias": null})"), 100).empty());
  EXPECT_TRUE(parse_logit_bias(Json::parse(R"({"logit_bias": {}})"), 100).empty());
}

TEST(LogitBias, WrongShapesNameTheField) {
  EXPECT_EQ(param_of(Json::parse(R"({"logit_bias": [1]})")), "logit_bias");
  EXPECT_EQ(param_of(Json::parse(R"({"logit_bias": "5"})")), "logit_bias");
  EXPECT_EQ(param_of(Json::parse(R"({"logit_bias": {"abc": 1}})")), "logit_bias.abc");
  EXPECT_EQ(param_of(Json::parse(R"({"logit_bias": {"-1": 1}})")), "logit_bias.-1");
  EXPECT_EQ(param_of(Json::parse(R"({"logit_bias": {" 1": 1}})")), "logit_bias. 1");
  EXPECT_EQ(param_of(Json::parse(R"({"logit_bias": {"": 1}})")), "logit_bias.");
  EXPECT_EQ(param_of(Json::parse(R"({"logit_bias": {"100": 1}})")), "logit_bias.100");  // vocab is 100
  EXPECT_EQ(param_of(Json::parse(R"({"logit_bias": {"99999999999": 1}})")), "logit_bias.99999999999");
  EXPECT_EQ(param_of(Json::parse(R"({"logit_bias": {"5": "1"}})")), "logit_bias.5");
  EXPECT_EQ(param_of(Json::parse(R"({"logit_bias": {"5": null}})")), "logit_bias.5");
  EXPECT_EQ(param_of(Json::parse(R"({"logit_bias": {"5": 100.01}})")), "logit_bias.5");
  EXPECT_EQ(param_of(Json::parse(R"({"logit_bias": {"5": -101}})")), "logit_bias.5");
  EXPECT_EQ(param_of(Json::parse(R"({"logit_bias": {"5": 1e308}})")), "logit_bias.5");
}

TEST(N, OnlyOneChoice) {
  EXPECT_NO_THROW(check_n(Json::parse(R"({})")));
  EXPECT_NO_THROW(check_n(Json::parse(R"({"n": 1})")));
  EXPECT_NO_THROW(check_n(Json::parse(R"({"n": null})")));
  for (const char* bad : {R"({"n": 2})", R"({"n": 0})", R"({"n": -1})", R"({"n": "1"})", R"({"n": 1.5})"}) {
    try {
      check_n(Json::parse(bad));
      ADD_FAILURE() << "accepted " << bad;
    } catch (const ApiError& e) {
      EXPECT_EQ(e.param, "n") << bad;
    }
  }
}

}  // namespace
}  // namespace dsv4::server
