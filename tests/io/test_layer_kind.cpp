// Layer kinds (architecture.md §2.3): derived from compress_ratios for the fixtures' configs and dsv4-nano;
// a ratio no kind has is rejected at parse time with the key and the layer named.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/mapped_file.h"
#include "io/config.h"
#include "io_test_util.h"

using namespace dsv4;
using namespace io_test;
using nlohmann::json;

namespace {

constexpr LayerKind SWA = LayerKind::SlidingWindow, CSA = LayerKind::CSA, HCA = LayerKind::HCA;

std::vector<LayerKind> kinds(const ModelConfig& c) {
  std::vector<LayerKind> v;
  for (int l = 0; l < c.n_layers + c.n_mtp_layers; ++l) v.push_back(c.layer_kind(l));
  return v;
}

json tiny_flash() {
  return json::parse(read_text_file(std::string(DSV4_TEST_DATA) + "/fixtures/tiny-flash/config.json"));
}

}  // namespace

TEST(LayerKind, RatiosMapBothWays) {
  for (LayerKind k : {SWA, CSA, HCA}) EXPECT_EQ(layer_kind_of_ratio(compress_ratio(k)), k);
  for (int r : {-4, 1, 2, 8, 64, 256}) EXPECT_FALSE(layer_kind_of_ratio(r).has_value()) << r;
  EXPECT_FALSE(has_compressor(SWA) || has_indexer(SWA) || reads_all_compressed(SWA));
  EXPECT_TRUE(has_compressor(CSA) && has_indexer(CSA) && overlapping_compressor(CSA) && !reads_all_compressed(CSA));
  EXPECT_TRUE(has_compressor(HCA) && !has_indexer(HCA) && !overlapping_compressor(HCA) && reads_all_compressed(HCA));
  EXPECT_STREQ(layer_kind_name(SWA), "SWA");
  EXPECT_STREQ(layer_kind_name(CSA), "CSA");
  EXPECT_STREQ(layer_kind_name(HCA), "HCA");
}

TEST(LayerKind, FixtureSchedules) {
  const std::string fx = std::string(DSV4_TEST_DATA) + "/fixtures/";
  EXPECT_EQ(kinds(load_config(fx + "tiny-flash")), (std::vector<LayerKind>{SWA, CSA, HCA, CSA, SWA}));
  EXPECT_EQ(kinds(load_config(fx + "tiny-pro")), (std::vector<LayerKind>{HCA, HCA, CSA, HCA, SWA}));
  EXPECT_EQ(kinds(load_config(fx + "tiny-0731")), (std::vector<LayerKind>{SWA, CSA, HCA, CSA, SWA, SWA, SWA}));
  EXPECT_EQ(kinds(load_config(std::string(DSV4_TEST_DATA) + "/../../models/dsv4-nano")),
            (std::vector<LayerKind>{SWA, CSA, HCA, CSA, SWA}));
}

TEST(LayerKind, UnknownRatioIsRejectedNamingKeyAndLayer) {
  json j = tiny_flash();
  j["compress_ratios"] = json::array({0, 4, 8, 4, 0});
  std::string msg = error_of([&] { parse_config(j.dump(), "ckpt/config.json"); });
  EXPECT_NE(msg.find("ckpt/config.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'compress_ratios[2]'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("layer 2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("not a known layer kind"), std::string::npos) << msg;

  j["compress_ratios"] = json::array({0, 4, 128, 4, 2});  // an MTP stage
  msg = error_of([&] { parse_config(j.dump(), "ckpt/config.json"); });
  EXPECT_NE(msg.find("'compress_ratios[4]'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("MTP stage 0"), std::string::npos) << msg;

  // A config built by hand (not parsed) still cannot yield a kind for an unknown ratio.
  ModelConfig c;
  c.compress_ratios = {0, 16};
  EXPECT_EQ(c.layer_kind(0), SWA);
  msg = error_of([&] { (void)c.layer_kind(1); });
  EXPECT_NE(msg.find("compress_ratios[1] = 16"), std::string::npos) << msg;
}
