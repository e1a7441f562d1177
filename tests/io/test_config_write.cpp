// to_hf_config_json is the inverse of parse_config: every fixture config (and the bundled model's) comes
// back with every field equal, so the writer lists every key the parser reads.
#include <gtest/gtest.h>

#include <string>

#include "io/config.h"

using namespace dsv4;

namespace {

void expect_same(const ModelConfig& a, const ModelConfig& b) {
  EXPECT_EQ(a.model_type, b.model_type);
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.dim, b.dim);
  EXPECT_EQ(a.n_layers, b.n_layers);
  EXPECT_EQ(a.n_heads, b.n_heads);
  EXPECT_EQ(a.head_dim, b.head_dim);
  EXPECT_EQ(a.rope_head_dim, b.rope_head_dim);
  EXPECT_EQ(a.q_lora_rank, b.q_lora_rank);
  EXPECT_EQ(a.o_lora_rank, b.o_lora_rank);
  EXPECT_EQ(a.o_groups, b.o_groups);
  EXPECT_EQ(a.window_size, b.window_size);
  EXPECT_EQ(a.compress_ratios, b.compress_ratios);
  EXPECT_EQ(a.rope_theta, b.rope_theta);
  EXPECT_EQ(a.compress_rope_theta, b.compress_rope_theta);
  EXPECT_EQ(a.rope_factor, b.rope_factor);
  EXPECT_EQ(a.beta_fast, b.beta_fast);
  EXPECT_EQ(a.beta_slow, b.beta_slow);
  EXPECT_EQ(a.original_seq_len, b.original_seq_len);
  EXPECT_EQ(a.index_n_heads, b.index_n_heads);
  EXPECT_EQ(a.index_head_dim, b.index_head_dim);
  EXPECT_EQ(a.index_topk, b.index_topk);
  EXPECT_EQ(a.n_routed_experts, b.n_routed_experts);
  EXPECT_EQ(a.n_activated_experts, b.n_activated_experts);
  EXPECT_EQ(a.n_shared_experts, b.n_shared_experts);
  EXPECT_EQ(a.moe_inter_dim, b.moe_inter_dim);
  EXPECT_EQ(a.n_hash_layers, b.n_hash_layers);
  EXPECT_EQ(a.score_func, b.score_func);
  EXPECT_EQ(a.route_scale, b.route_scale);
  EXPECT_EQ(a.swiglu_limit, b.swiglu_limit);
  EXPECT_EQ(a.hc_mult, b.hc_mult);
  EXPECT_EQ(a.hc_sinkhorn_iters, b.hc_sinkhorn_iters);
  EXPECT_EQ(a.hc_eps, b.hc_eps);
  EXPECT_EQ(a.norm_eps, b.norm_eps);
  EXPECT_EQ(a.n_mtp_layers, b.n_mtp_layers);
  EXPECT_EQ(a.expert_dtype, b.expert_dtype);
  EXPECT_EQ(a.bos_token_id, b.bos_token_id);
  EXPECT_EQ(a.eos_token_id, b.eos_token_id);
  EXPECT_EQ(a.max_position_embeddings, b.max_position_embeddings);
  EXPECT_EQ(a.dspark_block_size, b.dspark_block_size);
  EXPECT_EQ(a.dspark_markov_rank, b.dspark_markov_rank);
  EXPECT_EQ(a.dspark_noise_token_id, b.dspark_noise_token_id);
  EXPECT_EQ(a.dspark_target_layer_ids, b.dspark_target_layer_ids);
}

TEST(ConfigWrite, RoundTripsEveryFixture) {
  const std::string data = DSV4_TEST_DATA;
  for (const std::string& dir : {data + "/fixtures/tiny-flash", data + "/fixtures/tiny-pro", data + "/fixtures/tiny-0731",
                                data + "/../../models/dsv4-nano"}) {
    SCOPED_TRACE(dir);
    const ModelConfig a = load_config(dir);
    const std::string text = to_hf_config_json(a);
    const ModelConfig b = parse_config(text, "written config");
    expect_same(a, b);
    EXPECT_EQ(to_hf_config_json(b), text);
  }
}

TEST(ConfigWrite, WholeNumbersStayIntegersLikeTheOfficialFiles) {
  const ModelConfig c = load_config(std::string(DSV4_TEST_DATA) + "/fixtures/tiny-flash");
  const std::string text = to_hf_config_json(c, -1);
  EXPECT_NE(text.find("\"rope_theta\":10000,"), std::string::npos) << text;
  EXPECT_NE(text.find("\"factor\":16,"), std::string::npos) << text;
  EXPECT_NE(text.find("\"swiglu_limit\":10.0,"), std::string::npos) << text;
  EXPECT_NE(text.find("\"compress_rope_theta\":160000,"), std::string::npos) << text;
}

}  // namespace
