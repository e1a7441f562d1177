// The deepseek4 GGUF binding (docs/gguf.md): metadata -> config.json, tensor names and layouts -> native
// TensorInfos (views into the map; the only copy is tid2eid, widened from I32 to the I64 the model reads).
#include "io/gguf_deepseek4.h"

#include <cmath>
#include <cstring>
#include <optional>
#include <nlohmann/json.hpp>
#include <regex>

#include "core/block_format.h"
#include "core/error.h"
#include "io/safetensors.h"

namespace dsv4 {

namespace {

constexpr const char* kArch = "deepseek4";

// GGUF suffix after "blk.N." -> native suffix after "layers.N." (llama.cpp's converter map, reversed).
struct NameRow {
  const char* gguf;
  const char* native;
};
constexpr NameRow kLayerNames[] = {
    {"hc_attn_base.weight", "hc_attn_base"},
    {"hc_attn_fn.weight", "hc_attn_fn"},
    {"hc_attn_scale.weight", "hc_attn_scale"},
    {"hc_ffn_base.weight", "hc_ffn_base"},
    {"hc_ffn_fn.weight", "hc_ffn_fn"},
    {"hc_ffn_scale.weight", "hc_ffn_scale"},
    {"attn_sinks.weight", "attn.attn_sink"},
    {"attn_q_a.weight", "attn.wq_a.weight"},
    {"attn_q_b.weight", "attn.wq_b.weight"},
    {"attn_q_a_norm.weight", "attn.q_norm.weight"},
    {"attn_kv.weight", "attn.wkv.weight"},
    {"attn_kv_a_norm.weight", "attn.kv_norm.weight"},
    {"attn_output_a.weight", "attn.wo_a.weight"},
    {"attn_output_b.weight", "attn.wo_b.weight"},
    {"attn_compressor_ape.weight", "attn.compressor.ape"},
    {"attn_compressor_kv.weight", "attn.compressor.wkv.weight"},
    {"attn_compressor_gate.weight", "attn.compressor.wgate.weight"},
    {"attn_compressor_norm.weight", "attn.compressor.norm.weight"},
    {"indexer.attn_q_b.weight", "attn.indexer.wq_b.weight"},
    {"indexer.proj.weight", "attn.indexer.weights_proj.weight"},
    {"indexer_compressor_ape.weight", "attn.indexer.compressor.ape"},
    {"indexer_compressor_kv.weight", "attn.indexer.compressor.wkv.weight"},
    {"indexer_compressor_gate.weight", "attn.indexer.compressor.wgate.weight"},
    {"indexer_compressor_norm.weight", "attn.indexer.compressor.norm.weight"},
    {"attn_norm.weight", "attn_norm.weight"},
    {"ffn_norm.weight", "ffn_norm.weight"},
    {"ffn_gate_shexp.weight", "ffn.shared_experts.w1.weight"},
    {"ffn_up_shexp.weight", "ffn.shared_experts.w3.weight"},
    {"ffn_down_shexp.weight", "ffn.shared_experts.w2.weight"},
    {"ffn_gate_inp.weight", "ffn.gate.weight"},
    {"exp_probs_b.bias", "ffn.gate.bias"},
    {"ffn_gate_tid2eid.weight", "ffn.gate.tid2eid"},
};
constexpr NameRow kExpertNames[] = {
    {"ffn_gate_exps.weight", "ffn.experts.{e}.w1.weight"},
    {"ffn_up_exps.weight", "ffn.experts.{e}.w3.weight"},
    {"ffn_down_exps.weight", "ffn.experts.{e}.w2.weight"},
};
constexpr NameRow kGlobalNames[] = {
    {"token_embd.weight", "embed.weight"},       {"output_norm.weight", "norm.weight"},
    {"output.weight", "head.weight"},            {"output_hc_base.weight", "hc_head_base"},
    {"output_hc_fn.weight", "hc_head_fn"},       {"output_hc_scale.weight", "hc_head_scale"},
};

std::string key(const char* k) { return std::string(kArch) + "." + k; }

// f32 metadata as the decimal the converter was given (1e-06, not 9.99999997e-07): the shortest
// repr that reads back as the same float.
nlohmann::ordered_json number(const GgufFile& f, const std::string& k) {
  const GgufValue& v = f.get(k);
  if (v.type == GgufType::F32) {
    const double d = std::stod(fmt::format("{}", float(v.f)));
    if (d == std::floor(d) && std::fabs(d) < 0x1p53) return int64_t(d);
    return d;
  }
  if (v.type == GgufType::F64) return v.f;
  return f.get_int(k);
}

std::optional<DType> plain_dtype(int ggml_type) {
  switch (ggml_type) {
    case 0: return DType::F32;
    case 1: return DType::F16;
    case 24: return DType::I8;
    case 25: return DType::I16;
    case 26: return DType::I32;
    case 27: return DType::I64;
    case 28: return DType::F64;
    case 30: return DType::BF16;
    default: return std::nullopt;
  }
}

}  // namespace

std::string gguf_deepseek4_native_name(const std::string& name, bool* stacked) {
  if (stacked) *stacked = false;
  for (const auto& r : kGlobalNames)
    if (name == r.gguf) return r.native;
  static const std::regex blk(R"(blk\.(\d+)\.(.+))");
  std::smatch m;
  if (!std::regex_match(name, m, blk)) return name;
  const std::string rest = m[2].str(), prefix = "layers." + m[1].str() + ".";
  for (const auto& r : kLayerNames)
    if (rest == r.gguf) return prefix + r.native;
  for (const auto& r : kExpertNames)
    if (rest == r.gguf) {
      if (stacked) *stacked = true;
      return prefix + r.native;
    }
  return prefix + rest;  // a block tensor llama.cpp has no name for keeps its native suffix
}

std::string gguf_deepseek4_gguf_name(const std::string& name, int* expert) {
  if (expert) *expert = -1;
  for (const auto& r : kGlobalNames)
    if (name == r.native) return r.gguf;
  static const std::regex layer(R"(layers\.(\d+)\.(.+))"), exp(R"(ffn\.experts\.(\d+)\.(w[123])\.weight)");
  std::smatch m, e;
  if (!std::regex_match(name, m, layer)) return name;
  const std::string rest = m[2].str(), prefix = "blk." + m[1].str() + ".";
  for (const auto& r : kLayerNames)
    if (rest == r.native) return prefix + r.gguf;
  if (std::regex_match(rest, e, exp)) {
    for (const auto& r : kExpertNames)
      if (std::string(r.native).ends_with(e[2].str() + ".weight")) {
        if (expert) *expert = std::stoi(e[1].str());
        return prefix + r.gguf;
      }
  }
  return prefix + rest;
}

std::string gguf_deepseek4_config_json(const GgufModel& m) {
  const GgufFile& f = m.first();
  const std::string& arch = f.get_string("general.architecture");
  if (arch != kArch)
    fail("{}: key 'general.architecture' is '{}'; only '{}' (DeepSeek V4) GGUF files are supported", f.path(), arch,
         kArch);
  nlohmann::ordered_json j;
  j["architectures"] = {"DeepseekV4ForCausalLM"};
  j["model_type"] = "deepseek_v4";
  // Every V4 release ships FP8/FP4 linears: a GGUF is converted from one, and its dequantised BF16 weights
  // keep the official activation round trip (model/weights.cpp).
  j["quantization_config"] = {{"activation_scheme", "dynamic"}, {"fmt", "e4m3"}, {"quant_method", "fp8"},
                              {"scale_fmt", "ue8m0"}, {"weight_block_size", {128, 128}}};
  j["vocab_size"] = f.get_int(key("vocab_size"));
  j["hidden_size"] = f.get_int(key("embedding_length"));
  j["num_hidden_layers"] = f.get_int(key("block_count"));
  j["num_attention_heads"] = f.get_int(key("attention.head_count"));
  if (f.find(key("attention.head_count_kv"))) j["num_key_value_heads"] = f.get_int(key("attention.head_count_kv"));
  j["head_dim"] = f.get_int(key("attention.key_length"));
  j["qk_rope_head_dim"] = f.get_int(key("rope.dimension_count"));
  j["q_lora_rank"] = f.get_int(key("attention.q_lora_rank"));
  j["o_lora_rank"] = f.get_int(key("attention.output_lora_rank"));
  j["o_groups"] = f.get_int(key("attention.output_group_count"));
  j["sliding_window"] = f.get_int(key("attention.sliding_window"));
  j["compress_ratios"] = f.get_ints(key("attention.compress_ratios"));
  j["rope_theta"] = number(f, key("rope.freq_base"));
  j["compress_rope_theta"] = number(f, key("attention.compress_rope_freq_base"));
  {
    nlohmann::ordered_json rs;
    rs["type"] = f.get_string(key("rope.scaling.type"));
    rs["factor"] = number(f, key("rope.scaling.factor"));
    rs["original_max_position_embeddings"] = f.get_int(key("rope.scaling.original_context_length"));
    // The converter writes the betas only when config.json has them; these are YaRN's usual values.
    rs["beta_fast"] = f.find(key("rope.scaling.yarn_beta_fast")) ? number(f, key("rope.scaling.yarn_beta_fast")) : nlohmann::ordered_json(32);
    rs["beta_slow"] = f.find(key("rope.scaling.yarn_beta_slow")) ? number(f, key("rope.scaling.yarn_beta_slow")) : nlohmann::ordered_json(1);
    j["rope_scaling"] = rs;
  }
  j["index_n_heads"] = f.get_int(key("attention.indexer.head_count"));
  j["index_head_dim"] = f.get_int(key("attention.indexer.key_length"));
  j["index_topk"] = f.get_int(key("attention.indexer.top_k"));
  j["n_routed_experts"] = f.get_int(key("expert_count"));
  j["num_experts_per_tok"] = f.get_int(key("expert_used_count"));
  j["n_shared_experts"] = f.get_int(key("expert_shared_count"));
  j["moe_intermediate_size"] = f.get_int(key("expert_feed_forward_length"));
  j["num_hash_layers"] = f.get_int(key("hash_layer_count"));
  {
    // llama_expert_gating_func_type: 1 softmax, 2 sigmoid, 3 softmax_weight, 4 sqrt(softplus) (docs/gguf.md).
    const int64_t g = f.get_int(key("expert_gating_func"));
    j["scoring_func"] = g == 4 ? "sqrtsoftplus" : g == 1 ? "softmax" : g == 2 ? "sigmoid" : fmt::format("gating_func_{}", g);
  }
  j["routed_scaling_factor"] = f.find(key("expert_weights_scale")) ? number(f, key("expert_weights_scale")) : nlohmann::ordered_json(1);
  if (f.find(key("expert_weights_norm"))) j["norm_topk_prob"] = f.get_bool(key("expert_weights_norm"));
  // One limit per layer (llama.cpp's get_key_or_arr); absent when the checkpoint does not clamp.
  j["swiglu_limit"] = 0;
  if (const GgufValue* s = f.find(key("swiglu_clamp_exp"))) {
    if (s->type == GgufType::ARRAY) {
      const auto& v = f.get_floats(key("swiglu_clamp_exp"));
      if (v.empty()) fail("{}: key '{}' is an empty array", f.path(), key("swiglu_clamp_exp"));
      j["swiglu_limit"] = std::stod(fmt::format("{}", float(v[0])));
    } else {
      j["swiglu_limit"] = number(f, key("swiglu_clamp_exp"));
    }
  }
  j["hc_mult"] = f.get_int(key("hyper_connection.count"));
  j["hc_sinkhorn_iters"] = f.get_int(key("hyper_connection.sinkhorn_iterations"));
  j["hc_eps"] = number(f, key("hyper_connection.epsilon"));
  j["rms_norm_eps"] = number(f, key("attention.layer_norm_rms_epsilon"));
  if (f.find(key("context_length"))) j["max_position_embeddings"] = f.get_int(key("context_length"));
  if (f.find("tokenizer.ggml.bos_token_id")) j["bos_token_id"] = f.get_int("tokenizer.ggml.bos_token_id");
  if (f.find("tokenizer.ggml.eos_token_id")) j["eos_token_id"] = f.get_int("tokenizer.ggml.eos_token_id");
  if (f.find(key("nextn_predict_layers"))) j["num_nextn_predict_layers"] = f.get_int(key("nextn_predict_layers"));
  // DSpark (0731) has no llama.cpp key we could confirm: our own names under the arch (docs/gguf.md).
  if (f.find(key("dspark.block_size"))) {
    j["dspark_block_size"] = f.get_int(key("dspark.block_size"));
    j["dspark_markov_rank"] = f.get_int(key("dspark.markov_rank"));
    j["dspark_noise_token_id"] = f.get_int(key("dspark.noise_token_id"));
    j["dspark_target_layer_ids"] = f.get_ints(key("dspark.target_layer_ids"));
  }
  // Informational: HF configs say "fp4" for FP4 experts, which llama.cpp stores as MXFP4.
  if (const GgufTensor* t = m.find("blk.0.ffn_gate_exps.weight"); t && t->type == 39) j["expert_dtype"] = "fp4";
  return j.dump(2);
}

// The Checkpoint constructor's GGUF branch (io/safetensors.cpp): every tensor as a native TensorInfo.
void Checkpoint::open_gguf(const std::string& path) {
  gguf_ = std::make_shared<const GgufModel>(path);
  const GgufModel& g = *gguf_;
  // Blocks past the backbone are the MTP / DSpark stages: blk.{n+s} is the native mtp.{s}.
  const int64_t n_layers = g.first().find(key("block_count")) ? g.first().get_int(key("block_count")) : INT64_MAX;
  static const std::regex layer_re(R"(layers\.(\d+)\.(.+))");
  auto add = [&](TensorInfo t) {
    owned_.push_back(std::move(t));
    const TensorInfo& ref = owned_.back();
    if (!index_.emplace(ref.name, &ref).second)
      fail("{}: two GGUF tensors map to the native name '{}'", path, ref.name);
  };
  for (const auto& [gname, gt] : g.tensors()) {
    bool stacked = false;
    std::string native = gguf_deepseek4_native_name(gname, &stacked);
    std::smatch lm;
    if (std::regex_match(native, lm, layer_re) && lm[1].length() < 10 && std::stoll(lm[1].str()) >= n_layers)
      native = fmt::format("mtp.{}.{}", std::stoll(lm[1].str()) - n_layers, lm[2].str());
    const GgmlTypeInfo* ti = ggml_type_info(gt->type);  // GgufFile rejected unknown types
    BlockFormat fmt = BlockFormat::None;
    const bool block = block_format_from_ggml(gt->type, fmt);
    const auto dt = plain_dtype(gt->type);
    if (!block && !dt) fail("{}: tensor '{}' has ggml type {} ({}), which has no native dtype", path, gname, gt->type, ti->name);
    std::vector<int64_t> shape(gt->ne.rbegin(), gt->ne.rend());  // outermost first, like safetensors
    TensorInfo base;
    base.dtype = block ? DType::U8 : *dt;
    base.format = fmt;
    base.file = gt->file;
    if (stacked) {
      // {cols, rows, E}: expert e is the e-th run of rows × row bytes.
      if (gt->ne.size() != 3) fail("{}: stacked expert tensor '{}' has {} dimensions, expected 3", path, gname, gt->ne.size());
      const int64_t n_exp = gt->ne[2], rows = gt->ne[1], cols = gt->ne[0];
      const size_t slice = gt->nbytes / size_t(n_exp);
      for (int64_t e = 0; e < n_exp; ++e) {
        TensorInfo t = base;
        t.name = native;
        t.name.replace(t.name.find("{e}"), 3, std::to_string(e));
        t.shape = {rows, cols};
        t.data = gt->data + size_t(e) * slice;
        t.nbytes = slice;
        add(std::move(t));
      }
      continue;
    }
    TensorInfo t = base;
    t.name = native;
    t.shape = shape;
    t.data = gt->data;
    t.nbytes = gt->nbytes;
    if (t.dtype == DType::I32 && native.ends_with(".ffn.gate.tid2eid")) {
      // The converter stores tid2eid as I32; the model binds I64. A small table: widen a copy.
      auto& bytes = owned_bytes_.emplace_back(gt->nbytes * 2);
      for (size_t k = 0; k < gt->nbytes / 4; ++k) {
        int32_t v;
        std::memcpy(&v, gt->data + 4 * k, 4);
        const int64_t w = v;
        std::memcpy(bytes.data() + 8 * k, &w, 8);
      }
      t.dtype = DType::I64;
      t.data = bytes.data();
      t.nbytes = bytes.size();
    }
    add(std::move(t));
  }
}

Checkpoint::Location Checkpoint::locate_gguf(const uint8_t* p) const {
  for (const auto& f : gguf_->files()) {
    const MappedFile& m = f->mapped();
    if (p >= m.data() && p < m.data() + m.size()) return {&m.path(), uint64_t(p - m.data())};
  }
  fail("address {} lies in no shard of {}", static_cast<const void*>(p), dir_);
}

size_t Checkpoint::num_files() const { return gguf_ ? gguf_->files().size() : files_.size(); }

}  // namespace dsv4
