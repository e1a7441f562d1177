// Test-only GGUF writer and the llama.cpp-style deepseek4 converter of native fixtures (gguf_writer.h).
#include "io/gguf_writer.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "core/dtype.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "io/config.h"
#include "io/gguf_deepseek4.h"
#include "io/safetensors.h"
#include "kernels/blocks.h"

namespace dsv4::test {

void put_bytes(std::vector<uint8_t>& out, const void* p, size_t n) {
  const auto* b = static_cast<const uint8_t*>(p);
  out.insert(out.end(), b, b + n);
}
void put_string(std::vector<uint8_t>& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  put_bytes(out, s.data(), s.size());
}

void GgufWriter::scalar(const std::string& k, GgufType t, const void* v, size_t n) {
  put_string(kv_, k);
  put<uint32_t>(kv_, uint32_t(t));
  put_bytes(kv_, v, n);
  ++n_kv_;
}

void GgufWriter::add_string(const std::string& k, const std::string& v) {
  put_string(kv_, k);
  put<uint32_t>(kv_, uint32_t(GgufType::STRING));
  put_string(kv_, v);
  ++n_kv_;
}

void GgufWriter::add_ints(const std::string& k, GgufType elem, const std::vector<int64_t>& v) {
  put_string(kv_, k);
  put<uint32_t>(kv_, uint32_t(GgufType::ARRAY));
  put<uint32_t>(kv_, uint32_t(elem));
  put<uint64_t>(kv_, v.size());
  for (int64_t x : v) {
    switch (elem) {
      case GgufType::U8: case GgufType::I8: case GgufType::BOOL: put<uint8_t>(kv_, uint8_t(x)); break;
      case GgufType::U16: case GgufType::I16: put<uint16_t>(kv_, uint16_t(x)); break;
      case GgufType::U32: case GgufType::I32: put<uint32_t>(kv_, uint32_t(x)); break;
      default: put<uint64_t>(kv_, uint64_t(x)); break;
    }
  }
  ++n_kv_;
}

void GgufWriter::add_floats(const std::string& k, GgufType elem, const std::vector<double>& v) {
  put_string(kv_, k);
  put<uint32_t>(kv_, uint32_t(GgufType::ARRAY));
  put<uint32_t>(kv_, uint32_t(elem));
  put<uint64_t>(kv_, v.size());
  for (double x : v) elem == GgufType::F32 ? put<float>(kv_, float(x)) : put<double>(kv_, x);
  ++n_kv_;
}

void GgufWriter::add_strings(const std::string& k, const std::vector<std::string>& v) {
  put_string(kv_, k);
  put<uint32_t>(kv_, uint32_t(GgufType::ARRAY));
  put<uint32_t>(kv_, uint32_t(GgufType::STRING));
  put<uint64_t>(kv_, v.size());
  for (auto& s : v) put_string(kv_, s);
  ++n_kv_;
}

void GgufWriter::add_tensor(const std::string& name, int type, std::vector<int64_t> ne, std::vector<uint8_t> bytes) {
  tensors_.push_back({name, type, std::move(ne), std::move(bytes)});
}

std::vector<uint8_t> GgufWriter::build(const std::vector<uint8_t>& kv, size_t n_kv,
                                       const std::vector<const Tensor*>& ts) const {
  std::vector<uint8_t> out;
  put_bytes(out, "GGUF", 4);
  put<uint32_t>(out, version);
  put<uint64_t>(out, ts.size());
  std::vector<uint8_t> extra;
  size_t n_extra = 0;
  if (alignment != 32) {
    put_string(extra, "general.alignment");
    put<uint32_t>(extra, uint32_t(GgufType::U32));
    put<uint32_t>(extra, uint32_t(alignment));
    n_extra = 1;
  }
  put<uint64_t>(out, n_kv + n_extra);
  out.insert(out.end(), kv.begin(), kv.end());
  out.insert(out.end(), extra.begin(), extra.end());
  uint64_t off = 0;
  for (const Tensor* t : ts) {
    put_string(out, t->name);
    put<uint32_t>(out, uint32_t(t->ne.size()));
    for (int64_t n : t->ne) put<uint64_t>(out, uint64_t(n));
    put<uint32_t>(out, uint32_t(t->type));
    put<uint64_t>(out, off);
    off = (off + t->bytes.size() + alignment - 1) / alignment * alignment;
  }
  out.resize((out.size() + alignment - 1) / alignment * alignment, 0);
  for (const Tensor* t : ts) {
    out.insert(out.end(), t->bytes.begin(), t->bytes.end());
    out.resize(out.size() + (alignment - t->bytes.size() % alignment) % alignment, 0);
  }
  return out;
}

std::vector<uint8_t> GgufWriter::bytes() const {
  std::vector<const Tensor*> ts;
  for (auto& t : tensors_) ts.push_back(&t);
  return build(kv_, n_kv_, ts);
}

static void write_file(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
  if (!f) fail("cannot write {}", path);
}

void GgufWriter::write(const std::string& path) const { write_file(path, bytes()); }

std::vector<std::string> GgufWriter::write_split(const std::string& prefix, int n) const {
  std::vector<std::string> paths;
  for (int k = 0; k < n; ++k) {
    GgufWriter meta;
    meta.add_u16("split.no", uint16_t(k));
    meta.add_u16("split.count", uint16_t(n));
    meta.add_i32("split.tensors.count", int32_t(tensors_.size()));
    std::vector<uint8_t> kv = meta.kv_;
    size_t n_kv = meta.n_kv_;
    if (k == 0) kv.insert(kv.end(), kv_.begin(), kv_.end()), n_kv += n_kv_;
    std::vector<const Tensor*> ts;
    for (size_t i = size_t(k); i < tensors_.size(); i += size_t(n)) ts.push_back(&tensors_[i]);
    paths.push_back(fmt::format("{}-{:05}-of-{:05}.gguf", prefix, k + 1, n));
    write_file(paths.back(), build(kv, n_kv, ts));
  }
  return paths;
}

namespace {

constexpr int kF32 = 0, kBF16 = 30, kI32 = 26, kMXFP4 = 39;

int ggml_of(DType d) {
  switch (d) {
    case DType::F32: return kF32;
    case DType::BF16: return kBF16;
    case DType::F16: return 1;
    case DType::I64: return 27;
    case DType::I32: return kI32;
    case DType::I8: return 24;
    default: fail("converter: no GGUF type for dtype {}", dtype_name(d));
  }
}

std::vector<int64_t> reversed(const std::vector<int64_t>& s) { return {s.rbegin(), s.rend()}; }

// FP8 e4m3 with 128×128 e8m0 block scales -> BF16; e4m3 × 2^k has 4 significant bits, so exact.
std::vector<uint8_t> dequant_fp8_bf16(const TensorInfo& w, const TensorInfo& s) {
  const int64_t rows = w.dim(0), cols = w.dim(1), scols = s.dim(1);
  std::vector<uint8_t> out(size_t(rows * cols) * 2);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const float v = e4m3_to_f32(w.data[r * cols + c]) * e8m0_to_f32(s.data[(r / 128) * scols + c / 128]);
      const uint16_t h = f32_to_bf16(v);
      std::memcpy(&out[size_t(r * cols + c) * 2], &h, 2);
    }
  return out;
}

// Native FP4: byte j of a row holds elements 2j (low nibble) and 2j+1, scales one e8m0 per 32. MXFP4
// (ggml block_mxfp4): per 32 elements the e8m0 byte, then qs[j] = element j | element j+16 << 4.
void repack_mxfp4(const TensorInfo& w, const TensorInfo& s, std::vector<uint8_t>& out) {
  const int64_t rows = w.dim(0), cols = w.dim(1) * 2;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t b = 0; b < cols / 32; ++b) {
      out.push_back(s.data[r * (cols / 32) + b]);
      uint8_t v[32];
      for (int j = 0; j < 16; ++j) {
        const uint8_t p = w.data[r * (cols / 2) + b * 16 + j];
        v[2 * j] = p & 15, v[2 * j + 1] = p >> 4;
      }
      for (int j = 0; j < 16; ++j) out.push_back(uint8_t(v[j] | v[j + 16] << 4));
    }
}

}  // namespace

std::string convert_fixture_to_gguf(const std::string& dir, const std::string& out_dir, int split, bool dense_q8_0) {
  const ModelConfig c = load_config(dir);
  const Checkpoint ck(dir);
  GgufWriter w;
  const std::string a = "deepseek4.";
  w.add_string("general.architecture", "deepseek4");
  w.add_string("general.name", std::filesystem::path(dir).filename().string());
  // TextModel.set_gguf_parameters, then DeepseekV4Model's additions (conversion/base.py, deepseek.py).
  w.add_u32(a + "block_count", uint32_t(c.n_layers));
  w.add_u32(a + "context_length", uint32_t(c.max_position_embeddings));
  w.add_u32(a + "embedding_length", uint32_t(c.dim));
  w.add_u32(a + "attention.head_count", uint32_t(c.n_heads));
  w.add_u32(a + "attention.head_count_kv", 1);
  w.add_string(a + "rope.scaling.type", "yarn");
  w.add_f32(a + "rope.scaling.factor", float(c.rope_factor));
  w.add_u32(a + "rope.scaling.original_context_length", uint32_t(c.original_seq_len));
  w.add_f32(a + "rope.scaling.yarn_beta_fast", float(c.beta_fast));
  w.add_f32(a + "rope.scaling.yarn_beta_slow", float(c.beta_slow));
  w.add_f32(a + "rope.freq_base", float(c.rope_theta));
  w.add_f32(a + "attention.layer_norm_rms_epsilon", float(c.norm_eps));
  w.add_u32(a + "expert_count", uint32_t(c.n_routed_experts));
  w.add_u32(a + "expert_used_count", uint32_t(c.n_activated_experts));
  w.add_u32(a + "expert_gating_func", 4);  // sqrtsoftplus
  w.add_u32(a + "attention.key_length", uint32_t(c.head_dim));
  w.add_u32(a + "attention.value_length", uint32_t(c.head_dim));
  w.add_u32("general.file_type", 1);
  w.add_u32(a + "vocab_size", uint32_t(c.vocab_size));
  w.add_u32(a + "rope.dimension_count", uint32_t(c.rope_head_dim));
  w.add_u32(a + "attention.q_lora_rank", uint32_t(c.q_lora_rank));
  w.add_u32(a + "attention.output_lora_rank", uint32_t(c.o_lora_rank));
  w.add_u32(a + "attention.output_group_count", uint32_t(c.o_groups));
  w.add_ints(a + "attention.compress_ratios", GgufType::I32, {c.compress_ratios.begin(), c.compress_ratios.end()});
  w.add_f32(a + "attention.compress_rope_freq_base", float(c.compress_rope_theta));
  w.add_u32(a + "expert_feed_forward_length", uint32_t(c.moe_inter_dim));
  w.add_u32(a + "expert_shared_count", uint32_t(c.n_shared_experts));
  w.add_f32(a + "expert_weights_scale", float(c.route_scale));
  w.add_u32(a + "hash_layer_count", uint32_t(c.n_hash_layers));
  w.add_bool(a + "expert_weights_norm", true);
  if (c.swiglu_limit > 0) w.add_floats(a + "swiglu_clamp_exp", GgufType::F32, std::vector<double>(size_t(c.n_layers), c.swiglu_limit));
  w.add_u32(a + "attention.sliding_window", uint32_t(c.window_size));
  w.add_u32(a + "attention.indexer.head_count", uint32_t(c.index_n_heads));
  w.add_u32(a + "attention.indexer.key_length", uint32_t(c.index_head_dim));
  w.add_u32(a + "attention.indexer.top_k", uint32_t(c.index_topk));
  w.add_u32(a + "nextn_predict_layers", uint32_t(c.n_mtp_layers));
  w.add_u32(a + "hyper_connection.count", uint32_t(c.hc_mult));
  w.add_u32(a + "hyper_connection.sinkhorn_iterations", uint32_t(c.hc_sinkhorn_iters));
  w.add_f32(a + "hyper_connection.epsilon", float(c.hc_eps));
  if (c.is_dspark()) {  // our own keys (docs/gguf.md)
    w.add_u32(a + "dspark.block_size", uint32_t(c.dspark_block_size));
    w.add_u32(a + "dspark.markov_rank", uint32_t(c.dspark_markov_rank));
    w.add_i32(a + "dspark.noise_token_id", c.dspark_noise_token_id);
    w.add_ints(a + "dspark.target_layer_ids", GgufType::I32,
               {c.dspark_target_layer_ids.begin(), c.dspark_target_layer_ids.end()});
  }
  w.add_u32("tokenizer.ggml.bos_token_id", uint32_t(c.bos_token_id));
  w.add_u32("tokenizer.ggml.eos_token_id", uint32_t(c.eos_token_id));

  // The MTP/DSpark stages become the blocks after the backbone, as llama.cpp numbers its nextn blocks.
  auto as_layer = [&](const std::string& n) {
    if (!n.starts_with("mtp.")) return n;
    const size_t dot = n.find('.', 4);
    return fmt::format("layers.{}{}", c.n_layers + std::stoi(n.substr(4, dot - 4)), n.substr(dot));
  };
  // Routed experts, grouped into their stacked tensor (expert order = index order).
  std::map<std::string, std::map<int, const TensorInfo*>> stacks;
  for (const auto& [name, t] : ck.tensors()) {
    if (name.ends_with(".scale")) continue;  // consumed with its weight
    int expert = -1;
    const std::string g = gguf_deepseek4_gguf_name(as_layer(name), &expert);
    if (expert >= 0) {
      stacks[g][expert] = t;
      continue;
    }
    const std::string scale_name = name.substr(0, name.size() - 7) + ".scale";
    const TensorInfo* s = name.ends_with(".weight") ? ck.find(scale_name) : nullptr;
    if (t->dtype == DType::F8_E4M3) {
      if (!s) fail("converter: {} has no scale", name);
      std::vector<uint8_t> bf = dequant_fp8_bf16(*t, *s);
      const int64_t rows = t->dim(0), cols = t->dim(1);
      if (dense_q8_0 && cols % 32 == 0) {
        std::vector<uint8_t> q(size_t(rows * block_row_bytes(BlockFormat::Q8_0, cols)));
        std::vector<float> row(static_cast<size_t>(cols));
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t c = 0; c < cols; ++c) {
            uint16_t h;
            std::memcpy(&h, &bf[size_t(r * cols + c) * 2], 2);
            row[size_t(c)] = bf16_to_f32(h);
          }
          blocks::quantize_row(BlockFormat::Q8_0, row.data(), cols, nullptr,
                               q.data() + r * block_row_bytes(BlockFormat::Q8_0, cols));
        }
        w.add_tensor(g, block_info(BlockFormat::Q8_0).ggml_type, reversed(t->shape), std::move(q));
      } else {
        w.add_tensor(g, kBF16, reversed(t->shape), std::move(bf));
      }
    } else if (t->dtype == DType::I64 && name.ends_with("tid2eid")) {
      std::vector<uint8_t> b(t->nbytes / 2);
      for (size_t k = 0; k < t->nbytes / 8; ++k) {
        int64_t v;
        std::memcpy(&v, t->data + 8 * k, 8);
        const int32_t n = int32_t(v);
        std::memcpy(&b[4 * k], &n, 4);
      }
      w.add_tensor(g, kI32, reversed(t->shape), std::move(b));
    } else {
      w.add_tensor(g, ggml_of(t->dtype), reversed(t->shape), {t->data, t->data + t->nbytes});
    }
  }
  for (const auto& [g, experts] : stacks) {
    // FP4 experts (Flash) repack as MXFP4; FP8 ones (Pro's tiny fixture) dequantise to a BF16 stack.
    std::vector<uint8_t> b;
    int64_t rows = 0, cols = 0;
    int type = kMXFP4;
    for (const auto& [e, t] : experts) {
      const std::string n = t->name;
      const TensorInfo& s = ck.get(n.substr(0, n.size() - 7) + ".scale");
      if (t->dtype == DType::F8_E4M3) {
        type = kBF16, rows = t->dim(0), cols = t->dim(1);
        const auto d = dequant_fp8_bf16(*t, s);
        b.insert(b.end(), d.begin(), d.end());
        continue;
      }
      if (t->dtype != DType::I8) fail("converter: expert {} is neither FP4 packed nor FP8", n);
      rows = t->dim(0), cols = t->dim(1) * 2;
      repack_mxfp4(*t, s, b);
    }
    w.add_tensor(g, type, {cols, rows, int64_t(experts.size())}, std::move(b));
  }
  std::filesystem::create_directories(out_dir);
  const std::string stem = (std::filesystem::path(out_dir) / std::filesystem::path(dir).filename()).string();
  if (split > 1) return w.write_split(stem, split).front();
  w.write(stem + ".gguf");
  return stem + ".gguf";
}

void add_tokenizer_metadata(GgufWriter& w, const std::string& path, int vocab_size) {
  const auto j = nlohmann::json::parse(read_text_file(path));
  std::vector<std::string> tokens(static_cast<size_t>(vocab_size));
  std::vector<int64_t> types(size_t(vocab_size), 5);  // UNUSED until filled
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = fmt::format("[PAD{}]", i);
  for (const auto& [tok, id] : j["model"]["vocab"].items()) tokens[id.get<size_t>()] = tok, types[id.get<size_t>()] = 1;
  // get_vocab_base: added tokens are CONTROL when special or when they look special (<｜…｜>, <|…|>),
  // else USER_DEFINED with ▁ turned into a space.
  for (const auto& a : j["added_tokens"]) {
    std::string s = a["content"];
    const size_t id = a["id"];
    const bool looks = (s.starts_with("<|") && s.ends_with("|>")) || (s.starts_with("<｜") && s.ends_with("｜>"));
    if (a["special"].get<bool>() || looks) {
      types[id] = 3;
    } else {
      for (size_t p; (p = s.find("\xe2\x96\x81")) != std::string::npos;) s.replace(p, 3, " ");
      types[id] = 4;
    }
    tokens[id] = s;
  }
  std::vector<std::string> merges;
  for (const auto& m : j["model"]["merges"])
    merges.push_back(m.is_string() ? m.get<std::string>() : m[0].get<std::string>() + " " + m[1].get<std::string>());
  w.add_string("tokenizer.ggml.model", "gpt2");
  w.add_string("tokenizer.ggml.pre", "deepseek-v3");
  w.add_strings("tokenizer.ggml.tokens", tokens);
  w.add_ints("tokenizer.ggml.token_type", GgufType::I32, types);
  w.add_strings("tokenizer.ggml.merges", merges);
  w.add_u32("tokenizer.ggml.bos_token_id", 0);
  w.add_u32("tokenizer.ggml.eos_token_id", 1);
  w.add_bool("tokenizer.ggml.add_bos_token", false);
}

}  // namespace dsv4::test
