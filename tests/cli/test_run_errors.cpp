// A model that fails at run time (non-finite logits) ends `dsv4 run` with exit 1 and the message,
// never an abort.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <limits>

#include "cli/cli_util.h"

namespace dsv4::test {
namespace {

namespace fs = std::filesystem;
const fs::path kNano = fs::path(DSV4_TEST_DATA) / "../../models/dsv4-nano";

// A copy of dsv4-nano whose F32 tensor `name` holds NaN: every logit row becomes NaN.
fs::path nan_model(const fs::path& dir, const std::string& name) {
  fs::create_directories(dir);
  for (auto& e : fs::directory_iterator(kNano))
    if (e.is_regular_file()) fs::copy_file(e.path(), dir / e.path().filename(), fs::copy_options::overwrite_existing);
  const auto idx = nlohmann::json::parse(slurp_file(dir / "model.safetensors.index.json"));
  const fs::path shard = dir / idx["weight_map"][name].get<std::string>();
  std::string bytes = slurp_file(shard);
  uint64_t hlen = 0;
  std::memcpy(&hlen, bytes.data(), 8);
  const auto header = nlohmann::json::parse(bytes.substr(8, hlen));
  const auto& t = header.at(name);
  EXPECT_EQ(t["dtype"], "F32");
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (size_t o = t["data_offsets"][0].get<size_t>(); o < t["data_offsets"][1].get<size_t>(); o += 4)
    std::memcpy(bytes.data() + 8 + hlen + o, &nan, 4);
  std::ofstream(shard, std::ios::binary) << bytes;
  return dir;
}

TEST(RunErrors, NonFiniteLogitsExitOneWithTheMessage) {
  const fs::path tmp = make_temp_dir("run_errors");
  const fs::path model = nan_model(tmp / "nan", "hc_head_scale");
  CmdRun r = run_dsv4("run -m " + model.string() + " -p Hi -n 4 --temp 0", tmp);
  EXPECT_EQ(r.rc, 1) << r.err;
  EXPECT_NE(r.err.find("generation failed"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("NaN"), std::string::npos) << r.err;
  // The healthy model still answers through the same path.
  CmdRun ok = run_dsv4("run -m " + kNano.string() + " -p Hi -n 2 --temp 0", tmp);
  EXPECT_EQ(ok.rc, 0) << ok.err;
  fs::remove_all(tmp);
}

}  // namespace
}  // namespace dsv4::test
