// --ram-budget from the command line: run streams the experts and says the same as without; a budget
// below the dense weights or not a size is refused with the reason; inspect shows the plan; bench
// reports the streaming figures.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>

#include "cli/cli_util.h"
#include "runtime/ram_budget.h"

namespace dsv4::test {
namespace {

namespace fs = std::filesystem;
const fs::path kNano = fs::path(DSV4_TEST_DATA) / "../../models/dsv4-nano";

struct RamBudgetCli : ::testing::Test {
  void SetUp() override {
    tmp = make_temp_dir("ram_budget");
    ::setenv("DSV4_CACHE_DIR", (tmp / "cache").c_str(), 1);
    Model m(kNano.string());
    plan = plan_weights(m);
  }
  void TearDown() override {
    ::unsetenv("DSV4_CACHE_DIR");
    fs::remove_all(tmp);
  }
  // A budget that holds the dense weights and a quarter of the experts.
  std::string small_budget() const {
    return std::to_string(std::max(plan.min_budget, plan.dense + plan.n_experts / 4 * plan.expert_slot));
  }
  fs::path tmp;
  WeightPlan plan;
};

TEST_F(RamBudgetCli, RunStreamsAndSaysTheSame) {
  const std::string args = "run -m " + kNano.string() + " -p 'Once upon a time' -n 24 --temp 0";
  CmdRun mapped = run_dsv4(args, tmp);
  ASSERT_EQ(mapped.rc, 0) << mapped.err;
  CmdRun streamed = run_dsv4(args + " --ram-budget " + small_budget(), tmp);
  ASSERT_EQ(streamed.rc, 0) << streamed.err;
  EXPECT_EQ(streamed.out, mapped.out);
  EXPECT_NE(streamed.err.find("streamed through"), std::string::npos) << streamed.err;
  CmdRun off = run_dsv4(args + " --ram-budget off", tmp);
  ASSERT_EQ(off.rc, 0) << off.err;
  EXPECT_EQ(off.out, mapped.out);
  EXPECT_EQ(off.err.find("streamed through"), std::string::npos) << off.err;
}

TEST_F(RamBudgetCli, RefusesABudgetBelowTheDenseWeightsAndGarbage) {
  CmdRun low = run_dsv4("run -m " + kNano.string() + " -p Hi -n 2 --ram-budget 4K", tmp);
  EXPECT_NE(low.rc, 0);
  EXPECT_NE(low.err.find("is below the " + format_bytes(plan.min_budget)), std::string::npos) << low.err;
  CmdRun bad = run_dsv4("run -m " + kNano.string() + " -p Hi -n 2 --ram-budget lots", tmp);
  EXPECT_NE(bad.rc, 0);
  EXPECT_NE(bad.err.find("--ram-budget 'lots' is not a size"), std::string::npos) << bad.err;
}

TEST_F(RamBudgetCli, InspectShowsWhatStaysAndWhatStreams) {
  CmdRun r = run_dsv4("inspect -m " + kNano.string() + " --ram-budget " + small_budget(), tmp);
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("routed experts streamed through"), std::string::npos) << r.out;
  CmdRun low = run_dsv4("inspect -m " + kNano.string() + " --ram-budget 4K", tmp);
  EXPECT_NE(low.out.find("below the minimum"), std::string::npos) << low.out;
}

TEST_F(RamBudgetCli, BenchReportsTheStreamingFigures) {
  CmdRun r = run_dsv4("bench -m " + kNano.string() + " --ctx 16 --decode-steps 4 --json --ram-budget " + small_budget(), tmp);
  ASSERT_EQ(r.rc, 0) << r.err;
  auto j = nlohmann::json::parse(r.out.substr(0, r.out.find('\n')));
  for (const char* k : {"expert_cache_hit_rate", "disk_bytes_per_token", "disk_read_bandwidth_bytes_per_s",
                        "stream_roofline_ratio", "process_disk_bytes_per_token"})
    ASSERT_TRUE(j.contains(k)) << k << " missing in " << r.out;
  EXPECT_GE(j["expert_cache_hit_rate"].get<double>(), 0.0);
  EXPECT_LE(j["expert_cache_hit_rate"].get<double>(), 1.0);
  EXPECT_GT(j["disk_read_bandwidth_bytes_per_s"].get<double>(), 0.0);
}

}  // namespace
}  // namespace dsv4::test
