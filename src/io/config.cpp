#include "io/config.h"

#include <cmath>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json.h"
#include "core/mapped_file.h"
#include "io/gguf.h"
#include "io/gguf_deepseek4.h"

namespace dsv4 {

using nlohmann::json;

namespace {

struct Reader {
  const json& j;
  const std::string& src;
  std::string prefix = "";  // "rope_scaling." inside the nested object

  const json& at(const char* key) const {
    if (!j.contains(key)) fail("{}: missing key '{}{}'", src, prefix, key);
    return j[key];
  }
  int integer(const char* key) const {
    auto& v = at(key);
    if (!v.is_number_integer()) fail("{}: key '{}{}' must be an integer, got {}", src, prefix, key, v.dump());
    const int64_t x = v.get<int64_t>();
    if (x < INT32_MIN || x > INT32_MAX || (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT32_MAX)))
      fail("{}: key '{}{}' = {} is out of range", src, prefix, key, v.dump());
    return int(x);
  }
  int positive(const char* key) const {
    int v = integer(key);
    if (v <= 0) fail("{}: key '{}{}' must be positive, got {}", src, prefix, key, v);
    return v;
  }
  // JSON has no NaN, but 1e999 parses to inf: every number is required finite.
  double number(const char* key) const {
    auto& v = at(key);
    if (!v.is_number()) fail("{}: key '{}{}' must be a number, got {}", src, prefix, key, v.dump());
    const double x = v.get<double>();
    if (!std::isfinite(x)) fail("{}: key '{}{}' must be finite, got {}", src, prefix, key, v.dump());
    return x;
  }
  // A number with min < x (or min <= x) <= max; `what` says the rule in the error.
  double number_in(const char* key, double min, bool min_open, double max, const char* what) const {
    const double x = number(key);
    if (x < min || (min_open && x == min) || x > max)
      fail("{}: key '{}{}' must be {}, got {}", src, prefix, key, what, at(key).dump());
    return x;
  }
  // A positive whole number that may be written as 65536 or 65536.0.
  int64_t positive_whole(const char* key) const {
    const double x = number(key);
    if (x < 1 || x > 0x1p40 || x != std::floor(x))
      fail("{}: key '{}{}' must be a positive integer, got {}", src, prefix, key, at(key).dump());
    return int64_t(x);
  }
  int integer_or(const char* key, int dflt) const { return j.contains(key) ? integer(key) : dflt; }
  std::string str(const char* key) const {
    auto& v = at(key);
    if (!v.is_string()) fail("{}: key '{}{}' must be a string, got {}", src, prefix, key, v.dump());
    return v.get<std::string>();
  }
  std::vector<int> ints(const char* key) const {
    auto& v = at(key);
    if (!v.is_array()) fail("{}: key '{}{}' must be an array", src, prefix, key);
    std::vector<int> out;
    for (auto& e : v) {
      if (!e.is_number_integer() || (e.is_number_unsigned() && e.get<uint64_t>() > uint64_t(INT32_MAX)) ||
          e.get<int64_t>() < INT32_MIN || e.get<int64_t>() > INT32_MAX)
        fail("{}: key '{}{}' must hold integers, got {}", src, prefix, key, e.dump());
      out.push_back(int(e.get<int64_t>()));
    }
    return out;
  }
};

}  // namespace

ModelConfig parse_config(const std::string& text, const std::string& src) {
  json j;
  try {
    j = parse_json(text, src);
  } catch (const json::exception& e) {
    fail("{}: bad JSON: {}", src, e.what());
  }
  if (!j.is_object()) fail("{}: config is not a JSON object", src);
  Reader r{j, src};
  ModelConfig c;
  c.model_type = r.str("model_type");
  if (c.model_type != "deepseek_v4")
    fail("{}: unsupported model_type '{}' (this engine runs deepseek_v4)", src, c.model_type);
  c.vocab_size = r.positive("vocab_size");
  c.dim = r.positive("hidden_size");
  c.n_layers = r.positive("num_hidden_layers");
  c.n_heads = r.positive("num_attention_heads");
  c.head_dim = r.positive("head_dim");
  c.rope_head_dim = r.positive("qk_rope_head_dim");
  c.q_lora_rank = r.positive("q_lora_rank");
  c.o_lora_rank = r.positive("o_lora_rank");
  c.o_groups = r.positive("o_groups");
  c.window_size = r.positive("sliding_window");
  c.compress_ratios = r.ints("compress_ratios");
  // A base <= 1 gives non-decaying frequencies and a zero or negative ln(base) in YaRN: NaN tables.
  constexpr double kMax = std::numeric_limits<double>::max();
  c.rope_theta = r.number_in("rope_theta", 1, true, kMax, "a finite number > 1");
  c.compress_rope_theta = r.number_in("compress_rope_theta", 1, true, kMax, "a finite number > 1");
  {
    // YaRN parameters come from the checkpoint; the reference's code defaults are placeholders (architecture.md §2.2).
    const json& sc = r.at("rope_scaling");
    if (!sc.is_object()) fail("{}: key 'rope_scaling' must be an object, got {}", src, sc.dump());
    Reader rs{sc, src, "rope_scaling."};
    const char* tkey = sc.contains("type") ? "type" : "rope_type";
    std::string type = rs.str(tkey);
    if (type != "yarn") fail("{}: key 'rope_scaling.{}' must be 'yarn', got '{}'", src, tkey, type);
    c.rope_factor = rs.number_in("factor", 1, false, kMax, "a finite number >= 1");
    c.original_seq_len = rs.positive_whole("original_max_position_embeddings");
    c.beta_fast = rs.number_in("beta_fast", 0, true, kMax, "a finite number > 0");
    c.beta_slow = rs.number_in("beta_slow", 0, true, kMax, "a finite number > 0");
    // The ramp runs from the beta_fast correction dim up to the beta_slow one.
    if (c.beta_fast <= c.beta_slow)
      fail("{}: key 'rope_scaling.beta_fast' ({}) must exceed rope_scaling.beta_slow ({})", src, c.beta_fast,
           c.beta_slow);
  }
  c.index_n_heads = r.positive("index_n_heads");
  c.index_head_dim = r.positive("index_head_dim");
  c.index_topk = r.positive("index_topk");
  c.n_routed_experts = r.positive("n_routed_experts");
  c.n_activated_experts = r.positive("num_experts_per_tok");
  c.n_shared_experts = r.integer_or("n_shared_experts", 1);
  c.moe_inter_dim = r.positive("moe_intermediate_size");
  c.n_hash_layers = r.integer("num_hash_layers");
  c.score_func = r.str("scoring_func");
  c.route_scale = r.number_in("routed_scaling_factor", 0, true, kMax, "a finite number > 0");
  c.swiglu_limit = r.number_in("swiglu_limit", 0, false, kMax, "a finite number >= 0 (0 = no clamp)");
  c.hc_mult = r.positive("hc_mult");
  c.hc_sinkhorn_iters = r.positive("hc_sinkhorn_iters");
  // eps 0 divides a zero row by zero; eps >= 1 swamps unit-scale activations.
  c.hc_eps = j.contains("hc_eps") ? r.number_in("hc_eps", 0, true, 1, "in (0, 1)") : 1e-6;
  c.norm_eps = j.contains("rms_norm_eps") ? r.number_in("rms_norm_eps", 0, true, 1, "in (0, 1)") : 1e-6;
  c.bos_token_id = r.integer_or("bos_token_id", 0);
  c.eos_token_id = r.integer_or("eos_token_id", 1);
  c.max_position_embeddings = j.contains("max_position_embeddings") ? r.positive("max_position_embeddings") : (1 << 20);
  if (j.contains("num_key_value_heads") && r.integer("num_key_value_heads") != 1)
    fail("{}: key 'num_key_value_heads' must be 1 (V4 shares one latent KV vector), got {}", src,
         j["num_key_value_heads"].dump());
  if (j.contains("expert_dtype") && j["expert_dtype"].is_string()) c.expert_dtype = j["expert_dtype"];
  if (j.contains("quantization_config") && j["quantization_config"].is_object() &&
      j["quantization_config"].contains("quant_method") && j["quantization_config"]["quant_method"].is_string())
    c.quant_method = j["quantization_config"]["quant_method"];
  if (j.contains("dspark_block_size")) {
    c.dspark_block_size = r.positive("dspark_block_size");
    c.dspark_markov_rank = r.positive("dspark_markov_rank");
    c.dspark_noise_token_id = r.integer("dspark_noise_token_id");
    c.dspark_target_layer_ids = r.ints("dspark_target_layer_ids");
  }

  // Consistency: every check names the key at fault.
  if (c.score_func != "sqrtsoftplus")
    fail("{}: key 'scoring_func' is '{}', V4 uses 'sqrtsoftplus'", src, c.score_func);
  if (c.n_shared_experts != 1) fail("{}: key 'n_shared_experts' must be 1 (got {})", src, c.n_shared_experts);
  if (int(c.compress_ratios.size()) < c.n_layers)
    fail("{}: key 'compress_ratios' has {} entries, fewer than num_hidden_layers = {}", src,
         c.compress_ratios.size(), c.n_layers);
  c.n_mtp_layers = int(c.compress_ratios.size()) - c.n_layers;
  for (size_t i = 0; i < c.compress_ratios.size(); ++i) {
    int ratio = c.compress_ratios[i];
    const auto kind = layer_kind_of_ratio(ratio);
    if (!kind)
      fail("{}: key 'compress_ratios[{}]' ({} {}) = {} is not a known layer kind (0: sliding window, 4: CSA, "
           "128: HCA)", src, i, int(i) < c.n_layers ? "layer" : "MTP stage",
           int(i) < c.n_layers ? int(i) : int(i) - c.n_layers, ratio);
    if (int(i) >= c.n_layers && *kind != LayerKind::SlidingWindow)
      fail("{}: key 'compress_ratios[{}]' (an MTP stage) must be 0, got {}", src, i, ratio);
    if (ratio > c.max_position_embeddings)
      fail("{}: key 'compress_ratios[{}]' = {} exceeds max_position_embeddings ({})", src, i, ratio,
           c.max_position_embeddings);
  }
  // Each sequence allocates a window ring of this many rows.
  if (c.window_size > c.max_position_embeddings)
    fail("{}: key 'sliding_window' ({}) exceeds max_position_embeddings ({})", src, c.window_size,
         c.max_position_embeddings);
  for (auto [key, id] : {std::pair{"bos_token_id", c.bos_token_id}, std::pair{"eos_token_id", c.eos_token_id}})
    if (id < 0 || id >= c.vocab_size)
      fail("{}: key '{}' ({}) is outside the vocabulary [0, vocab_size = {})", src, key, id, c.vocab_size);
  if (c.n_heads % c.o_groups)
    fail("{}: key 'num_attention_heads' ({}) is not divisible by 'o_groups' ({})", src, c.n_heads, c.o_groups);
  if (c.rope_head_dim % 2 || c.rope_head_dim >= c.head_dim)
    fail("{}: key 'qk_rope_head_dim' ({}) must be even and below head_dim ({})", src, c.rope_head_dim, c.head_dim);
  if (c.nope_dim() % 64)
    fail("{}: key 'head_dim' ({}) minus qk_rope_head_dim must be a multiple of 64 (KV FP8 blocks)", src, c.head_dim);
  if (c.index_head_dim & (c.index_head_dim - 1) || c.index_head_dim % 32 || c.index_head_dim <= c.rope_head_dim)
    fail("{}: key 'index_head_dim' ({}) must be a power of two >= 64, above qk_rope_head_dim", src, c.index_head_dim);
  if (c.n_activated_experts > c.n_routed_experts)
    fail("{}: key 'num_experts_per_tok' ({}) exceeds n_routed_experts ({})", src, c.n_activated_experts,
         c.n_routed_experts);
  if (c.n_hash_layers < 0 || c.n_hash_layers > c.n_layers)
    fail("{}: key 'num_hash_layers' ({}) must lie in [0, num_hidden_layers]", src, c.n_hash_layers);
  if (c.hc_mult < 1 || c.hc_mult > 16) fail("{}: key 'hc_mult' ({}) must lie in [1, 16]", src, c.hc_mult);
  if (c.is_dspark() && c.n_mtp_layers < 1)
    fail("{}: key 'dspark_block_size' is set but 'compress_ratios' lists no draft stage after the backbone", src);
  if (c.is_dspark() && c.dspark_target_layer_ids.empty())
    fail("{}: key 'dspark_target_layer_ids' is empty", src);
  for (int l : c.dspark_target_layer_ids)
    if (l < 0 || l >= c.n_layers) fail("{}: key 'dspark_target_layer_ids' holds {} outside the backbone", src, l);
  if (c.is_dspark() && (c.dspark_noise_token_id < 0 || c.dspark_noise_token_id >= c.vocab_size))
    fail("{}: key 'dspark_noise_token_id' ({}) is outside the vocabulary", src, c.dspark_noise_token_id);
  return c;
}

std::string to_hf_config_json(const ModelConfig& c, int indent) {
  // The official files write these as integers when they are whole (rope_theta 10000, factor 16).
  auto num = [](double x) -> nlohmann::ordered_json {
    if (x == std::floor(x) && std::fabs(x) < 0x1p53) return int64_t(x);
    return x;
  };
  nlohmann::ordered_json j;
  j["architectures"] = {"DeepseekV4ForCausalLM"};
  j["model_type"] = c.model_type;
  j["bos_token_id"] = c.bos_token_id;
  j["eos_token_id"] = c.eos_token_id;
  if (!c.expert_dtype.empty()) j["expert_dtype"] = c.expert_dtype;
  j["hc_eps"] = c.hc_eps;
  j["hc_mult"] = c.hc_mult;
  j["hc_sinkhorn_iters"] = c.hc_sinkhorn_iters;
  j["head_dim"] = c.head_dim;
  j["hidden_act"] = "silu";
  j["hidden_size"] = c.dim;
  j["index_head_dim"] = c.index_head_dim;
  j["index_n_heads"] = c.index_n_heads;
  j["index_topk"] = c.index_topk;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["moe_intermediate_size"] = c.moe_inter_dim;
  j["n_routed_experts"] = c.n_routed_experts;
  j["n_shared_experts"] = c.n_shared_experts;
  j["norm_topk_prob"] = true;
  j["num_attention_heads"] = c.n_heads;
  j["num_experts_per_tok"] = c.n_activated_experts;
  j["num_hash_layers"] = c.n_hash_layers;
  j["num_hidden_layers"] = c.n_layers;
  j["num_key_value_heads"] = 1;
  j["num_nextn_predict_layers"] = int(c.compress_ratios.size()) - c.n_layers;
  j["o_groups"] = c.o_groups;
  j["o_lora_rank"] = c.o_lora_rank;
  j["q_lora_rank"] = c.q_lora_rank;
  j["qk_rope_head_dim"] = c.rope_head_dim;
  j["quantization_config"] = {{"activation_scheme", "dynamic"}, {"fmt", "e4m3"}, {"quant_method", "fp8"},
                              {"scale_fmt", "ue8m0"}, {"weight_block_size", {128, 128}}};
  j["rms_norm_eps"] = c.norm_eps;
  j["rope_scaling"] = {{"beta_fast", num(c.beta_fast)}, {"beta_slow", num(c.beta_slow)}, {"factor", num(c.rope_factor)},
                       {"original_max_position_embeddings", c.original_seq_len}, {"type", "yarn"}};
  j["rope_theta"] = num(c.rope_theta);
  j["routed_scaling_factor"] = c.route_scale;
  j["scoring_func"] = c.score_func;
  j["sliding_window"] = c.window_size;
  j["swiglu_limit"] = c.swiglu_limit;
  j["tie_word_embeddings"] = false;
  j["topk_method"] = "noaux_tc";
  j["torch_dtype"] = "bfloat16";
  j["vocab_size"] = c.vocab_size;
  if (c.is_dspark()) {
    j["dspark_block_size"] = c.dspark_block_size;
    j["dspark_markov_rank"] = c.dspark_markov_rank;
    j["dspark_noise_token_id"] = c.dspark_noise_token_id;
    j["dspark_target_layer_ids"] = c.dspark_target_layer_ids;
  }
  j["compress_rope_theta"] = num(c.compress_rope_theta);
  j["compress_ratios"] = c.compress_ratios;
  return j.dump(indent);
}

LayerKind ModelConfig::layer_kind(int layer) const {
  const int ratio = layer_ratio(layer);
  auto k = layer_kind_of_ratio(ratio);
  if (!k) fail("compress_ratios[{}] = {} is not a known layer kind", layer, ratio);
  return *k;
}

ModelConfig load_config(const std::string& dir) {
  // A llama.cpp deepseek4 GGUF: its metadata stands for config.json (io/gguf_deepseek4.h).
  if (is_gguf_path(dir)) return parse_config(gguf_deepseek4_config_json(GgufModel(dir)), dir);
  if (!std::filesystem::is_directory(dir)) fail("checkpoint folder {} does not exist", dir);
  auto path = (std::filesystem::path(dir) / "config.json").string();
  if (!std::filesystem::exists(path)) fail("{}: no config.json in the checkpoint folder", dir);
  return parse_config(read_text_file(path), path);
}

}  // namespace dsv4
