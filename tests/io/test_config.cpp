// HF config.json parsing (architecture.md §2.1–§2.6): the three tiny fixture configs parse to the documented
// values; every bad config is rejected with a dsv4::Error whose message names the key at fault.
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

// Copy of tests/data/fixtures/tiny-flash/config.json, used when tests/data/fixtures is not populated.
const char* kTinyFlashConfig = R"({
  "architectures": ["DeepseekV4ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 0, "eos_token_id": 1, "expert_dtype": "fp4", "hc_eps": 1e-06, "hc_mult": 4,
  "hc_sinkhorn_iters": 20, "head_dim": 128, "hidden_act": "silu", "hidden_size": 256, "index_head_dim": 128,
  "index_n_heads": 16, "index_topk": 8, "initializer_range": 0.02, "max_position_embeddings": 1048576,
  "model_type": "deepseek_v4", "moe_intermediate_size": 128, "n_routed_experts": 8, "n_shared_experts": 1,
  "norm_topk_prob": true, "num_attention_heads": 4, "num_experts_per_tok": 2, "num_hash_layers": 1,
  "num_hidden_layers": 4, "num_key_value_heads": 1, "num_nextn_predict_layers": 1, "o_groups": 2,
  "o_lora_rank": 64, "q_lora_rank": 128, "qk_rope_head_dim": 64,
  "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                          "scale_fmt": "ue8m0", "weight_block_size": [128, 128]},
  "rms_norm_eps": 1e-06,
  "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 16, "original_max_position_embeddings": 65536,
                   "type": "yarn"},
  "rope_theta": 10000, "routed_scaling_factor": 1.5, "scoring_func": "sqrtsoftplus", "sliding_window": 8,
  "swiglu_limit": 10.0, "tie_word_embeddings": false, "topk_method": "noaux_tc", "torch_dtype": "bfloat16",
  "transformers_version": "4.57.1", "use_cache": true, "vocab_size": 512, "compress_rope_theta": 160000,
  "compress_ratios": [0, 4, 128, 4, 0]
})";

std::string fixture_dir(const std::string& name) { return std::string(DSV4_TEST_DATA) + "/fixtures/" + name; }
bool have_fixture(const std::string& name) { return std::filesystem::exists(fixture_dir(name) + "/config.json"); }

json flash_json() {
  if (have_fixture("tiny-flash")) return json::parse(read_text_file(fixture_dir("tiny-flash") + "/config.json"));
  return json::parse(kTinyFlashConfig);
}

std::string parse_error(const json& j) {
  return error_of([&] { parse_config(j.dump(), "cfg/config.json"); });
}

}  // namespace

// ------------------------------------------------------------------------------------------- good configs

TEST(Config, EmbeddedCopyMatchesFixture) {
  if (!have_fixture("tiny-flash")) GTEST_SKIP() << "fixture not present";
  EXPECT_EQ(flash_json(), json::parse(kTinyFlashConfig));
}

TEST(Config, TinyFlash) {
  ModelConfig c = have_fixture("tiny-flash") ? load_config(fixture_dir("tiny-flash"))
                                             : parse_config(kTinyFlashConfig, "tiny-flash");
  EXPECT_EQ(c.model_type, "deepseek_v4");
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.dim, 256);
  EXPECT_EQ(c.n_layers, 4);
  EXPECT_EQ(c.n_heads, 4);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.rope_head_dim, 64);
  EXPECT_EQ(c.nope_dim(), 64);
  EXPECT_EQ(c.q_lora_rank, 128);
  EXPECT_EQ(c.o_lora_rank, 64);
  EXPECT_EQ(c.o_groups, 2);
  EXPECT_EQ(c.window_size, 8);
  EXPECT_EQ(c.compress_ratios, (std::vector<int>{0, 4, 128, 4, 0}));
  EXPECT_EQ(c.n_mtp_layers, 1);
  EXPECT_EQ(c.layer_ratio(2), 128);
  EXPECT_EQ(c.rope_theta, 10000);
  EXPECT_EQ(c.compress_rope_theta, 160000);
  EXPECT_EQ(c.rope_factor, 16);
  EXPECT_EQ(c.beta_fast, 32);
  EXPECT_EQ(c.beta_slow, 1);
  EXPECT_EQ(c.original_seq_len, 65536);
  EXPECT_EQ(c.index_n_heads, 16);
  EXPECT_EQ(c.index_head_dim, 128);
  EXPECT_EQ(c.index_topk, 8);
  EXPECT_EQ(c.n_routed_experts, 8);
  EXPECT_EQ(c.n_activated_experts, 2);
  EXPECT_EQ(c.n_shared_experts, 1);
  EXPECT_EQ(c.moe_inter_dim, 128);
  EXPECT_EQ(c.n_hash_layers, 1);
  EXPECT_EQ(c.score_func, "sqrtsoftplus");
  EXPECT_EQ(c.route_scale, 1.5);
  EXPECT_EQ(c.swiglu_limit, 10.0);
  EXPECT_EQ(c.hc_mult, 4);
  EXPECT_EQ(c.hc_sinkhorn_iters, 20);
  EXPECT_EQ(c.hc_eps, 1e-6);
  EXPECT_EQ(c.norm_eps, 1e-6);
  EXPECT_EQ(c.expert_dtype, "fp4");
  EXPECT_EQ(c.bos_token_id, 0);
  EXPECT_EQ(c.eos_token_id, 1);
  EXPECT_EQ(c.max_position_embeddings, 1048576);
  EXPECT_FALSE(c.is_dspark());
  EXPECT_EQ(c.dspark_block_size, 0);
}

TEST(Config, TinyPro) {
  if (!have_fixture("tiny-pro")) GTEST_SKIP() << "fixture not present";
  ModelConfig c = load_config(fixture_dir("tiny-pro"));
  EXPECT_EQ(c.compress_ratios, (std::vector<int>{128, 128, 4, 128, 0}));
  EXPECT_EQ(c.n_mtp_layers, 1);
  EXPECT_EQ(c.n_heads, 6);
  EXPECT_EQ(c.o_groups, 3);
  EXPECT_EQ(c.o_lora_rank, 128);
  EXPECT_EQ(c.window_size, 16);
  EXPECT_EQ(c.vocab_size, 384);
  EXPECT_EQ(c.n_routed_experts, 4);
  EXPECT_EQ(c.n_hash_layers, 2);
  EXPECT_EQ(c.index_topk, 6);
  EXPECT_EQ(c.route_scale, 2.5);
  EXPECT_EQ(c.expert_dtype, "") << "tiny-pro has no expert_dtype key (architecture.md §2.2)";
  EXPECT_FALSE(c.is_dspark());
}

TEST(Config, Tiny0731DSpark) {
  if (!have_fixture("tiny-0731")) GTEST_SKIP() << "fixture not present";
  ModelConfig c = load_config(fixture_dir("tiny-0731"));
  EXPECT_EQ(c.compress_ratios, (std::vector<int>{0, 4, 128, 4, 0, 0, 0}));
  EXPECT_EQ(c.n_mtp_layers, 3) << "three draft stages although num_nextn_predict_layers says 1 (architecture.md §2.6)";
  EXPECT_TRUE(c.is_dspark());
  EXPECT_EQ(c.dspark_block_size, 5);
  EXPECT_EQ(c.dspark_markov_rank, 32);
  EXPECT_EQ(c.dspark_noise_token_id, 510);
  EXPECT_EQ(c.dspark_target_layer_ids, (std::vector<int>{1, 2, 3}));
}

TEST(Config, OptionalKeysWithSpecDefaults) {
  // hc_eps and rms_norm_eps are absent from inference/config.json; the code default 1e-6 is the shipped value.
  json j = flash_json();
  j.erase("hc_eps");
  j.erase("rms_norm_eps");
  j.erase("num_nextn_predict_layers");
  ModelConfig c = parse_config(j.dump(), "x");
  EXPECT_EQ(c.hc_eps, 1e-6);
  EXPECT_EQ(c.norm_eps, 1e-6);
  EXPECT_EQ(c.n_mtp_layers, 1);
  j["rms_norm_eps"] = 1e-5;
  EXPECT_EQ(parse_config(j.dump(), "x").norm_eps, 1e-5);
}

// ------------------------------------------------------------------------------------------- bad configs

TEST(ConfigErrors, BadJsonAndNotAnObjectNameTheSource) {
  EXPECT_CONTAINS(error_of([] { parse_config("{\"model_type\": ", "some/dir/config.json"); }), "some/dir/config.json");
  EXPECT_CONTAINS(error_of([] { parse_config("[1, 2]", "some/dir/config.json"); }), "some/dir/config.json");
  TempDir d;
  EXPECT_CONTAINS(error_of([&] { load_config(d.str()); }), "config.json");
}

TEST(ConfigErrors, UnknownModelType) {
  json j = flash_json();
  j["model_type"] = "deepseek_v3";
  const std::string msg = parse_error(j);
  EXPECT_CONTAINS(msg, "model_type");
  EXPECT_CONTAINS(msg, "deepseek_v3");
  EXPECT_CONTAINS(msg, "cfg/config.json");
}

TEST(ConfigErrors, EachRequiredKeyMissingIsNamed) {
  for (const char* key : {"model_type", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                          "head_dim", "qk_rope_head_dim", "q_lora_rank", "o_lora_rank", "o_groups", "sliding_window",
                          "compress_ratios", "rope_theta", "compress_rope_theta", "index_n_heads", "index_head_dim",
                          "index_topk", "n_routed_experts", "num_experts_per_tok", "moe_intermediate_size",
                          "scoring_func", "routed_scaling_factor", "hc_mult", "hc_sinkhorn_iters"}) {
    json j = flash_json();
    j.erase(key);
    const std::string msg = parse_error(j);
    EXPECT_CONTAINS(msg, std::string("'") + key + "'");
    EXPECT_CONTAINS(msg, "missing");
  }
}

TEST(ConfigErrors, ReferencePlaceholderDefaultsAreNotInherited) {
  // architecture.md §2.2: swiglu_limit (code default 0), num_hash_layers (code default 0) and the YaRN block
  // (rope_factor 40 / original_seq_len 0 in code) must come from the checkpoint config; a config without them
  // must be rejected naming the key rather than silently running with the placeholder.
  for (const char* key : {"swiglu_limit", "num_hash_layers", "rope_scaling"}) {
    json j = flash_json();
    j.erase(key);
    const std::string msg = parse_error(j);
    EXPECT_CONTAINS(msg, key);
  }
  for (const char* key : {"factor", "original_max_position_embeddings", "beta_fast", "beta_slow"}) {
    json j = flash_json();
    j["rope_scaling"].erase(key);
    EXPECT_CONTAINS(parse_error(j), key);
  }
}

TEST(ConfigErrors, WrongTypesNameTheKey) {
  struct Case { const char* key; json value; };
  const Case cases[] = {
      {"hidden_size", "256"},      {"hidden_size", 256.5},       {"num_hidden_layers", json::array({4})},
      {"rope_theta", "10000"},     {"compress_ratios", 4},       {"compress_ratios", json::array({0, "4", 128, 4, 0})},
      {"scoring_func", 1},         {"model_type", nullptr},      {"routed_scaling_factor", true},
      {"hc_mult", 4.5},            {"sliding_window", -8},       {"num_attention_heads", 0},
  };
  for (auto& c : cases) {
    json j = flash_json();
    j[c.key] = c.value;
    const std::string msg = parse_error(j);
    EXPECT_CONTAINS(msg, std::string("'") + c.key + "'") << "value " << c.value.dump();
  }
}

TEST(ConfigErrors, WrongTypesInNestedOrOptionalKeysAreDsv4Errors) {
  // Keys read through nlohmann's value() must still produce a dsv4::Error naming the key, not a raw
  // nlohmann::json::type_error.
  {
    json j = flash_json();
    j["rope_scaling"] = "yarn";
    EXPECT_CONTAINS(parse_error(j), "rope_scaling");
  }
  {
    json j = flash_json();
    j["rope_scaling"]["type"] = 7;
    EXPECT_CONTAINS(parse_error(j), "rope_scaling");
  }
  {
    json j = flash_json();
    j["max_position_embeddings"] = "1048576";
    EXPECT_CONTAINS(parse_error(j), "max_position_embeddings");
  }
  {
    json j = flash_json();
    j["rope_scaling"]["type"] = "linear";
    EXPECT_CONTAINS(parse_error(j), "rope_scaling");
  }
}

TEST(ConfigErrors, IntegerOutOfRangeIsRejected) {
  // 2^32 + 256 must not wrap to 256.
  json j = flash_json();
  j["hidden_size"] = (int64_t(1) << 32) + 256;
  EXPECT_CONTAINS(parse_error(j), "hidden_size");
}

TEST(ConfigErrors, CompressRatiosShorterThanLayers) {
  json j = flash_json();
  j["compress_ratios"] = json::array({0, 4, 128});
  const std::string msg = parse_error(j);
  EXPECT_CONTAINS(msg, "compress_ratios");
  EXPECT_CONTAINS(msg, "num_hidden_layers");
}

TEST(ConfigErrors, CompressRatiosBadEntries) {
  for (json ratios : {json::array({0, 4, 1, 4, 0}), json::array({0, -4, 128, 4, 0}), json::array({0, 4, 128, 4, 4})}) {
    json j = flash_json();
    j["compress_ratios"] = ratios;
    EXPECT_CONTAINS(parse_error(j), "compress_ratios") << ratios.dump();
  }
}

TEST(ConfigErrors, HeadsNotDivisibleByOGroups) {
  json j = flash_json();
  j["o_groups"] = 3;
  const std::string msg = parse_error(j);
  EXPECT_CONTAINS(msg, "num_attention_heads");
  EXPECT_CONTAINS(msg, "o_groups");
}

TEST(ConfigErrors, ConsistencyChecksNameTheKey) {
  struct Case { const char* key; json value; const char* named; };
  const Case cases[] = {
      {"scoring_func", "softmax", "scoring_func"},
      {"n_shared_experts", 2, "n_shared_experts"},
      {"num_experts_per_tok", 9, "num_experts_per_tok"},
      {"num_hash_layers", 5, "num_hash_layers"},
      {"num_hash_layers", -1, "num_hash_layers"},
      {"qk_rope_head_dim", 63, "qk_rope_head_dim"},
      {"qk_rope_head_dim", 128, "qk_rope_head_dim"},
      {"head_dim", 160, "head_dim"},
      {"index_head_dim", 96, "index_head_dim"},
      {"hc_mult", 17, "hc_mult"},
  };
  for (auto& c : cases) {
    json j = flash_json();
    j[c.key] = c.value;
    EXPECT_CONTAINS(parse_error(j), c.named) << c.key << " = " << c.value.dump();
  }
}

TEST(ConfigErrors, DSparkKeys) {
  json base = flash_json();
  base["compress_ratios"] = json::array({0, 4, 128, 4, 0, 0, 0});
  base["dspark_block_size"] = 5;
  base["dspark_markov_rank"] = 32;
  base["dspark_noise_token_id"] = 510;
  base["dspark_target_layer_ids"] = json::array({1, 2, 3});
  EXPECT_NO_THROW(parse_config(base.dump(), "x"));
  {
    json j = base;
    j["dspark_target_layer_ids"] = json::array({1, 2, 4});
    EXPECT_CONTAINS(parse_error(j), "dspark_target_layer_ids");
  }
  {
    json j = base;
    j["dspark_noise_token_id"] = 512;
    EXPECT_CONTAINS(parse_error(j), "dspark_noise_token_id");
  }
  {
    json j = base;
    j.erase("dspark_markov_rank");
    EXPECT_CONTAINS(parse_error(j), "dspark_markov_rank");
  }
}
