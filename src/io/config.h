#pragma once
// Model configuration under the native (inference/config.json) names, parsed from the HF config.json.
#include <cstdint>
#include <string>
#include <vector>

#include "io/layer_kind.h"

namespace dsv4 {

struct ModelConfig {
  std::string model_type;
  int vocab_size = 0;
  int dim = 0;
  int n_layers = 0;
  int n_heads = 0;
  int head_dim = 0;
  int rope_head_dim = 0;
  int q_lora_rank = 0;
  int o_lora_rank = 0;
  int o_groups = 0;
  int window_size = 0;
  std::vector<int> compress_ratios;  // n_layers + n_mtp_layers entries
  double rope_theta = 0, compress_rope_theta = 0;
  double rope_factor = 1, beta_fast = 32, beta_slow = 1;
  int64_t original_seq_len = 0;
  int index_n_heads = 0, index_head_dim = 0, index_topk = 0;
  int n_routed_experts = 0, n_activated_experts = 0, n_shared_experts = 0, moe_inter_dim = 0;
  int n_hash_layers = 0;
  std::string score_func;
  double route_scale = 1, swiglu_limit = 0;
  int hc_mult = 0, hc_sinkhorn_iters = 0;
  double hc_eps = 1e-6, norm_eps = 1e-6;
  int n_mtp_layers = 0;         // stages after the backbone, from compress_ratios
  std::string expert_dtype;     // informational: formats come from tensor dtypes
  // quantization_config.quant_method: "fp8" in official checkpoints, kept by converters that dequantise
  // (the activation round trip still applies, model/weights.cpp); empty when absent.
  std::string quant_method;
  int bos_token_id = 0, eos_token_id = 1;
  int64_t max_position_embeddings = 0;
  // DSpark (0731); dspark_block_size == 0 when absent.
  int dspark_block_size = 0, dspark_markov_rank = 0, dspark_noise_token_id = -1;
  std::vector<int> dspark_target_layer_ids;

  int nope_dim() const { return head_dim - rope_head_dim; }
  bool is_dspark() const { return dspark_block_size > 0; }
  int layer_ratio(int layer) const { return compress_ratios.at(size_t(layer)); }
  // Throws for a ratio no kind has (parse_config rejects those).
  LayerKind layer_kind(int layer) const;
};

// Parses and validates an HF config.json text; `source` names it in errors.
ModelConfig parse_config(const std::string& json_text, const std::string& source);
// The inverse: the official config.json for `c` (every key parse_config reads, plus the informational
// ones the official uploads carry), in their order. Kept beside the parser so both list the same keys.
std::string to_hf_config_json(const ModelConfig& c, int indent = 2);
// checkpoint_dir: a folder with config.json, or a deepseek4 .gguf file (any shard).
ModelConfig load_config(const std::string& checkpoint_dir);

}  // namespace dsv4
