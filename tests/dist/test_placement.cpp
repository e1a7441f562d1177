#include <gtest/gtest.h>

#include "core/error.h"
#include "dist/placement.h"

using namespace dsv4::dist;

namespace {

PlacementInput input(int ranks, int E = 64, int layers = 4) {
  PlacementInput in;
  in.ranks = ranks;
  in.n_experts = E;
  in.n_activated = 6;
  in.dim = 4096;
  for (int l = 0; l < layers; ++l) in.layers.push_back(l);
  in.expert_bytes = 10 << 20;
  in.dense_bytes = uint64_t(E) * layers * in.expert_bytes / 4;  // a fifth of the model
  return in;
}

}  // namespace

TEST(Placement, EqualSharesCountRankZerosDenseWeights) {
  const PlacementInput in = input(4);
  const Placement p = place_experts(in);
  uint64_t total = 0, experts = 0;
  for (int r = 0; r < 4; ++r) total += p.bytes[size_t(r)], experts += p.experts[size_t(r)];
  EXPECT_EQ(experts, 256u);
  EXPECT_EQ(total, in.dense_bytes + 256 * in.expert_bytes);
  // Every rank holds a quarter of the model to within one expert per layer.
  for (int r = 0; r < 4; ++r) EXPECT_NEAR(double(p.bytes[size_t(r)]), double(total) / 4, 4.0 * in.expert_bytes) << r;
  EXPECT_LT(p.experts[0], p.experts[1]);
  // Each layer's experts are spread over the ranks, not one layer per rank.
  for (int l = 0; l < 4; ++l) {
    std::vector<int> per(4, 0);
    for (int e = 0; e < 64; ++e) ++per[size_t(p.owner_of(l, e))];
    for (int r = 1; r < 4; ++r) EXPECT_GE(per[size_t(r)], 15) << "layer " << l << " rank " << r;
  }
  EXPECT_EQ(p.owner_of(9, 0), -1);
  EXPECT_EQ(p.owner_of(0, 64), -1);
}

TEST(Placement, BudgetsSetTheSharesAndTooLittleIsAnError) {
  PlacementInput in = input(2);
  const uint64_t total = in.dense_bytes + 256 * in.expert_bytes;
  in.budget = {total / 4 + (64 << 20), total};  // rank 1 has four times the room
  const Placement p = place_experts(in);
  EXPECT_LE(p.bytes[0], in.budget[0] + 4 * in.expert_bytes);
  EXPECT_GT(p.experts[1], 3 * p.experts[0]);
  in.budget = {total / 4, total / 2};
  try {
    place_experts(in);
    FAIL() << "budgets below the model were accepted";
  } catch (const dsv4::Error& e) {
    EXPECT_NE(std::string(e.what()).find("add up to"), std::string::npos) << e.what();
  }
  in.budget = {in.dense_bytes / 2, total};
  EXPECT_THROW(place_experts(in), dsv4::Error);  // rank 0 cannot hold the dense weights
  in.budget = {total, 0};
  EXPECT_THROW(place_experts(in), dsv4::Error);  // some ranks with, some without
}

TEST(Placement, RoutingCountsBalanceTheLoadWithinALayer) {
  PlacementInput in = input(2, 16, 1);
  in.dense_bytes = 0;
  in.load.assign(16, 1.0f);
  for (int e = 0; e < 4; ++e) in.load[size_t(e)] = 100.0f;  // four hot experts, adjacent ids
  const Placement p = place_experts(in);
  int hot0 = 0;
  for (int e = 0; e < 4; ++e) hot0 += p.owner_of(0, e) == 0;
  EXPECT_EQ(hot0, 2);  // two hot experts on each rank
  EXPECT_EQ(p.experts[0], 8u);
}

TEST(Placement, WireEstimateFollowsTheOwners) {
  PlacementInput in = input(2, 64, 1);
  in.dense_bytes = 0;
  const Placement p = place_experts(in);  // 32 experts each
  const WireEstimate w = estimate_wire(p, in);
  EXPECT_NEAR(w.outputs_received, 3.0, 1e-9);  // half of 6 picks are remote
  // P(at least one of 6 distinct picks among rank 1's 32 of 64).
  double miss = 1;
  for (int i = 0; i < 6; ++i) miss *= double(32 - i) / double(64 - i);
  EXPECT_NEAR(w.remote_ranks, 1 - miss, 1e-9);
  EXPECT_NEAR(w.bytes, w.rows_sent * 8192 + w.outputs_received * (8192 + 8), 1e-6);
  EXPECT_NE(describe_placement(p, in).find("rank 1"), std::string::npos);
}
