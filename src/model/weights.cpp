// Checkpoint binding (architecture.md §6): every tensor the schema (model/schema.h) implies for the config is
// looked up by name, its dtype decides its format (FP8 with 128×128 scales, FP4 with 1×32 scales, BF16, F32)
// and its shape is checked; linears stay views over the mapped shards.
#include "model/weights.h"

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "model/schema.h"

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
  if (wt.format != BlockFormat::None) {
    L.fmt = Linear::Format::Block;
    L.block = wt.format;
    L.act_quant_site = true;
    if (!shape_is(wt, out, in))
      fail("tensor '{}' ({}) has shape {}, expected [{}, {}]", wt.name, block_name(wt.format), wt.shape_str(), out, in);
    if (sc) fail("tensor '{}' is {} and carries its scales in its blocks, but '{}' exists", wt.name,
                 block_name(wt.format), sc->name);
    return L;
  }
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

// Walks the schema's items for the config and routes each bound view into the model structure; what
// exists, its name and its shape come from the table, only the destination field is code.
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

  FloatVec floats(const SchemaItem& it) {
    FloatVec v;
    const std::string name = it.weight_name();
    const TensorInfo* t = take(name);
    if (!t) return v;
    check_shape(*t, it.shape());
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

  Linear linear(const SchemaItem& it) {
    const TensorInfo* w = take(it.weight_name());
    const TensorInfo* s = ck_.find(it.scale_name());
    if (s) used_.insert(it.scale_name());
    if (!w) return {};
    Linear L = make_linear(*w, s, it.rows, it.cols);
    // The embedding and head are BF16 in every release; a GGUF may hold them block-quantised (llama.cpp's
    // Q4_K_M files), which runs, but FP8/FP4 there would be a malformed checkpoint.
    if (it.entry->form == Form::Plain && L.quantized() && L.fmt != Linear::Format::Block)
      fail("tensor '{}' must be BF16 or F32 (an unquantised linear)", it.weight_name());
    if (it.entry->form == Form::Plain) L.act_quant_site = false;
    // A converter that dequantised the official FP8/FP4 weights (GGUF BF16) keeps their numerics.
    if (it.entry->form == Form::Quant && cfg_.quant_method == "fp8") L.act_quant_site = true;
    return L;
  }

  const uint8_t* tid2eid(const SchemaItem& it) {
    const TensorInfo* t = take(it.weight_name());
    if (!t) return nullptr;
    if (t->dtype != DType::I64 && t->dtype != DType::I32)
      fail("tensor '{}' has dtype {}, expected I64", t->name, dtype_name(t->dtype));
    check_shape(*t, it.shape());
    if (t->dtype != DType::I64) fail("tensor '{}' must be I64", t->name);
    validate_tid2eid(t->data, t->name);
    return t->data;
  }

  void validate_tid2eid(const uint8_t* ids, const std::string& name) {
    MoeWeights m;
    m.tid2eid = ids;
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

  // layer_id indexes compress_ratios: backbone layers, then the MTP/DSpark stages.
  void init_block(BlockWeights& b, int layer_id) {
    b.layer_id = layer_id;
    b.attn.kind = cfg_.layer_kind(layer_id);
    b.attn.ratio = cfg_.layer_ratio(layer_id);
    b.moe.experts.resize(size_t(cfg_.n_routed_experts));
  }

  Linear compressor_linear(CompressorWeights& c, const BlockWeights& b, int d_c, const SchemaItem& it) {
    c.ratio = b.attn.ratio;
    c.d_c = d_c;
    c.overlap = overlapping_compressor(b.attn.kind);
    return linear(it);
  }

  void place(ModelWeights& w, const SchemaItem& it) {
    BlockWeights* b = nullptr;
    if (it.layer >= 0 && it.layer < cfg_.n_layers) b = &w.blocks[size_t(it.layer)];
    else if (it.stage >= 0 && w.dspark) b = &w.dspark->stages[size_t(it.stage)];
    else if (it.stage >= 0 && w.mtp) b = &w.mtp->block;
    MtpWeights* m = w.mtp.get();
    DSparkWeights* d = w.dspark.get();
    switch (it.entry->id) {
      case TensorId::embed: w.embed = linear(it); break;
      case TensorId::head: w.head = linear(it); break;
      case TensorId::norm: w.norm = floats(it); break;
      case TensorId::hc_head_fn: w.hc_head.fn = floats(it); break;
      case TensorId::hc_head_base: w.hc_head.base = floats(it); break;
      case TensorId::hc_head_scale: w.hc_head.scale = floats(it); break;
      case TensorId::hc_attn_fn: b->hc_attn.fn = floats(it); break;
      case TensorId::hc_attn_base: b->hc_attn.base = floats(it); break;
      case TensorId::hc_attn_scale: b->hc_attn.scale = floats(it); break;
      case TensorId::hc_ffn_fn: b->hc_ffn.fn = floats(it); break;
      case TensorId::hc_ffn_base: b->hc_ffn.base = floats(it); break;
      case TensorId::hc_ffn_scale: b->hc_ffn.scale = floats(it); break;
      case TensorId::attn_norm: b->attn_norm = floats(it); break;
      case TensorId::ffn_norm: b->ffn_norm = floats(it); break;
      case TensorId::wq_a: b->attn.wq_a = linear(it); break;
      case TensorId::q_norm: b->attn.q_norm = floats(it); break;
      case TensorId::wq_b: b->attn.wq_b = linear(it); break;
      case TensorId::wkv: b->attn.wkv = linear(it); break;
      case TensorId::kv_norm: b->attn.kv_norm = floats(it); break;
      case TensorId::wo_a: b->attn.wo_a = linear(it); break;
      case TensorId::wo_b: b->attn.wo_b = linear(it); break;
      case TensorId::attn_sink: b->attn.sink = floats(it); break;
      case TensorId::comp_wkv: b->attn.comp.wkv = compressor_linear(b->attn.comp, *b, cfg_.head_dim, it); break;
      case TensorId::comp_wgate: b->attn.comp.wgate = linear(it); break;
      case TensorId::comp_ape: b->attn.comp.ape = floats(it); break;
      case TensorId::comp_norm: b->attn.comp.norm = floats(it); break;
      case TensorId::idx_wq_b: b->attn.indexer.wq_b = linear(it); break;
      case TensorId::idx_weights_proj: b->attn.indexer.weights_proj = linear(it); break;
      case TensorId::idx_comp_wkv:
        b->attn.indexer.comp.wkv = compressor_linear(b->attn.indexer.comp, *b, cfg_.index_head_dim, it);
        break;
      case TensorId::idx_comp_wgate: b->attn.indexer.comp.wgate = linear(it); break;
      case TensorId::idx_comp_ape: b->attn.indexer.comp.ape = floats(it); break;
      case TensorId::idx_comp_norm: b->attn.indexer.comp.norm = floats(it); break;
      case TensorId::gate: b->moe.gate = linear(it); break;
      case TensorId::gate_tid2eid: b->moe.tid2eid = tid2eid(it); break;
      case TensorId::gate_bias: b->moe.bias = floats(it); break;
      case TensorId::expert_w1: b->moe.experts[size_t(it.expert)].w1 = linear(it); break;
      case TensorId::expert_w2: b->moe.experts[size_t(it.expert)].w2 = linear(it); break;
      case TensorId::expert_w3: b->moe.experts[size_t(it.expert)].w3 = linear(it); break;
      case TensorId::shared_w1: b->moe.shared.w1 = linear(it); break;
      case TensorId::shared_w2: b->moe.shared.w2 = linear(it); break;
      case TensorId::shared_w3: b->moe.shared.w3 = linear(it); break;
      case TensorId::mtp_e_proj: m->e_proj = linear(it); break;
      case TensorId::mtp_h_proj: m->h_proj = linear(it); break;
      case TensorId::mtp_enorm: m->enorm = floats(it); break;
      case TensorId::mtp_hnorm: m->hnorm = floats(it); break;
      case TensorId::mtp_norm: m->norm = floats(it); break;
      case TensorId::mtp_hc_head_fn: m->hc_head.fn = floats(it); break;
      case TensorId::mtp_hc_head_base: m->hc_head.base = floats(it); break;
      case TensorId::mtp_hc_head_scale: m->hc_head.scale = floats(it); break;
      case TensorId::ds_main_proj: d->main_proj = linear(it); break;
      case TensorId::ds_main_norm: d->main_norm = floats(it); break;
      case TensorId::ds_norm: d->norm = floats(it); break;
      case TensorId::ds_hc_head_fn: d->hc_head.fn = floats(it); break;
      case TensorId::ds_hc_head_base: d->hc_head.base = floats(it); break;
      case TensorId::ds_hc_head_scale: d->hc_head.scale = floats(it); break;
      case TensorId::ds_markov_w1: d->markov_w1 = linear(it); break;
      case TensorId::ds_markov_w2: d->markov_w2 = linear(it); break;
      case TensorId::ds_confidence: d->confidence = linear(it); break;
    }
  }

  void finish() {
    std::vector<std::string> unexpected;
    for (auto& [name, t] : ck_.tensors())
      if (!used_.count(name) && !schema_ignored(name)) unexpected.push_back(name);
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
  const bool mtp = has_preview_mtp(c, ck);
  const std::vector<SchemaItem> items = schema_items(c, {.mtp = mtp});
  Binder b(ck, c);
  ModelWeights w;
  w.blocks.resize(size_t(c.n_layers));
  for (int l = 0; l < c.n_layers; ++l) b.init_block(w.blocks[size_t(l)], l);
  if (c.is_dspark()) {
    w.dspark = std::make_unique<DSparkWeights>();
    w.dspark->stages.resize(size_t(c.n_mtp_layers));
    for (int s = 0; s < c.n_mtp_layers; ++s) b.init_block(w.dspark->stages[size_t(s)], c.n_layers + s);
  } else if (mtp) {
    w.mtp = std::make_unique<MtpWeights>();
    b.init_block(w.mtp->block, c.n_layers);
  }
  for (const SchemaItem& it : items) b.place(w, it);
  b.finish();
  return w;
}

}  // namespace dsv4
