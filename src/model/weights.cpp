// Checkpoint binding (architecture.md §6): every tensor the config implies is looked up by name, its dtype
// decides its format (FP8 with 128×128 scales, FP4 with 1×32 scales, BF16, F32) and its shape is checked;
// linears stay views over the mapped shards.
#include "model/weights.h"

#include <cmath>
#include <cstring>
#include <regex>

#include "core/error.h"

namespace dsv4 {

int64_t MoeWeights::tid2eid_at(int64_t tok, int i, int k) const {
  int64_t v;
  std::memcpy(&v, tid2eid + 8 * (tok * k + i), 8);
  return v;
}

Linear make_linear(const TensorInfo& wt, const TensorInfo* sc, int64_t out, int64_t in) {
  Linear L;
  L.out = out;
  L.in = in;
  L.w = wt.data;
  auto shape_is = [](const TensorInfo& t, int64_t a, int64_t b) {
    return t.shape.size() == 2 && t.shape[0] == a && t.shape[1] == b;
  };
  auto need_scale = [&](int64_t r, int64_t c) {
    if (!sc) fail("tensor '{}' is {} but its scale tensor is missing", wt.name, dtype_name(wt.dtype));
    if (sc->dtype != DType::F8_E8M0 && sc->dtype != DType::F32)
      fail("scale tensor '{}' has dtype {}, expected F8_E8M0 or F32", sc->name, dtype_name(sc->dtype));
    if (!shape_is(*sc, r, c))
      fail("scale tensor '{}' has shape {}, expected [{}, {}]", sc->name, sc->shape_str(), r, c);
    L.scale = sc->data;
    L.scale_f32 = sc->dtype == DType::F32;
    L.scale_cols = c;
  };
  switch (wt.dtype) {
    case DType::F32:
    case DType::BF16:
      L.fmt = wt.dtype == DType::F32 ? Linear::Format::F32 : Linear::Format::BF16;
      if (!shape_is(wt, out, in))
        fail("tensor '{}' has shape {}, expected [{}, {}]", wt.name, wt.shape_str(), out, in);
      break;
    case DType::F8_E4M3:
      L.fmt = Linear::Format::FP8;
      if (!shape_is(wt, out, in))
        fail("tensor '{}' has shape {}, expected [{}, {}]", wt.name, wt.shape_str(), out, in);
      need_scale((out + 127) / 128, (in + 127) / 128);
      break;
    case DType::I8:
    case DType::U8:
      L.fmt = Linear::Format::FP4;
      if (in % 32 || !shape_is(wt, out, in / 2))
        fail("tensor '{}' (packed FP4) has shape {}, expected [{}, {}]", wt.name, wt.shape_str(), out, in / 2);
      need_scale(out, in / 32);
      break;
    default:
      fail("tensor '{}' has dtype {}, not a supported linear weight format", wt.name, dtype_name(wt.dtype));
  }
  if (L.scale_f32)
    for (int64_t i = 0; i < sc->numel(); ++i) {
      float f;
      std::memcpy(&f, sc->data + 4 * i, 4);
      int e;
      if (!(f > 0) || std::frexp(f, &e) != 0.5f)
        fail("scale tensor '{}' holds {} at index {}, not a power of two", sc->name, f, i);
    }
  return L;
}

namespace {

class Binder {
 public:
  Binder(const Checkpoint& c, const ModelConfig& cfg) : ck_(c), cfg_(cfg) {}

  const TensorInfo* take(const std::string& name) {
    const TensorInfo* t = ck_.find(name);
    if (!t) missing_.push_back(name);
    else used_.insert(name);
    return t;
  }

  void check_shape(const TensorInfo& t, std::vector<int64_t> shape) {
    if (t.shape != shape) {
      TensorInfo want;
      want.shape = shape;
      fail("tensor '{}' has shape {}, expected {}", t.name, t.shape_str(), want.shape_str());
    }
  }

  FloatVec floats(const std::string& name, std::vector<int64_t> shape) {
    FloatVec v;
    const TensorInfo* t = take(name);
    if (!t) return v;
    check_shape(*t, shape);
    v.n = size_t(t->numel());
    if (t->dtype == DType::F32 && reinterpret_cast<uintptr_t>(t->data) % 4 == 0) {
      v.p = reinterpret_cast<const float*>(t->data);
      return v;
    }
    v.own.resize(v.n);
    if (t->dtype == DType::F32) std::memcpy(v.own.data(), t->data, v.n * 4);
    else if (t->dtype == DType::BF16)
      for (size_t i = 0; i < v.n; ++i) {
        uint16_t h;
        std::memcpy(&h, t->data + 2 * i, 2);
        v.own[i] = bf16_to_f32(h);
      }
    else fail("tensor '{}' has dtype {}, expected BF16 or F32", name, dtype_name(t->dtype));
    v.p = v.own.data();
    return v;
  }

  Linear linear(const std::string& prefix, int64_t out, int64_t in) {
    const TensorInfo* w = take(prefix + ".weight");
    const TensorInfo* s = ck_.find(prefix + ".scale");
    if (s) used_.insert(prefix + ".scale");
    if (!w) return {};
    return make_linear(*w, s, out, in);
  }

  Linear plain_linear(const std::string& prefix, int64_t out, int64_t in) {
    Linear L = linear(prefix, out, in);
    if (!L.empty() && L.quantized())
      fail("tensor '{}.weight' must be BF16 or F32 (an unquantised linear)", prefix);
    return L;
  }

  HcWeights hc(const std::string& p, int rows, bool head) {
    const int64_t nD = int64_t(cfg_.hc_mult) * cfg_.dim;
    return {floats(p + "_fn", {rows, nD}), floats(p + "_base", {rows}), floats(p + "_scale", {head ? 1 : 3})};
  }

  CompressorWeights compressor(const std::string& p, LayerKind kind, int ratio, int d_c) {
    CompressorWeights c;
    c.ratio = ratio;
    c.d_c = d_c;
    c.overlap = overlapping_compressor(kind);
    const int64_t w = c.width();
    c.wkv = plain_linear(p + ".wkv", w, cfg_.dim);
    c.wgate = plain_linear(p + ".wgate", w, cfg_.dim);
    c.ape = floats(p + ".ape", {ratio, w});
    c.norm = floats(p + ".norm.weight", {d_c});
    return c;
  }

  // layer_id indexes compress_ratios: backbone layers, then the MTP/DSpark stages.
  BlockWeights block(const std::string& p, int layer_id) {
    const ModelConfig& c = cfg_;
    const LayerKind kind = c.layer_kind(layer_id);
    const int ratio = c.layer_ratio(layer_id);
    const int n = c.hc_mult, mix = (2 + n) * n;
    BlockWeights b;
    b.layer_id = layer_id;
    b.hc_attn = hc(p + "hc_attn", mix, false);
    b.hc_ffn = hc(p + "hc_ffn", mix, false);
    b.attn_norm = floats(p + "attn_norm.weight", {c.dim});
    b.ffn_norm = floats(p + "ffn_norm.weight", {c.dim});
    AttentionWeights& a = b.attn;
    a.kind = kind;
    a.ratio = ratio;
    a.wq_a = linear(p + "attn.wq_a", c.q_lora_rank, c.dim);
    a.q_norm = floats(p + "attn.q_norm.weight", {c.q_lora_rank});
    a.wq_b = linear(p + "attn.wq_b", int64_t(c.n_heads) * c.head_dim, c.q_lora_rank);
    a.wkv = linear(p + "attn.wkv", c.head_dim, c.dim);
    a.kv_norm = floats(p + "attn.kv_norm.weight", {c.head_dim});
    a.wo_a = linear(p + "attn.wo_a", int64_t(c.o_groups) * c.o_lora_rank,
                    int64_t(c.n_heads / c.o_groups) * c.head_dim);
    a.wo_b = linear(p + "attn.wo_b", c.dim, int64_t(c.o_groups) * c.o_lora_rank);
    a.sink = floats(p + "attn.attn_sink", {c.n_heads});
    if (has_compressor(kind)) a.comp = compressor(p + "attn.compressor", kind, ratio, c.head_dim);
    if (has_indexer(kind)) {
      a.indexer.wq_b = linear(p + "attn.indexer.wq_b", int64_t(c.index_n_heads) * c.index_head_dim, c.q_lora_rank);
      a.indexer.weights_proj = plain_linear(p + "attn.indexer.weights_proj", c.index_n_heads, c.dim);
      a.indexer.comp = compressor(p + "attn.indexer.compressor", kind, ratio, c.index_head_dim);
    }
    MoeWeights& m = b.moe;
    m.gate = plain_linear(p + "ffn.gate", c.n_routed_experts, c.dim);
    if (layer_id < c.n_hash_layers) {
      const TensorInfo* t = take(p + "ffn.gate.tid2eid");
      if (t) {
        if (t->dtype != DType::I64 && t->dtype != DType::I32)
          fail("tensor '{}' has dtype {}, expected I64", t->name, dtype_name(t->dtype));
        check_shape(*t, {c.vocab_size, c.n_activated_experts});
        if (t->dtype != DType::I64) fail("tensor '{}' must be I64", t->name);
        m.tid2eid = t->data;
        validate_tid2eid(m, t->name);
      }
    } else {
      m.bias = floats(p + "ffn.gate.bias", {c.n_routed_experts});
    }
    m.experts.resize(size_t(c.n_routed_experts));
    for (int e = 0; e < c.n_routed_experts; ++e) m.experts[size_t(e)] = expert(p + "ffn.experts." + std::to_string(e));
    m.shared = expert(p + "ffn.shared_experts");
    return b;
  }

  ExpertWeights expert(const std::string& p) {
    return {linear(p + ".w1", cfg_.moe_inter_dim, cfg_.dim), linear(p + ".w2", cfg_.dim, cfg_.moe_inter_dim),
            linear(p + ".w3", cfg_.moe_inter_dim, cfg_.dim)};
  }

  void validate_tid2eid(const MoeWeights& m, const std::string& name) {
    const int k = cfg_.n_activated_experts;
    for (int64_t tok = 0; tok < cfg_.vocab_size; ++tok)
      for (int i = 0; i < k; ++i) {
        int64_t e = m.tid2eid_at(tok, i, k);
        if (e < 0 || e >= cfg_.n_routed_experts)
          fail("tensor '{}': row {} holds expert id {} outside [0, {})", name, tok, e, cfg_.n_routed_experts);
        for (int j = 0; j < i; ++j)
          if (m.tid2eid_at(tok, j, k) == e) fail("tensor '{}': row {} repeats expert id {}", name, tok, e);
      }
  }

  void finish() {
    std::vector<std::string> unexpected;
    static const std::regex ignored(R"(mtp\.\d+\..*(emb.*|head\.weight))");
    for (auto& [name, t] : ck_.tensors())
      if (!used_.count(name) && !std::regex_match(name, ignored)) unexpected.push_back(name);
    if (missing_.empty() && unexpected.empty()) return;
    auto list = [](const std::vector<std::string>& v) {
      std::string s;
      for (size_t i = 0; i < v.size() && i < 20; ++i) s += "\n  " + v[i];
      if (v.size() > 20) s += fmt::format("\n  ... and {} more", v.size() - 20);
      return s;
    };
    std::string msg = fmt::format("checkpoint {} does not match its config.json:", ck_.dir());
    if (!missing_.empty()) msg += fmt::format("\nmissing tensors ({}):{}", missing_.size(), list(missing_));
    if (!unexpected.empty()) msg += fmt::format("\nunexpected tensors ({}):{}", unexpected.size(), list(unexpected));
    throw Error(msg);
  }

 private:
  const Checkpoint& ck_;
  const ModelConfig& cfg_;
  std::set<std::string> used_;
  std::vector<std::string> missing_;
};

}  // namespace

ModelWeights bind_weights(const Checkpoint& ck, const ModelConfig& c) {
  Binder b(ck, c);
  ModelWeights w;
  w.embed = b.plain_linear("embed", c.vocab_size, c.dim);
  w.head = b.plain_linear("head", c.vocab_size, c.dim);
  w.norm = b.floats("norm.weight", {c.dim});
  w.hc_head = b.hc("hc_head", c.hc_mult, true);
  for (int l = 0; l < c.n_layers; ++l)
    w.blocks.push_back(b.block(fmt::format("layers.{}.", l), l));
  if (c.is_dspark()) {
    auto d = std::make_unique<DSparkWeights>();
    for (int s = 0; s < c.n_mtp_layers; ++s)
      d->stages.push_back(b.block(fmt::format("mtp.{}.", s), c.n_layers + s));
    const int64_t taps = int64_t(c.dspark_target_layer_ids.size()) * c.dim;
    const std::string last = fmt::format("mtp.{}.", c.n_mtp_layers - 1);
    d->main_proj = b.linear("mtp.0.main_proj", c.dim, taps);
    d->main_norm = b.floats("mtp.0.main_norm.weight", {c.dim});
    d->norm = b.floats(last + "norm.weight", {c.dim});
    d->hc_head = b.hc(last + "hc_head", c.hc_mult, true);
    d->markov_w1 = b.plain_linear(last + "markov_head.markov_w1", c.vocab_size, c.dspark_markov_rank);
    d->markov_w2 = b.plain_linear(last + "markov_head.markov_w2", c.vocab_size, c.dspark_markov_rank);
    d->confidence = b.plain_linear(last + "confidence_head.proj", 1, c.dim + c.dspark_markov_rank);
    w.dspark = std::move(d);
  } else if (c.n_mtp_layers > 0 && ck.find("mtp.0.e_proj.weight")) {
    auto m = std::make_unique<MtpWeights>();
    m->block = b.block("mtp.0.", c.n_layers);
    m->e_proj = b.linear("mtp.0.e_proj", c.dim, c.dim);
    m->h_proj = b.linear("mtp.0.h_proj", c.dim, c.dim);
    m->enorm = b.floats("mtp.0.enorm.weight", {c.dim});
    m->hnorm = b.floats("mtp.0.hnorm.weight", {c.dim});
    m->norm = b.floats("mtp.0.norm.weight", {c.dim});
    m->hc_head = b.hc("mtp.0.hc_head", c.hc_mult, true);
    w.mtp = std::move(m);
  }
  b.finish();
  return w;
}

}  // namespace dsv4
