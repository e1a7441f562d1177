// Values that parse but cannot make a sane model (issue 13): each is rejected at load time with the
// key and the file named. Every legitimate config we know of (fixtures, dsv4-nano, the published full-size
// V4-Flash / V4-Pro / Base / 0731 values) must still load.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/mapped_file.h"
#include "io/config.h"
#include "io_test_util.h"

using namespace dsv4;
using namespace io_test;
using nlohmann::json;

namespace {

namespace fs = std::filesystem;

json tiny_flash() {
  return json::parse(read_text_file(std::string(DSV4_TEST_DATA) + "/fixtures/tiny-flash/config.json"));
}

std::string error_for(const json& j) {
  return error_of([&] { parse_config(j.dump(), "ckpt/config.json"); });
}

// The shipped V4-Flash config (architecture.md §1.3, §2.1).
json flash_full() {
  json j = tiny_flash();
  j.update(json{{"vocab_size", 129280}, {"hidden_size", 4096}, {"num_hidden_layers", 43},
                {"num_attention_heads", 64}, {"head_dim", 512}, {"qk_rope_head_dim", 64}, {"q_lora_rank", 1024},
                {"o_lora_rank", 1024}, {"o_groups", 8}, {"sliding_window", 128}, {"index_n_heads", 64},
                {"index_head_dim", 128}, {"index_topk", 512}, {"n_routed_experts", 256},
                {"num_experts_per_tok", 6}, {"moe_intermediate_size", 2048}, {"num_hash_layers", 3},
                {"routed_scaling_factor", 1.5}, {"swiglu_limit", 10.0}});
  json ratios = json::array({0, 0});
  for (int i = 0; i < 20; ++i) ratios.insert(ratios.end(), {4, 128});
  ratios.insert(ratios.end(), {4, 0});
  j["compress_ratios"] = ratios;
  return j;
}

}  // namespace

TEST(ConfigValues, EveryKnownGoodConfigLoads) {
  std::vector<fs::path> files;
  const fs::path data = DSV4_TEST_DATA;
  for (const fs::path& root : {data / "fixtures", data / "../../../shared/fixtures"})
    if (fs::is_directory(root))
      for (auto& e : fs::directory_iterator(root))
        if (fs::exists(e.path() / "config.json")) files.push_back(e.path() / "config.json");
  files.push_back(fs::path(DSV4_TEST_DATA) / "../../models/dsv4-nano/config.json");
  ASSERT_GE(files.size(), 4u);
  for (auto& f : files) EXPECT_NO_THROW(load_config(f.parent_path().string())) << f;

  json flash = flash_full();
  EXPECT_NO_THROW(parse_config(flash.dump(), "flash")) << error_for(flash);
  json base = flash;  // Base: no expert_dtype key, same geometry
  base.erase("expert_dtype");
  EXPECT_NO_THROW(parse_config(base.dump(), "base"));
  json pro = flash;
  pro.update(json{{"hidden_size", 7168}, {"num_hidden_layers", 61}, {"num_attention_heads", 128},
                  {"q_lora_rank", 1536}, {"o_groups", 16}, {"index_topk", 1024}, {"n_routed_experts", 384},
                  {"moe_intermediate_size", 3072}, {"routed_scaling_factor", 2.5}});
  json ratios = json::array({128, 128});
  for (int i = 0; i < 29; ++i) ratios.insert(ratios.end(), {4, 128});
  ratios.insert(ratios.end(), {4, 0});
  pro["compress_ratios"] = ratios;
  EXPECT_NO_THROW(parse_config(pro.dump(), "pro")) << error_for(pro);
  json v0731 = flash;
  v0731["compress_ratios"].insert(v0731["compress_ratios"].end(), {0, 0});
  v0731.update(json{{"dspark_block_size", 5}, {"dspark_markov_rank", 256}, {"dspark_noise_token_id", 128799},
                    {"dspark_target_layer_ids", {40, 41, 42}}});
  EXPECT_NO_THROW(parse_config(v0731.dump(), "0731")) << error_for(v0731);
  // Whole numbers written as floats, and swiglu_limit 0 (no clamp), are fine.
  json j = tiny_flash();
  j["rope_scaling"]["original_max_position_embeddings"] = 65536.0;
  j["swiglu_limit"] = 0;
  j["rope_scaling"]["factor"] = 1;
  EXPECT_NO_THROW(parse_config(j.dump(), "x")) << error_for(j);
}

TEST(ConfigValues, NegativeRopeThetaIsRejectedNamingKeyAndFile) {
  // This config used to load and give NaN logits.
  json j = tiny_flash();
  j["rope_theta"] = -1;
  const std::string msg = error_for(j);
  EXPECT_CONTAINS(msg, "'rope_theta'");
  EXPECT_CONTAINS(msg, "ckpt/config.json");
}

TEST(ConfigValues, NonsenseValuesNameTheKey) {
  struct Case {
    const char* key;  // "a.b" sets a nested key
    json value;
    const char* named;
  };
  const Case cases[] = {
      {"rope_theta", 0, "'rope_theta'"},
      {"rope_theta", 1, "'rope_theta'"},
      {"rope_theta", 0.5, "'rope_theta'"},
      {"compress_rope_theta", -160000, "'compress_rope_theta'"},
      {"compress_rope_theta", 0, "'compress_rope_theta'"},
      {"rope_scaling.factor", 0, "'rope_scaling.factor'"},
      {"rope_scaling.factor", -16, "'rope_scaling.factor'"},
      {"rope_scaling.factor", 0.5, "'rope_scaling.factor'"},
      {"rope_scaling.beta_fast", 0, "'rope_scaling.beta_fast'"},
      {"rope_scaling.beta_slow", -1, "'rope_scaling.beta_slow'"},
      {"rope_scaling.beta_fast", 1, "'rope_scaling.beta_fast'"},  // not above beta_slow
      {"rope_scaling.original_max_position_embeddings", 0, "'rope_scaling.original_max_position_embeddings'"},
      {"rope_scaling.original_max_position_embeddings", -65536, "'rope_scaling.original_max_position_embeddings'"},
      {"rope_scaling.original_max_position_embeddings", 655.36, "'rope_scaling.original_max_position_embeddings'"},
      {"max_position_embeddings", 0, "'max_position_embeddings'"},
      {"max_position_embeddings", -1, "'max_position_embeddings'"},
      {"max_position_embeddings", 4, "max_position_embeddings"},  // below the window and the ratios
      {"sliding_window", 2000000, "'sliding_window'"},
      {"eos_token_id", -1, "'eos_token_id'"},
      {"eos_token_id", 512, "'eos_token_id'"},
      {"bos_token_id", -3, "'bos_token_id'"},
      {"bos_token_id", 100000, "'bos_token_id'"},
      {"swiglu_limit", -10.0, "'swiglu_limit'"},
      {"routed_scaling_factor", 0, "'routed_scaling_factor'"},
      {"routed_scaling_factor", -1.5, "'routed_scaling_factor'"},
      {"rms_norm_eps", 0, "'rms_norm_eps'"},
      {"rms_norm_eps", -1e-6, "'rms_norm_eps'"},
      {"rms_norm_eps", 2, "'rms_norm_eps'"},
      {"hc_eps", 0, "'hc_eps'"},
      {"num_key_value_heads", 8, "'num_key_value_heads'"},
      {"index_topk", 0, "'index_topk'"},
      {"index_n_heads", -16, "'index_n_heads'"},
      {"hc_sinkhorn_iters", 0, "'hc_sinkhorn_iters'"},
      {"num_experts_per_tok", 0, "'num_experts_per_tok'"},
      {"moe_intermediate_size", 0, "'moe_intermediate_size'"},
      {"compress_ratios", json::array({0, 4, int64_t(1) << 33, 4, 0}), "'compress_ratios'"},  // must not wrap
      {"compress_ratios", json::array({0, 4, 4194304, 4, 0}), "'compress_ratios[2]'"},  // above the context
  };
  for (auto& c : cases) {
    json j = tiny_flash();
    const std::string key = c.key;
    if (auto dot = key.find('.'); dot != std::string::npos)
      j[key.substr(0, dot)][key.substr(dot + 1)] = c.value;
    else
      j[key] = c.value;
    const std::string msg = error_for(j);
    EXPECT_CONTAINS(msg, c.named) << c.key << " = " << c.value.dump();
    EXPECT_CONTAINS(msg, "ckpt/config.json") << c.key;
  }
}

TEST(ConfigValues, InfiniteNumbersNeverLoad) {
  // 1e999 overflows a double: the JSON parser already refuses it (naming the file), and parse_config
  // would refuse the infinity anyway.
  for (const char* key : {"rope_theta", "swiglu_limit", "routed_scaling_factor", "rms_norm_eps"}) {
    json j = tiny_flash();
    j[key] = 12345.5;
    std::string text = j.dump();
    const std::string from = fmt::format("\"{}\":12345.5", key);
    ASSERT_NE(text.find(from), std::string::npos) << text;
    text.replace(text.find(from), from.size(), fmt::format("\"{}\":-1e999", key));
    const std::string msg = error_of([&] { parse_config(text, "ckpt/config.json"); });
    EXPECT_CONTAINS(msg, "ckpt/config.json");
    EXPECT_CONTAINS(msg, "1e999");
  }
}

TEST(ConfigValues, DSparkNeedsDraftStagesAndTargets) {
  json j = tiny_flash();
  j.update(json{{"dspark_block_size", 5}, {"dspark_markov_rank", 32}, {"dspark_noise_token_id", 510},
                {"dspark_target_layer_ids", {1, 2, 3}}});
  j["compress_ratios"] = json::array({0, 4, 128, 4});  // no stage after the backbone
  EXPECT_CONTAINS(error_for(j), "'dspark_block_size'");
  j["compress_ratios"] = json::array({0, 4, 128, 4, 0, 0, 0});
  j["dspark_target_layer_ids"] = json::array();
  EXPECT_CONTAINS(error_for(j), "'dspark_target_layer_ids'");
}
