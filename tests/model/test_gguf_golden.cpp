// A deepseek4 GGUF written from a tiny fixture the way llama.cpp's converter writes it (BF16 dense dequantised
// from FP8, MXFP4 experts repacked from FP4) runs to the official reference's golden logits within the same
// tiers as the safetensors folder; with Q8_0 dense weights it stays within tier 2.
#include <filesystem>

#include "io/gguf_writer.h"
#include "model/golden.h"

namespace dsv4::test {
namespace {

constexpr int64_t kP = 300;  // prefill length of schedule A

std::string gguf_of(const std::string& fixture, bool q8) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("dsv4_gguf_golden_" + std::to_string(::getpid()) + "_" + fixture + (q8 ? "_q8" : ""));
  return convert_fixture_to_gguf(fixture_dir(fixture), dir.string(), 1, q8);
}

class GgufGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(GgufGolden, Tier1WithoutAndTier2WithActivationQuantisation) {
  Golden g(GetParam());
  const std::string path = gguf_of(GetParam(), false);
  auto ids = g.i32("input_ids");
  {
    Model m(path, NumericsOptions::no_act_quant());
    Schedule a = run_schedule(m, ids, kP, false);
    expect_tier1(compare(a.logits, g.f32("NQ.A.logits"), m.config().vocab_size), GetParam() + " GGUF NQ.A");
  }
  Model m(path);
  Schedule a = run_schedule(m, ids, kP, false);
  expect_tier2(compare(a.logits, g.f32("A.logits"), m.config().vocab_size), GetParam() + " GGUF A");
  // The converter's BF16 dense weights keep the official activation round trip: as close as the folder.
  Model native(fixture_dir(GetParam()));
  Schedule n = run_schedule(native, ids, kP, false);
  const Agreement same = compare(a.logits, n.logits, m.config().vocab_size);
  EXPECT_LE(same.max_row, 2e-3) << "GGUF vs safetensors";
  std::filesystem::remove_all(std::filesystem::path(path).parent_path());
}

TEST_P(GgufGolden, Q8_0DenseStaysWithinTier2) {
  Golden g(GetParam());
  const std::string path = gguf_of(GetParam(), true);
  // Requantised weights are not the reference's: measured without the activation round trips, whose
  // rounding boundaries would turn the small weight error into chaotic flips on these random fixtures.
  Model m(path, NumericsOptions::no_act_quant());
  auto ids = g.i32("input_ids");
  Schedule a = run_schedule(m, ids, kP, false);
  expect_tier2(compare(a.logits, g.f32("NQ.A.logits"), m.config().vocab_size), GetParam() + " GGUF Q8_0 NQ.A");
  std::filesystem::remove_all(std::filesystem::path(path).parent_path());
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GgufGolden, ::testing::Values("tiny-flash", "tiny-pro"),
                         [](const auto& info) { return info.param == "tiny-flash" ? "Flash" : "Pro"; });

}  // namespace
}  // namespace dsv4::test
