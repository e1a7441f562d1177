// dsv4 inspect / logits / generate / make-model / bench end to end.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "cli/cli_util.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "tokenizer/byte_level.h"

namespace dsv4::test {
namespace {

namespace fs = std::filesystem;
const std::string kFlash = std::string(DSV4_TEST_DATA) + "/fixtures/tiny-flash";
const fs::path kNano = fs::path(DSV4_TEST_DATA) / "../../models/dsv4-nano";

// A byte-level tokenizer.json that fits the 512-row fixtures: BOS 0, EOS 1 (unless !eos), bytes at 2..257.
std::string tiny_tokenizer(bool eos = true) {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[tok::byte_level::map(std::string(1, char(b)))] = b + 2;
  nlohmann::json added = {{{"id", 0}, {"content", "<｜begin▁of▁sentence｜>"}, {"special", true}}};
  if (eos) added.push_back({{"id", 1}, {"content", "<｜end▁of▁sentence｜>"}, {"special", true}});
  return nlohmann::json{{"added_tokens", added},
                        {"pre_tokenizer", {{"type", "ByteLevel"}, {"use_regex", false}}},
                        {"decoder", {{"type", "ByteLevel"}}},
                        {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}}}}
      .dump();
}

// `src` as a folder of symlinks (the Hugging Face cache layout), minus the files in `skip`.
fs::path linked_copy(const fs::path& src, const fs::path& dir, std::initializer_list<std::string> skip = {}) {
  fs::create_directories(dir);
  for (auto& e : fs::directory_iterator(src))
    if (e.is_regular_file() && std::find(skip.begin(), skip.end(), e.path().filename()) == skip.end())
      fs::create_symlink(fs::absolute(e.path()), dir / e.path().filename());
  return dir;
}

class ModelCli : public ::testing::Test {
 protected:
  void SetUp() override { tmp_ = make_temp_dir("model_cli"); }
  void TearDown() override { fs::remove_all(tmp_); }
  fs::path tmp_;
};

TEST_F(ModelCli, InspectReportsScheduleAndValidation) {
  const fs::path dir = linked_copy(kFlash, tmp_ / "flash");
  std::ofstream(dir / "tokenizer.json") << tiny_tokenizer();
  CmdRun r = run_dsv4("inspect -m " + dir.string(), tmp_);
  ASSERT_EQ(r.rc, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("0:SWA+hash 1:CSA 2:HCA128 3:CSA 4:MTP0"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("FP4 (I8 packed)"), std::string::npos);
  EXPECT_NE(r.out.find("tokenizer: 258 ids, BOS 0 \"<｜begin▁of▁sentence｜>\", EOS 1 \"<｜end▁of▁sentence｜>\""),
            std::string::npos) << r.out;
  EXPECT_NE(r.out.find("validation: OK"), std::string::npos);
}

TEST_F(ModelCli, InspectChecksTheTokenizer) {
  CmdRun r = run_dsv4("inspect -m " + kNano.string(), tmp_);
  ASSERT_EQ(r.rc, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("EOS 1 \"<｜end▁of▁sentence｜>\""), std::string::npos) << r.out;
  // Missing, garbage, without the model's EOS: exit 2 with the reason, like an invalid checkpoint.
  r = run_dsv4("inspect -m " + kFlash, tmp_);
  EXPECT_EQ(r.rc, 2) << r.out;
  EXPECT_NE(r.out.find("tokenizer: FAILED"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("no tokenizer.json"), std::string::npos) << r.out;
  const fs::path dir = linked_copy(kFlash, tmp_ / "flash");
  const std::pair<std::string, std::string> cases[] = {
      {"{\"model\": garbage", "malformed JSON"},
      {"[]", "not a JSON object"},
      {tiny_tokenizer(false), "eos_token_id = 1 is not a token of tokenizer.json"},
      {slurp_file(kNano / "tokenizer.json"), "beyond config.json vocab_size = 512"},
  };
  for (auto& [text, why] : cases) {
    std::ofstream(dir / "tokenizer.json", std::ios::trunc) << text;
    r = run_dsv4("inspect -m " + dir.string(), tmp_);
    EXPECT_EQ(r.rc, 2) << why << "\n" << r.out;
    EXPECT_NE(r.out.find("validation: FAILED"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find(why), std::string::npos) << r.out;
  }
}

TEST_F(ModelCli, NonsenseConfigIsRejectedAtLoadNamingTheKey) {
  // rope_theta -1 used to load and produce NaN logits.
  const fs::path dir = linked_copy(kNano, tmp_ / "nano", {"config.json"});
  auto cfg = nlohmann::json::parse(slurp_file(kNano / "config.json"));
  cfg["rope_theta"] = -1;
  std::ofstream(dir / "config.json") << cfg.dump();
  CmdRun r = run_dsv4("run -m " + dir.string() + " -p Hi -n 2 --temp 0", tmp_);
  EXPECT_EQ(r.rc, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("'rope_theta'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find((dir / "config.json").string()), std::string::npos) << r.err;
  r = run_dsv4("inspect -m " + dir.string(), tmp_);
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("'rope_theta'"), std::string::npos) << r.err;
  // An EOS outside the vocabulary, likewise.
  cfg["rope_theta"] = 10000;
  cfg["eos_token_id"] = 4096;
  std::ofstream(dir / "config.json", std::ios::trunc) << cfg.dump();
  r = run_dsv4("run -m " + dir.string() + " -p Hi -n 2 --temp 0", tmp_);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("'eos_token_id'"), std::string::npos) << r.err;
}

TEST_F(ModelCli, InspectFailsOnAMissingTensor) {
  // A copy whose index no longer lists one tensor: binding must name it and exit non-zero.
  fs::path bad = tmp_ / "bad";
  fs::create_directories(bad);
  for (auto& e : fs::directory_iterator(kFlash))
    if (e.is_regular_file()) fs::copy_file(e.path(), bad / e.path().filename());
  auto idx = nlohmann::json::parse(slurp_file(bad / "model.safetensors.index.json"));
  idx["weight_map"].erase("layers.1.attn.indexer.weights_proj.weight");
  std::ofstream(bad / "model.safetensors.index.json") << idx.dump();
  CmdRun r = run_dsv4("inspect -m " + bad.string(), tmp_);
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.out.find("missing tensors (1):"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("layers.1.attn.indexer.weights_proj.weight"), std::string::npos);
}

TEST_F(ModelCli, InspectGroupsTensorsBySchemaRoleAndWarnsAboutUnknownOnes) {
  const fs::path dir = linked_copy(kFlash, tmp_ / "flash", {"model.safetensors.index.json"});
  std::ofstream(dir / "tokenizer.json") << tiny_tokenizer();
  CmdRun r = run_dsv4("inspect -m " + dir.string(), tmp_);
  ASSERT_EQ(r.rc, 0) << r.out << r.err;
  for (const char* group : {"tensors by schema role:", "routed experts", "embedding", "MTP block: dense"})
    EXPECT_NE(r.out.find(group), std::string::npos) << group << "\n" << r.out;
  EXPECT_EQ(r.out.find("warning:"), std::string::npos) << r.out;
  // A tensor the schema does not know: a warning naming it, and validation fails on it.
  write_safetensors((dir / "extra.safetensors").string(), {{"layers.0.attn.bogus", DType::F32, {2}, std::vector<uint8_t>(8)}});
  auto idx = nlohmann::json::parse(slurp_file(kFlash / fs::path("model.safetensors.index.json")));
  idx["weight_map"]["layers.0.attn.bogus"] = "extra.safetensors";
  std::ofstream(dir / "model.safetensors.index.json") << idx.dump();
  r = run_dsv4("inspect -m " + dir.string(), tmp_);
  EXPECT_EQ(r.rc, 2) << r.out;
  EXPECT_NE(r.out.find("warning: tensor 'layers.0.attn.bogus' is not in the schema"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("unexpected tensors (1):"), std::string::npos) << r.out;
}

TEST_F(ModelCli, LogitsMatchTheReferenceThroughTheCommandLine) {
  // Schedule C of the fixture (prompt 3, 20 teacher-forced steps), fp32 mode, with MTP.
  SafetensorsFile g(kFlash + "/golden.safetensors");
  auto& ids_t = g.tensors().at("C.input_ids");
  std::vector<int32_t> ids(size_t(ids_t.numel()));
  std::memcpy(ids.data(), ids_t.data, ids.size() * 4);
  std::ofstream f(tmp_ / "ids.txt");
  for (auto id : ids) f << id << " ";
  f.close();
  const int64_t P = int64_t(ids.size()) - 20;
  CmdRun r = run_dsv4("logits -m " + kFlash + " --ids-file " + (tmp_ / "ids.txt").string() + " --prefill " +
                       std::to_string(P) + " --no-act-quant -t 2 -o " + (tmp_ / "out.npy").string() + " --mtp " +
                       (tmp_ / "mtp.npy").string(),
                   tmp_);
  ASSERT_EQ(r.rc, 0) << r.err;
  for (auto [file, key, rows] : {std::tuple{"out.npy", "NQ.C.logits", 21}, std::tuple{"mtp.npy", "NQ.C.mtp_logits", 20}}) {
    std::vector<int64_t> shape;
    auto got = read_npy_f32((tmp_ / file).string(), shape);
    ASSERT_EQ(shape, (std::vector<int64_t>{rows, 512})) << file;
    auto& ref = g.tensors().at(key);
    const float* want = reinterpret_cast<const float*>(ref.data);
    for (int64_t row = 0; row < rows; ++row) {
      double mx = 0, mean = 0, var = 0;
      for (int v = 0; v < 512; ++v) mean += want[row * 512 + v] / 512.0;
      for (int v = 0; v < 512; ++v) {
        var += std::pow(want[row * 512 + v] - mean, 2) / 512.0;
        mx = std::max(mx, double(std::fabs(got[size_t(row * 512 + v)] - want[row * 512 + v])));
      }
      EXPECT_LE(mx / std::sqrt(var), 2e-4) << file << " row " << row;
    }
  }
}

TEST_F(ModelCli, BadArgumentsGiveClearErrors) {
  CmdRun r = run_dsv4("logits -m " + kFlash + " --ids-file /nonexistent --prefill 1 -o x.npy", tmp_);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("/nonexistent"), std::string::npos) << r.err;
  std::ofstream(tmp_ / "ids.txt") << "0 5 abc";
  r = run_dsv4("logits -m " + kFlash + " --ids-file " + (tmp_ / "ids.txt").string() + " --prefill 1 -o x.npy", tmp_);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("'abc' is not a token id"), std::string::npos) << r.err;
  r = run_dsv4("generate -m " + kFlash + " --ids \"0 99999\" -n 2", tmp_);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("outside the vocabulary"), std::string::npos) << r.err;
  r = run_dsv4("inspect -m " + (tmp_ / "nothing").string(), tmp_);
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("does not exist"), std::string::npos) << r.err;
}

TEST_F(ModelCli, GenerateIsDeterministicAcrossThreads) {
  CmdRun a = run_dsv4("generate -m " + kFlash + " --ids \"0 17 42 99 7\" -n 12 -t 1", tmp_);
  CmdRun b = run_dsv4("generate -m " + kFlash + " --ids \"0 17 42 99 7\" -n 12 -t 2", tmp_);
  ASSERT_EQ(a.rc, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
  EXPECT_EQ(std::count(a.out.begin(), a.out.end(), ' '), 11);
}

TEST_F(ModelCli, MakeModelWritesALoadableCheckpoint) {
  const auto dir = (tmp_ / "rand").string();
  std::ofstream(tmp_ / "tok.json") << tiny_tokenizer();
  CmdRun r = run_dsv4("make-model --like tiny --layers 3 --mtp --seed 5 --tokenizer " + (tmp_ / "tok.json").string() +
                          " -o " + dir,
                      tmp_);
  ASSERT_EQ(r.rc, 0) << r.err;
  r = run_dsv4("inspect -m " + dir, tmp_);
  ASSERT_EQ(r.rc, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("0:CSA+hash 1:HCA128 2:CSA 3:MTP0"), std::string::npos) << r.out;
  // Random, not constant: two seeds give different weights.
  CmdRun r2 = run_dsv4("make-model --like tiny --layers 1 --seed 6 -o " + (tmp_ / "r2").string(), tmp_);
  ASSERT_EQ(r2.rc, 0);
  Checkpoint a(dir), b((tmp_ / "r2").string());
  auto& ta = a.get("layers.0.attn.wq_a.weight");
  auto& tb = b.get("layers.0.attn.wq_a.weight");
  EXPECT_NE(std::memcmp(ta.data, tb.data, ta.nbytes), 0);
  std::vector<uint8_t> bytes(ta.data, ta.data + ta.nbytes);
  std::sort(bytes.begin(), bytes.end());
  EXPECT_GT(std::unique(bytes.begin(), bytes.end()) - bytes.begin(), 100);  // many distinct FP8 codes
}

TEST_F(ModelCli, BenchReportsRooflineRatiosAndPhases) {
  CmdRun r = run_dsv4("bench -m " + kFlash + " --ctx 24 --decode-steps 2 --json --profile -t 2", tmp_);
  ASSERT_EQ(r.rc, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["ctx"], 24);
  for (const char* key : {"decode_tokens_per_s", "decode_bytes_per_token", "read_bandwidth_bytes_per_s",
                          "decode_roofline_ratio", "prefill_tokens_per_s", "prefill_flops_per_token",
                          "peak_flops_per_s", "prefill_roofline_ratio", "fma_peak_flops_per_s",
                          "prefill_fma_roofline_ratio"}) {
    ASSERT_TRUE(j.contains(key)) << key;
    EXPECT_GT(j[key].get<double>(), 0.0) << key;
    EXPECT_TRUE(std::isfinite(j[key].get<double>())) << key;
  }
  // The roof is the peak of the instructions the quantised linears ran on.
  ASSERT_TRUE(j["dot"] == "bf16" || j["dot"] == "fp32") << j["dot"];
  EXPECT_EQ(j["peak_flops_per_s"], j["dot"] == "bf16" ? j["bf16_peak_flops_per_s"] : j["fma_peak_flops_per_s"]);
  // Every phase of the forward pass is timed, in prefill and in decode.
  for (const char* phase : {"hc_pre_norm", "attn.q_kv", "attn.compressor", "attn.indexer", "attn.core", "attn.out",
                            "hc_post", "moe.route", "moe.experts", "moe.shared", "head"}) {
    EXPECT_GT(j["prefill_phase_s"].value(phase, 0.0), 0.0) << phase;
    EXPECT_GT(j["decode_phase_s"].value(phase, 0.0), 0.0) << phase;
  }
}

// bench --batch: one line per batch size; the batch reads the dense weights once, so bytes per step
// grow slower than B; distinct experts per layer lie between k and min(E, B·k); FLOPs grow as B.
TEST_F(ModelCli, BenchBatchReportsTheBindingRoofPerBatchSize) {
  CmdRun r = run_dsv4("bench -m " + kNano.string() + " --ctx 40 --batch 1,4,16 --decode-steps 2 --json -t 2", tmp_);
  ASSERT_EQ(r.rc, 0) << r.err;
  std::vector<nlohmann::json> rows;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) rows.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(rows.size(), 3u) << r.out;
  const auto cfg = nlohmann::json::parse(std::ifstream(kNano / "config.json"));
  const double k = cfg["num_experts_per_tok"], E = cfg["n_routed_experts"];
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& j = rows[i];
    const int B = j["batch"];
    EXPECT_EQ(B, std::vector<int>({1, 4, 16})[i]);
    EXPECT_EQ(j["ctx"], 40);
    EXPECT_GE(j["experts_per_layer"].get<double>(), k - 1e-9);
    EXPECT_LE(j["experts_per_layer"].get<double>(), std::min(E, B * k) + 1e-9);
    EXPECT_GT(j["tokens_per_s"].get<double>(), 0.0);
    EXPECT_GT(j["roofline_ratio"].get<double>(), 0.0);
    EXPECT_TRUE(j["binding"] == "bandwidth" || j["binding"] == "compute");
    EXPECT_NEAR(j["flops_per_step"].get<double>(), B * rows[0]["flops_per_step"].get<double>(),
                1e-9 * j["flops_per_step"].get<double>());
    if (i > 0) {
      EXPECT_GT(j["bytes_per_step"].get<double>(), rows[i - 1]["bytes_per_step"].get<double>());
      EXPECT_LT(j["bytes_per_step"].get<double>(), B * rows[0]["bytes_per_step"].get<double>());
    }
  }
  CmdRun bad = run_dsv4("bench -m " + kNano.string() + " --ctx 8 --batch 0", tmp_);
  EXPECT_NE(bad.rc, 0);
  EXPECT_NE(bad.err.find("--batch sizes must be positive"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace dsv4::test
