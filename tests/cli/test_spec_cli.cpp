// --spec from the command line: run with MTP drafts prints the same answer and reports the drafts;
// a checkpoint without the asked-for head is refused by name; bench --spec reports the speed-up and
// acceptance in its JSON with the greedy outputs identical.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli/cli_util.h"

namespace dsv4::test {
namespace {

namespace fs = std::filesystem;
const fs::path kNano = fs::path(DSV4_TEST_DATA) / "../../models/dsv4-nano";

struct SpecCli : ::testing::Test {
  void SetUp() override { tmp = make_temp_dir("spec_cli"); }
  void TearDown() override { fs::remove_all(tmp); }
  fs::path tmp;
};

TEST_F(SpecCli, RunWithDraftsSaysTheSame) {
  const std::string args = "run -m " + kNano.string() + " -p 'In the beginning' -n 32 --temp 0";
  CmdRun plain = run_dsv4(args, tmp);
  ASSERT_EQ(plain.rc, 0) << plain.err;
  CmdRun spec = run_dsv4(args + " --spec mtp --draft-max 4", tmp);
  ASSERT_EQ(spec.rc, 0) << spec.err;
  EXPECT_EQ(spec.out, plain.out);
  EXPECT_NE(spec.err.find("% accepted"), std::string::npos) << spec.err;
  EXPECT_EQ(plain.err.find("% accepted"), std::string::npos) << plain.err;
}

TEST_F(SpecCli, RefusesAMissingDraftHeadAndBadValues) {
  CmdRun ds = run_dsv4("run -m " + kNano.string() + " -p Hi -n 2 --spec dspark", tmp);
  EXPECT_NE(ds.rc, 0);
  EXPECT_NE(ds.err.find("no DSpark draft head"), std::string::npos) << ds.err;
  CmdRun k = run_dsv4("run -m " + kNano.string() + " -p Hi -n 2 --spec mtp --draft-max 0", tmp);
  EXPECT_NE(k.rc, 0);
  EXPECT_NE(k.err.find("--draft-max must be in [1, 16]"), std::string::npos) << k.err;
  CmdRun bad = run_dsv4("run -m " + kNano.string() + " -p Hi -n 2 --spec eagle", tmp);
  EXPECT_NE(bad.rc, 0);
  EXPECT_NE(bad.err.find("--spec"), std::string::npos) << bad.err;
}

TEST_F(SpecCli, BenchReportsSpeedupAndAcceptance) {
  CmdRun r = run_dsv4("bench -m " + kNano.string() +
                          " --ctx 16 --decode-steps 3 --verify-max 2 --spec mtp --draft-max 2 --spec-tokens 16 --json",
                      tmp);
  ASSERT_EQ(r.rc, 0) << r.err;
  std::vector<nlohmann::json> lines;
  std::istringstream in(r.out);
  for (std::string l; std::getline(in, l);)
    if (!l.empty()) lines.push_back(nlohmann::json::parse(l));
  ASSERT_EQ(lines.size(), 2u) << r.out;
  ASSERT_EQ(lines[0]["verify_cost_ratio"].size(), 2u);
  EXPECT_GT(lines[0]["verify_cost_ratio"][0].get<double>(), 0);
  EXPECT_GT(lines[0]["mtp_step_cost_ratio"].get<double>(), 0);
  const auto& s = lines[1];
  EXPECT_EQ(s["spec"], "mtp");
  EXPECT_TRUE(s["identical"].get<bool>());
  EXPECT_GT(s["acceptance_rate"].get<double>(), 0);
  EXPECT_GT(s["tokens_per_step"].get<double>(), 1);
  EXPECT_GT(s["speedup"].get<double>(), 0);
}

}  // namespace
}  // namespace dsv4::test
