// dsv4 quantize and imatrix on the bundled dsv4-nano: the quantised folder loads and runs, MXFP4 experts are
// the native FP4 values re-encoded without loss, the lower-bit formats cost more divergence from the native
// model, the importance matrix counts every token each linear saw, and bad inputs are refused by name.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/error.h"
#include "core/mapped_file.h"
#include "io/safetensors.h"
#include "runtime/imatrix.h"
#include "runtime/perplexity.h"
#include "runtime/quantize.h"
#include "runtime/test_util.h"

namespace fs = std::filesystem;

namespace dsv4 {
namespace {

struct TempFolder {
  fs::path p;
  explicit TempFolder(const std::string& tag = "out")
      : p(fs::temp_directory_path() / ("dsv4_quant_" + std::to_string(::getpid()) + "_" +
                                       ::testing::UnitTest::GetInstance()->current_test_info()->name() + "_" + tag)) {
    fs::remove_all(p);
  }
  ~TempFolder() {
    std::error_code ec;
    fs::remove_all(p, ec);
  }
  std::string str() const { return p.string(); }
};

const std::string& text() {
  static const std::string t = read_text_file(kNano + "/heldout.txt").substr(0, 8000);
  return t;
}

PerplexityResult against_native(const std::string& dir) {
  Model q(dir);
  return perplexity(q, nano().tok, text(), 256, {}, &nano().model);
}

TEST(Quantize, Mxfp4ExpertsAreTheNativeFp4WeightsReencoded) {
  TempFolder out;
  const QuantizeReport r = quantize_checkpoint(kNano, out.str(), {BlockFormat::MXFP4, BlockFormat::None, ""});
  const ModelConfig cfg = nano().model.config();
  EXPECT_EQ(r.tensors_encoded, int64_t(cfg.n_layers) * cfg.n_routed_experts * 3 +
                                   (cfg.n_mtp_layers ? cfg.n_routed_experts * 3 : 0));
  EXPECT_EQ(r.tensors_fallback, 0);
  const Checkpoint ck(out.str());
  const TensorInfo& w1 = ck.get("layers.0.ffn.experts.0.w1.weight");
  EXPECT_EQ(w1.format, BlockFormat::MXFP4);
  EXPECT_EQ(ck.find("layers.0.ffn.experts.0.w1.scale"), nullptr);
  EXPECT_TRUE(fs::exists(out.p / "tokenizer.json"));
  // Same weights, another accumulation order: the distributions agree to rounding.
  const PerplexityResult p = against_native(out.str());
  EXPECT_LT(p.mean_kl, 1e-9);
  EXPECT_GT(p.top1_agreement, 0.999);
  EXPECT_NEAR(p.mean_ce_nats, p.base_mean_ce_nats, 1e-5);
}

TEST(Quantize, LowerBitsDivergeMore) {
  double kl[3];
  int i = 0;
  for (BlockFormat f : {BlockFormat::Q8_0, BlockFormat::Q4_K, BlockFormat::Q2_K}) {
    TempFolder out;
    const QuantizeReport r = quantize_checkpoint(kNano, out.str(), {f, BlockFormat::Q8_0, ""});
    EXPECT_GT(r.bytes_out, 0u);
    EXPECT_LT(r.bytes_out, r.bytes_in * 2);
    const PerplexityResult p = against_native(out.str());
    std::printf("%s experts + q8_0 dense: CE %.5f (native %.5f), mean KL %.6f, top-1 %.4f\n",
                std::string(block_name(f)).c_str(), p.mean_ce_nats, p.base_mean_ce_nats, p.mean_kl, p.top1_agreement);
    kl[i++] = p.mean_kl;
  }
  EXPECT_GT(kl[0], 0);
  EXPECT_LT(kl[0], kl[1]);
  EXPECT_LT(kl[1], kl[2]);
  EXPECT_LT(kl[0], 0.01);
}

TEST(Imatrix, CountsEveryTokenEachLinearSaw) {
  const ImportanceMatrix m = collect_imatrix(nano().model, nano().tok, text(), 256);
  const int64_t n = int64_t(nano().tok.encode(text(), false).size());
  const int64_t windows = (n + 254) / 255;
  const ModelConfig& cfg = nano().model.config();
  // Dense linears see every position of every window (scored tokens plus one BOS each).
  EXPECT_EQ(m.count.at("layers.0.attn.wq_a.weight"), n + windows);
  EXPECT_EQ(m.mean_sq.at("layers.0.attn.wq_a.weight").size(), size_t(cfg.dim));
  // A layer's routed experts share its positions k times over.
  int64_t routed = 0;
  for (int e = 0; e < cfg.n_routed_experts; ++e) {
    auto it = m.count.find("layers.1.ffn.experts." + std::to_string(e) + ".w1.weight");
    if (it != m.count.end()) routed += it->second;
  }
  EXPECT_EQ(routed, (n + windows) * cfg.n_activated_experts);
  for (const auto& [name, v] : m.mean_sq)
    for (float x : v) ASSERT_GE(x, 0.0f) << name;

  TempFolder dir("imatrix");
  fs::create_directories(dir.p);
  const std::string path = (dir.p / "nano.imatrix").string();
  save_imatrix(m, path);
  const ImportanceMatrix back = load_imatrix(path);
  EXPECT_EQ(back.mean_sq, m.mean_sq);
  EXPECT_EQ(back.count, m.count);

  // Quantising with it weights every expert that saw a token.
  TempFolder out;
  const QuantizeReport r = quantize_checkpoint(kNano, out.str(), {BlockFormat::Q2_K, BlockFormat::None, path});
  EXPECT_GT(r.imatrix_rows_weighted, 0);
  const PerplexityResult p = against_native(out.str());
  EXPECT_LT(p.mean_kl, 1.0);
}

TEST(Quantize, RefusesWhatItCannotDo) {
  TempFolder out;
  EXPECT_THROW(quantize_checkpoint(kNano, kNano, {BlockFormat::Q8_0, BlockFormat::None, ""}), Error);
  try {
    quantize_checkpoint(kNano, out.str(), {BlockFormat::Q8_0, BlockFormat::None, kNano + "/config.json"});
    FAIL() << "a config.json is no importance matrix";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("config.json"), std::string::npos) << e.what();
  }
  EXPECT_EQ(block_fallback(BlockFormat::Q4_K, 128), BlockFormat::Q4_0);
  EXPECT_EQ(block_fallback(BlockFormat::Q6_K, 128), BlockFormat::Q8_0);
  EXPECT_EQ(block_fallback(BlockFormat::Q4_K, 512), BlockFormat::Q4_K);
  EXPECT_EQ(block_fallback(BlockFormat::Q8_0, 48), BlockFormat::None);
}

}  // namespace
}  // namespace dsv4
