#include "cli/random_checkpoint.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/thread_pool.h"
#include "io/config.h"
#include "io/safetensors_writer.h"
#include "model/schema.h"

namespace dsv4 {

namespace {

uint64_t mix(uint64_t x) {  // splitmix64
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
uint64_t hash_str(const std::string& s, uint64_t seed) {
  uint64_t h = mix(seed);
  for (unsigned char c : s) h = mix(h ^ c);
  return h;
}

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(mix(seed)) {}
  uint64_t next() { return s = mix(s); }
  float uniform() { return float(next() >> 40) * (1.0f / 16777216.0f); }
  // Irwin–Hall of four 16-bit uniforms: mean 0, variance 1, cheap enough for billions of values.
  float normal() {
    uint64_t r = next();
    float sum = 0;
    for (int i = 0; i < 4; ++i) sum += float((r >> (16 * i)) & 0xffff) * (1.0f / 65536.0f);
    return (sum - 2.0f) * 1.7320508f;
  }
};

enum class Kind { FP8, FP4, BF16Mat, Norm, F32Normal, F32Uniform, Tid2Eid };

struct Item {
  std::string name;  // without .weight/.scale for linears
  Kind kind;
  int64_t rows, cols;
  float a = 0, b = 0;  // std (normal), or [a, b] (uniform)
};

std::vector<TensorDecl> decls_of(const Item& it) {
  switch (it.kind) {
    case Kind::FP8:
      return {{it.name + ".weight", DType::F8_E4M3, {it.rows, it.cols}},
              {it.name + ".scale", DType::F8_E8M0, {(it.rows + 127) / 128, (it.cols + 127) / 128}}};
    case Kind::FP4:
      return {{it.name + ".weight", DType::I8, {it.rows, it.cols / 2}},
              {it.name + ".scale", DType::F8_E8M0, {it.rows, it.cols / 32}}};
    case Kind::BF16Mat: return {{it.name + ".weight", DType::BF16, {it.rows, it.cols}}};
    case Kind::Norm: return {{it.name, DType::BF16, {it.rows}}};
    case Kind::Tid2Eid: return {{it.name, DType::I64, {it.rows, it.cols}}};
    default:
      if (it.cols == 0) return {{it.name, DType::F32, {it.rows}}};
      return {{it.name, DType::F32, {it.rows, it.cols}}};
  }
}

// Generates and writes one item; bands of 128 rows are produced in parallel and written in order.
void emit(const Item& it, uint64_t seed, SafetensorsStreamWriter& w, ThreadPool& pool) {
  const uint64_t ts = hash_str(it.name, seed);
  const int64_t R = it.rows, C = std::max<int64_t>(it.cols, 1);
  if (it.kind == Kind::Tid2Eid) {
    std::vector<int64_t> ids(size_t(R * C));
    const int64_t E = int64_t(it.a);
    Rng rng(ts);
    for (int64_t r = 0; r < R; ++r)
      for (int64_t i = 0; i < C; ++i) {
        int64_t e;
        do e = int64_t(rng.next() % uint64_t(E));
        while (std::find(ids.begin() + r * C, ids.begin() + r * C + i, e) != ids.begin() + r * C + i);
        ids[size_t(r * C + i)] = e;
      }
    w.write(ids.data(), ids.size() * 8);
    return;
  }
  const int64_t band = 128, nb = (R + band - 1) / band;
  std::vector<uint8_t> scales;
  const int64_t sc_cols = it.kind == Kind::FP8 ? (C + 127) / 128 : C / 32;
  const int64_t group = 8;  // bands generated per parallel round
  for (int64_t b0 = 0; b0 < nb; b0 += group) {
    const int64_t b1 = std::min(nb, b0 + group);
    std::vector<std::vector<uint8_t>> out(size_t(b1 - b0)), sc(size_t(b1 - b0));
    pool.parallel_for(size_t(b1 - b0), [&](size_t i0, size_t i1) {
      for (size_t i = i0; i < i1; ++i) {
        const int64_t r0 = (b0 + int64_t(i)) * band, rows = std::min(band, R - r0);
        Rng rng(mix(ts ^ uint64_t(b0 + int64_t(i)) * 0x100000001b3ull));
        std::vector<float> v(size_t(rows * C));
        for (int64_t r = 0; r < rows; ++r) {
          // A mild per-row spread so block scales differ (fixtures README §5).
          float row_scale = it.kind == Kind::FP8 || it.kind == Kind::FP4 || it.kind == Kind::BF16Mat
                                ? std::exp(0.3f * rng.normal())
                                : 1.0f;
          for (int64_t c = 0; c < C; ++c) {
            float x = it.kind == Kind::F32Uniform || it.kind == Kind::Norm ? it.a + (it.b - it.a) * rng.uniform()
                                                                           : it.a * rng.normal() * row_scale;
            v[size_t(r * C + c)] = x;
          }
        }
        auto& o = out[i];
        switch (it.kind) {
          case Kind::FP8: {
            o.resize(size_t(rows * C));
            sc[i].resize(size_t(sc_cols));
            for (int64_t cb = 0; cb < C; cb += 128) {
              const int64_t ce = std::min(C, cb + 128);
              float amax = 0;
              for (int64_t r = 0; r < rows; ++r)
                for (int64_t c = cb; c < ce; ++c) amax = std::max(amax, std::fabs(v[size_t(r * C + c)]));
              float s = ceil_pow2_scale(std::max(amax, 1e-30f), 1.0f / 448.0f);
              int e;
              std::frexp(s, &e);
              sc[i][size_t(cb / 128)] = uint8_t(e - 1 + 127);
              for (int64_t r = 0; r < rows; ++r)
                for (int64_t c = cb; c < ce; ++c) o[size_t(r * C + c)] = f32_to_e4m3(v[size_t(r * C + c)] / s);
            }
            break;
          }
          case Kind::FP4: {
            o.resize(size_t(rows * C / 2));
            sc[i].resize(size_t(rows * sc_cols));
            for (int64_t r = 0; r < rows; ++r)
              for (int64_t cb = 0; cb < C; cb += 32) {
                float amax = 0;
                for (int64_t c = cb; c < cb + 32; ++c) amax = std::max(amax, std::fabs(v[size_t(r * C + c)]));
                float s = ceil_pow2_scale(std::max(amax, 1e-30f), 1.0f / 6.0f);
                int e;
                std::frexp(s, &e);
                sc[i][size_t(r * sc_cols + cb / 32)] = uint8_t(e - 1 + 127);
                for (int64_t c = cb; c < cb + 32; c += 2) {
                  uint8_t lo = f32_to_e2m1(v[size_t(r * C + c)] / s), hi = f32_to_e2m1(v[size_t(r * C + c + 1)] / s);
                  o[size_t((r * C + c) / 2)] = uint8_t(lo | (hi << 4));
                }
              }
            break;
          }
          case Kind::BF16Mat:
          case Kind::Norm:
            o.resize(v.size() * 2);
            for (size_t k = 0; k < v.size(); ++k) {
              uint16_t h = f32_to_bf16(v[k]);
              std::memcpy(o.data() + 2 * k, &h, 2);
            }
            break;
          default:
            o.resize(v.size() * 4);
            std::memcpy(o.data(), v.data(), o.size());
        }
      }
    });
    for (size_t i = 0; i < out.size(); ++i) {
      w.write(out[i].data(), out[i].size());
      if (it.kind == Kind::FP4) scales.insert(scales.end(), sc[i].begin(), sc[i].end());
      if (it.kind == Kind::FP8) {
        // FP8 scales are per 128×128 block: one row of the scale matrix per band.
        scales.insert(scales.end(), sc[i].begin(), sc[i].end());
      }
    }
  }
  if (!scales.empty()) w.write(scales.data(), scales.size());
}

ModelConfig make_config(const RandomCheckpointSpec& s) {
  ModelConfig c;
  c.model_type = "deepseek_v4";
  if (s.like == "flash" || s.like == "pro") {
    const bool pro = s.like == "pro";
    c.vocab_size = 129280;
    c.dim = pro ? 7168 : 4096;
    c.n_heads = pro ? 128 : 64;
    c.head_dim = 512;
    c.q_lora_rank = pro ? 1536 : 1024;
    c.o_groups = pro ? 16 : 8;
    c.o_lora_rank = 1024;
    c.n_routed_experts = pro ? 384 : 256;
    c.n_activated_experts = 6;
    c.moe_inter_dim = pro ? 3072 : 2048;
    c.index_n_heads = 64;
    c.index_topk = pro ? 1024 : 512;
    c.route_scale = pro ? 2.5 : 1.5;
  } else if (s.like == "tiny") {
    c.vocab_size = 512;
    c.dim = 256;
    c.n_heads = 4;
    c.head_dim = 128;
    c.q_lora_rank = 128;
    c.o_groups = 2;
    c.o_lora_rank = 64;
    c.n_routed_experts = 8;
    c.n_activated_experts = 2;
    c.moe_inter_dim = 128;
    c.index_n_heads = 16;
    c.index_topk = 8;
    c.route_scale = 1.5;
  } else {
    fail("--like must be flash, pro or tiny (got '{}')", s.like);
  }
  if (s.layers < 1) fail("--layers must be at least 1");
  if (s.experts > 0) c.n_routed_experts = s.experts;
  if (s.vocab > 0) c.vocab_size = s.vocab;
  if (c.n_activated_experts > c.n_routed_experts) c.n_activated_experts = c.n_routed_experts;
  c.n_layers = s.layers;
  c.rope_head_dim = 64;
  c.window_size = s.like == "tiny" ? 8 : 128;
  c.index_head_dim = 128;
  c.n_shared_experts = 1;
  c.n_hash_layers = s.hash_layers >= 0 ? std::min(s.hash_layers, s.layers) : std::min(3, s.layers / 2);
  // The bulk of both models alternates CSA and HCA layers.
  for (int l = 0; l < s.layers; ++l)
    c.compress_ratios.push_back(compress_ratio(l % 2 == 0 ? LayerKind::CSA : LayerKind::HCA));
  if (s.mtp) c.compress_ratios.push_back(compress_ratio(LayerKind::SlidingWindow));
  c.n_mtp_layers = s.mtp ? 1 : 0;
  // The values every V4 release shares (architecture.md §2).
  c.hc_mult = 4;
  c.hc_sinkhorn_iters = 20;
  c.rope_theta = 10000;
  c.compress_rope_theta = 160000;
  c.rope_factor = 16;
  c.original_seq_len = 65536;
  c.beta_fast = 32;
  c.beta_slow = 1;
  c.swiglu_limit = 10;
  c.score_func = "sqrtsoftplus";
  c.max_position_embeddings = 1048576;
  c.expert_dtype = s.fp8_experts ? "" : "fp4";
  return c;
}

// The schema's fill for an item; routed experts are FP4 unless the Base (FP8) format is asked for.
Item item_of(const SchemaItem& it, const ModelConfig& c, bool fp4) {
  const SchemaEntry& e = *it.entry;
  Item r{it.name, Kind::F32Normal, it.rows, it.cols, e.init.a, e.init.b};
  if (e.init.kind == Init::FanIn) r.a = e.init.a / std::sqrt(float(it.cols));
  if (e.init.kind == Init::FanInD) r.a = float(double(e.init.a) / std::sqrt(double(it.cols)));
  switch (e.form) {
    case Form::Quant: r.kind = e.role == Role::RoutedExpert && fp4 ? Kind::FP4 : Kind::FP8; break;
    case Form::Plain: r.kind = Kind::BF16Mat; break;
    case Form::Ids:
      r.kind = Kind::Tid2Eid;
      r.a = float(c.n_routed_experts);
      break;
    case Form::Vector:
      r.kind = e.shipped == DType::BF16 ? Kind::Norm : e.init.kind == Init::Uniform ? Kind::F32Uniform : Kind::F32Normal;
      break;
  }
  return r;
}

}  // namespace

void write_random_checkpoint(const RandomCheckpointSpec& spec, const std::string& dir) {
  const ModelConfig c = make_config(spec);
  const bool fp4 = !spec.fp8_experts;
  std::filesystem::create_directories(dir);
  {
    std::ofstream f(dir + "/config.json");
    f << to_hf_config_json(c) << "\n";
    if (!f) fail("cannot write {}/config.json", dir);
  }
  parse_config(to_hf_config_json(c), "generated config");  // the engine must accept what we write
  // One shard for the global tensors, then one per layer (the MTP block included).
  std::vector<std::vector<Item>> shards(1);
  for (const SchemaItem& it : schema_items(c, {.mtp = spec.mtp})) {
    const size_t s = size_t(it.layer + 1);
    if (shards.size() <= s) shards.resize(s + 1);
    shards[s].push_back(item_of(it, c, fp4));
  }
  nlohmann::ordered_json index;
  index["metadata"] = {{"total_size", 0}};
  index["weight_map"] = nlohmann::ordered_json::object();
  size_t total = 0;
  ThreadPool& pool = ThreadPool::global();
  for (size_t s = 0; s < shards.size(); ++s) {
    const std::string file = fmt::format("model-{:05d}-of-{:05d}.safetensors", s + 1, shards.size());
    std::vector<TensorDecl> decls;
    for (auto& it : shards[s])
      for (auto& d : decls_of(it)) {
        decls.push_back(d);
        index["weight_map"][d.name] = file;
        total += d.nbytes();
      }
    SafetensorsStreamWriter w(dir + "/" + file, decls);
    for (auto& it : shards[s]) emit(it, spec.seed, w, pool);
    w.close();
  }
  index["metadata"]["total_size"] = total;
  std::ofstream f(dir + "/model.safetensors.index.json");
  f << index.dump(2) << "\n";
  if (!f) fail("cannot write {}/model.safetensors.index.json", dir);
}

}  // namespace dsv4
