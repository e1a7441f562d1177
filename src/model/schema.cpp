// The checkpoint schema: the table and what is derived from it (names, shapes, roles, per-token cost).
#include "model/schema.h"

#include <algorithm>
#include <regex>

#include "core/error.h"
#include "io/safetensors.h"

namespace dsv4 {

namespace {

using T = TensorId;
using D = Dim;
using C = Cost;
using enum Scope;
using enum When;
using enum Form;
using enum Role;
constexpr DType BF = DType::BF16, F32 = DType::F32, FP8 = DType::F8_E4M3, I8 = DType::I8, I64 = DType::I64;
// make-model's fills: linears N(0, gain/√in), norms U[0.9, 1.1], hc_* like the reference's init.
constexpr Init kFanIn{Init::FanIn, 1}, kHalfFanIn{Init::FanIn, 0.5f}, kNorm{Init::Uniform, 0.9f, 1.1f},
    kHcFn{Init::FanInD, 1}, kHcScale{Init::Uniform, 0.5f, 1.5f}, kNormal1{Init::Normal, 1},
    kNormalHalf{Init::Normal, 0.5f}, kBias{Init::Normal, 0.1f}, kIds{Init::Ids};

// Rows are in checkpoint order: binding reports missing tensors and make-model writes shards in it.
const std::vector<SchemaEntry> kTable = {
    // id, name pattern, scope, when, form, role, rows, cols, shipped dtype, cost, optional, make-model init
    {T::embed,             "embed",                               Global,      Always,     Plain,  Embedding,    D::V,             D::D,             BF,  C::None,   false, kNormal1},
    {T::head,              "head",                                Global,      Always,     Plain,  Head,         D::V,             D::D,             BF,  C::Linear, false, kFanIn},
    {T::norm,              "norm.weight",                         Global,      Always,     Vector, Dense,        D::D,             D::None,          BF,  C::Read,   false, kNorm},
    {T::hc_head_fn,        "hc_head_fn",                          Global,      Always,     Vector, Dense,        D::HcMult,        D::nD,            F32, C::Read,   false, kHcFn},
    {T::hc_head_base,      "hc_head_base",                        Global,      Always,     Vector, Dense,        D::HcMult,        D::None,          F32, C::None,   false, kNormalHalf},
    {T::hc_head_scale,     "hc_head_scale",                       Global,      Always,     Vector, Dense,        D::One,           D::None,          F32, C::None,   false, kHcScale},
    // Every block: backbone layers, the MTP block, DSpark stages.
    {T::hc_attn_fn,        "hc_attn_fn",                          Block,       Always,     Vector, Dense,        D::HcMix,         D::nD,            F32, C::Read,   false, kHcFn},
    {T::hc_attn_base,      "hc_attn_base",                        Block,       Always,     Vector, Dense,        D::HcMix,         D::None,          F32, C::None,   false, kNormalHalf},
    {T::hc_attn_scale,     "hc_attn_scale",                       Block,       Always,     Vector, Dense,        D::Three,         D::None,          F32, C::None,   false, kHcScale},
    {T::hc_ffn_fn,         "hc_ffn_fn",                           Block,       Always,     Vector, Dense,        D::HcMix,         D::nD,            F32, C::Read,   false, kHcFn},
    {T::hc_ffn_base,       "hc_ffn_base",                         Block,       Always,     Vector, Dense,        D::HcMix,         D::None,          F32, C::None,   false, kNormalHalf},
    {T::hc_ffn_scale,      "hc_ffn_scale",                        Block,       Always,     Vector, Dense,        D::Three,         D::None,          F32, C::None,   false, kHcScale},
    {T::attn_norm,         "attn_norm.weight",                    Block,       Always,     Vector, Dense,        D::D,             D::None,          BF,  C::None,   false, kNorm},
    {T::ffn_norm,          "ffn_norm.weight",                     Block,       Always,     Vector, Dense,        D::D,             D::None,          BF,  C::None,   false, kNorm},
    {T::wq_a,              "attn.wq_a",                           Block,       Always,     Quant,  Dense,        D::QRank,         D::D,             FP8, C::Linear, false, kFanIn},
    {T::q_norm,            "attn.q_norm.weight",                  Block,       Always,     Vector, Dense,        D::QRank,         D::None,          BF,  C::None,   false, kNorm},
    {T::wq_b,              "attn.wq_b",                           Block,       Always,     Quant,  Dense,        D::HxHd,          D::QRank,         FP8, C::Linear, false, kFanIn},
    {T::wkv,               "attn.wkv",                            Block,       Always,     Quant,  Dense,        D::Hd,            D::D,             FP8, C::Linear, false, kFanIn},
    {T::kv_norm,           "attn.kv_norm.weight",                 Block,       Always,     Vector, Dense,        D::Hd,            D::None,          BF,  C::None,   false, kNorm},
    {T::wo_a,              "attn.wo_a",                           Block,       Always,     Quant,  Dense,        D::OGroupsxORank, D::OGroupIn,      FP8, C::Linear, false, kFanIn},
    {T::wo_b,              "attn.wo_b",                           Block,       Always,     Quant,  Dense,        D::D,             D::OGroupsxORank, FP8, C::Linear, false, kHalfFanIn},
    {T::attn_sink,         "attn.attn_sink",                      Block,       Always,     Vector, Dense,        D::H,             D::None,          F32, C::None,   false, kNormal1},
    {T::comp_wkv,          "attn.compressor.wkv",                 Block,       Compressed, Plain,  Dense,        D::CompWidth,     D::D,             BF,  C::Linear, false, kFanIn},
    {T::comp_wgate,        "attn.compressor.wgate",               Block,       Compressed, Plain,  Dense,        D::CompWidth,     D::D,             BF,  C::Linear, false, kFanIn},
    {T::comp_ape,          "attn.compressor.ape",                 Block,       Compressed, Vector, Dense,        D::Ratio,         D::CompWidth,     F32, C::None,   false, kNormalHalf},
    {T::comp_norm,         "attn.compressor.norm.weight",         Block,       Compressed, Vector, Dense,        D::Hd,            D::None,          BF,  C::None,   false, kNorm},
    {T::idx_wq_b,          "attn.indexer.wq_b",                   Block,       Indexed,    Quant,  Dense,        D::IdxHxHd,       D::QRank,         FP8, C::Linear, false, kFanIn},
    {T::idx_weights_proj,  "attn.indexer.weights_proj",           Block,       Indexed,    Plain,  Dense,        D::IdxHeads,      D::D,             BF,  C::Linear, false, kFanIn},
    {T::idx_comp_wkv,      "attn.indexer.compressor.wkv",         Block,       Indexed,    Plain,  Dense,        D::IdxCompWidth,  D::D,             BF,  C::Linear, false, kFanIn},
    {T::idx_comp_wgate,    "attn.indexer.compressor.wgate",       Block,       Indexed,    Plain,  Dense,        D::IdxCompWidth,  D::D,             BF,  C::Linear, false, kFanIn},
    {T::idx_comp_ape,      "attn.indexer.compressor.ape",         Block,       Indexed,    Vector, Dense,        D::Ratio,         D::IdxCompWidth,  F32, C::None,   false, kNormalHalf},
    {T::idx_comp_norm,     "attn.indexer.compressor.norm.weight", Block,       Indexed,    Vector, Dense,        D::IdxHd,         D::None,          BF,  C::None,   false, kNorm},
    {T::gate,              "ffn.gate",                            Block,       Always,     Plain,  Dense,        D::E,             D::D,             BF,  C::Linear, false, kFanIn},
    {T::gate_tid2eid,      "ffn.gate.tid2eid",                    Block,       Hash,       Ids,    Dense,        D::V,             D::K,             I64, C::None,   false, kIds},
    {T::gate_bias,         "ffn.gate.bias",                       Block,       NotHash,    Vector, Dense,        D::E,             D::None,          F32, C::None,   false, kBias},
    {T::expert_w1,         "ffn.experts.{e}.w1",                  Block,       Always,     Quant,  RoutedExpert, D::I,             D::D,             I8,  C::Linear, false, kFanIn},
    {T::expert_w2,         "ffn.experts.{e}.w2",                  Block,       Always,     Quant,  RoutedExpert, D::D,             D::I,             I8,  C::Linear, false, kHalfFanIn},
    {T::expert_w3,         "ffn.experts.{e}.w3",                  Block,       Always,     Quant,  RoutedExpert, D::I,             D::D,             I8,  C::Linear, false, kFanIn},
    {T::shared_w1,         "ffn.shared_experts.w1",               Block,       Always,     Quant,  Dense,        D::I,             D::D,             FP8, C::Linear, false, kFanIn},
    {T::shared_w2,         "ffn.shared_experts.w2",               Block,       Always,     Quant,  Dense,        D::D,             D::I,             FP8, C::Linear, false, kHalfFanIn},
    {T::shared_w3,         "ffn.shared_experts.w3",               Block,       Always,     Quant,  Dense,        D::I,             D::D,             FP8, C::Linear, false, kFanIn},
    // Preview MTP (Flash, Pro): mtp.0 is a block plus these; a checkpoint may leave the whole group out.
    {T::mtp_e_proj,        "e_proj",                              Mtp,         Always,     Quant,  Dense,        D::D,             D::D,             FP8, C::Linear, true,  kFanIn},
    {T::mtp_h_proj,        "h_proj",                              Mtp,         Always,     Quant,  Dense,        D::D,             D::D,             FP8, C::Linear, true,  kFanIn},
    {T::mtp_enorm,         "enorm.weight",                        Mtp,         Always,     Vector, Dense,        D::D,             D::None,          BF,  C::None,   true,  kNorm},
    {T::mtp_hnorm,         "hnorm.weight",                        Mtp,         Always,     Vector, Dense,        D::D,             D::None,          BF,  C::None,   true,  kNorm},
    {T::mtp_norm,          "norm.weight",                         Mtp,         Always,     Vector, Dense,        D::D,             D::None,          BF,  C::Read,   true,  kNorm},
    {T::mtp_hc_head_fn,    "hc_head_fn",                          Mtp,         Always,     Vector, Dense,        D::HcMult,        D::nD,            F32, C::Read,   true,  kHcFn},
    {T::mtp_hc_head_base,  "hc_head_base",                        Mtp,         Always,     Vector, Dense,        D::HcMult,        D::None,          F32, C::None,   true,  kNormalHalf},
    {T::mtp_hc_head_scale, "hc_head_scale",                       Mtp,         Always,     Vector, Dense,        D::One,           D::None,          F32, C::None,   true,  kHcScale},
    // DSpark (0731): stages mtp.0..S-1 are blocks; the taps projection sits on the first, the head on the last.
    {T::ds_main_proj,      "main_proj",                           DSparkFirst, Always,     Quant,  Dense,        D::D,             D::Taps,          FP8, C::Linear, false, kFanIn},
    {T::ds_main_norm,      "main_norm.weight",                    DSparkFirst, Always,     Vector, Dense,        D::D,             D::None,          BF,  C::None,   false, kNorm},
    {T::ds_norm,           "norm.weight",                         DSparkLast,  Always,     Vector, Dense,        D::D,             D::None,          BF,  C::Read,   false, kNorm},
    {T::ds_hc_head_fn,     "hc_head_fn",                          DSparkLast,  Always,     Vector, Dense,        D::HcMult,        D::nD,            F32, C::Read,   false, kHcFn},
    {T::ds_hc_head_base,   "hc_head_base",                        DSparkLast,  Always,     Vector, Dense,        D::HcMult,        D::None,          F32, C::None,   false, kNormalHalf},
    {T::ds_hc_head_scale,  "hc_head_scale",                       DSparkLast,  Always,     Vector, Dense,        D::One,           D::None,          F32, C::None,   false, kHcScale},
    {T::ds_markov_w1,      "markov_head.markov_w1",               DSparkLast,  Always,     Plain,  Dense,        D::V,             D::MarkovRank,    BF,  C::Linear, false, kFanIn},
    {T::ds_markov_w2,      "markov_head.markov_w2",               DSparkLast,  Always,     Plain,  Dense,        D::V,             D::MarkovRank,    BF,  C::Linear, false, kFanIn},
    {T::ds_confidence,     "confidence_head.proj",                DSparkLast,  Always,     Plain,  Dense,        D::One,           D::DPlusRank,     BF,  C::Linear, false, kFanIn},
};

bool applies(When w, const ModelConfig& c, int layer) {
  switch (w) {
    case Always: return true;
    case Compressed: return has_compressor(c.layer_kind(layer));
    case Indexed: return has_indexer(c.layer_kind(layer));
    case Hash: return layer < c.n_hash_layers;
    case NotHash: return layer >= c.n_hash_layers;
  }
  return false;
}

bool per_expert(const SchemaEntry& e) { return std::string_view(e.pattern).find("{e}") != std::string_view::npos; }

void add(std::vector<SchemaItem>& out, const SchemaEntry& e, const ModelConfig& c, const std::string& prefix, int layer,
         int stage, int expert) {
  std::string name = e.pattern;
  if (expert >= 0) name.replace(name.find("{e}"), 3, std::to_string(expert));
  SchemaItem it;
  it.entry = &e;
  it.name = prefix + name;
  it.layer = layer;
  it.stage = stage;
  it.expert = expert;
  it.rows = eval_dim(e.rows, c, layer);
  it.cols = eval_dim(e.cols, c, layer);
  out.push_back(std::move(it));
}

// A run of per-expert rows is written expert by expert (experts.0.w1, .w2, .w3, experts.1.w1, ...).
void add_scope(std::vector<SchemaItem>& out, Scope s, const ModelConfig& c, const std::string& prefix, int layer,
               int stage) {
  std::vector<const SchemaEntry*> run;
  for (const SchemaEntry& e : kTable) {
    if (e.scope != s || (s == Block && !applies(e.when, c, layer))) continue;
    if (per_expert(e)) {
      run.push_back(&e);
      continue;
    }
    for (int x = 0; !run.empty() && x < c.n_routed_experts; ++x)
      for (const SchemaEntry* r : run) add(out, *r, c, prefix, layer, stage, x);
    run.clear();
    add(out, e, c, prefix, layer, stage, -1);
  }
  for (int x = 0; !run.empty() && x < c.n_routed_experts; ++x)
    for (const SchemaEntry* r : run) add(out, *r, c, prefix, layer, stage, x);
}

}  // namespace

const std::vector<SchemaEntry>& schema_table() { return kTable; }

const SchemaEntry& schema_entry(TensorId id) {
  for (const SchemaEntry& e : kTable)
    if (e.id == id) return e;
  fail("schema: no entry for tensor id {}", int(id));
}

const char* role_name(Role r) {
  switch (r) {
    case Embedding: return "embedding";
    case Head: return "head";
    case Dense: return "dense";
    case RoutedExpert: return "routed experts";
    case Unused: return "unused";
  }
  return "?";
}

const char* dim_name(Dim d) {
  static const char* const names[] = {"", "1", "3", "V", "D", "n·D", "n", "(2+n)·n", "H", "H·d", "d", "q_r", "G·L_o",
                                      "(H/G)·d", "c·d", "R", "n_I", "n_I·d_I", "d_I", "c·d_I", "E", "k", "I",
                                      "taps·D", "rank", "D+rank"};
  return names[size_t(d)];
}

int64_t eval_dim(Dim d, const ModelConfig& c, int layer) {
  // c = 2 on overlapping (CSA) compressors: each group pools over itself and the previous one.
  auto width = [&](int per) {
    return int64_t(overlapping_compressor(c.layer_kind(layer)) ? 2 : 1) * per;
  };
  switch (d) {
    case D::None: return 0;
    case D::One: return 1;
    case D::Three: return 3;
    case D::V: return c.vocab_size;
    case D::D: return c.dim;
    case D::nD: return int64_t(c.hc_mult) * c.dim;
    case D::HcMult: return c.hc_mult;
    case D::HcMix: return int64_t(2 + c.hc_mult) * c.hc_mult;
    case D::H: return c.n_heads;
    case D::HxHd: return int64_t(c.n_heads) * c.head_dim;
    case D::Hd: return c.head_dim;
    case D::QRank: return c.q_lora_rank;
    case D::OGroupsxORank: return int64_t(c.o_groups) * c.o_lora_rank;
    case D::OGroupIn: return int64_t(c.n_heads / c.o_groups) * c.head_dim;
    case D::CompWidth: return width(c.head_dim);
    case D::Ratio: return c.layer_ratio(layer);
    case D::IdxHeads: return c.index_n_heads;
    case D::IdxHxHd: return int64_t(c.index_n_heads) * c.index_head_dim;
    case D::IdxHd: return c.index_head_dim;
    case D::IdxCompWidth: return width(c.index_head_dim);
    case D::E: return c.n_routed_experts;
    case D::K: return c.n_activated_experts;
    case D::I: return c.moe_inter_dim;
    case D::Taps: return int64_t(c.dspark_target_layer_ids.size()) * c.dim;
    case D::MarkovRank: return c.dspark_markov_rank;
    case D::DPlusRank: return int64_t(c.dim) + c.dspark_markov_rank;
  }
  return 0;
}

std::string SchemaItem::weight_name() const {
  return entry->form == Form::Quant || entry->form == Form::Plain ? name + ".weight" : name;
}
std::string SchemaItem::scale_name() const { return name + ".scale"; }
std::vector<int64_t> SchemaItem::shape() const {
  return entry->cols == Dim::None ? std::vector<int64_t>{rows} : std::vector<int64_t>{rows, cols};
}

bool has_preview_mtp(const ModelConfig& c, const Checkpoint& ck) {
  if (c.is_dspark() || c.n_mtp_layers == 0) return false;
  // The group is all or nothing: the tensor of its first row (e_proj) decides.
  for (const SchemaEntry& e : kTable)
    if (e.optional) {
      SchemaItem it;
      it.entry = &e;
      it.name = std::string("mtp.0.") + e.pattern;
      return ck.find(it.weight_name()) != nullptr;
    }
  return false;
}

std::vector<SchemaItem> schema_items(const ModelConfig& c, const SchemaOptions& o) {
  std::vector<SchemaItem> out;
  add_scope(out, Global, c, "", -1, -1);
  for (int l = 0; l < c.n_layers; ++l) add_scope(out, Block, c, fmt::format("layers.{}.", l), l, -1);
  if (c.is_dspark()) {
    const int n = c.n_mtp_layers;
    for (int s = 0; s < n; ++s) add_scope(out, Block, c, fmt::format("mtp.{}.", s), c.n_layers + s, s);
    add_scope(out, DSparkFirst, c, "mtp.0.", c.n_layers, 0);
    add_scope(out, DSparkLast, c, fmt::format("mtp.{}.", n - 1), c.n_layers + n - 1, n - 1);
  } else if (c.n_mtp_layers > 0 && o.mtp) {
    add_scope(out, Block, c, "mtp.0.", c.n_layers, 0);
    add_scope(out, Mtp, c, "mtp.0.", c.n_layers, 0);
  }
  return out;
}

std::vector<SchemaTensor> schema_tensors(const std::vector<SchemaItem>& items) {
  std::vector<SchemaTensor> out;
  out.reserve(items.size() * 2);
  for (const SchemaItem& it : items) {
    out.push_back({it.weight_name(), &it, false});
    if (it.entry->form == Form::Quant) out.push_back({it.scale_name(), &it, true});
  }
  return out;
}

bool schema_ignored(const std::string& name) {
  static const std::regex ignored(R"(mtp\.\d+\..*(emb.*|head\.weight))");
  return std::regex_match(name, ignored);
}

SchemaIndex::SchemaIndex(const ModelConfig& c, const Checkpoint& ck)
    : items_(schema_items(c, {.mtp = has_preview_mtp(c, ck)})), tensors_(schema_tensors(items_)) {
  by_name_.reserve(tensors_.size());
  for (size_t i = 0; i < tensors_.size(); ++i) by_name_.emplace_back(tensors_[i].name, i);
  std::sort(by_name_.begin(), by_name_.end());
}

TensorClass SchemaIndex::classify(const std::string& name) const {
  TensorClass r;
  auto it = std::lower_bound(by_name_.begin(), by_name_.end(), std::pair<std::string, size_t>{name, 0});
  if (it != by_name_.end() && it->first == name) {
    const SchemaTensor& t = tensors_[it->second];
    r.item = t.item;
    r.scale = t.scale;
    r.role = t.item->entry->role;
    r.known = true;
  } else if (schema_ignored(name)) {
    r.role = Role::Unused;
    r.known = true;
  }
  return r;
}

std::vector<std::string> SchemaIndex::unexpected(const Checkpoint& ck) const {
  std::vector<std::string> out;
  for (auto& [name, t] : ck.tensors())
    if (!classify(name).known) out.push_back(name);
  return out;
}

WeightCost weight_cost(const ModelConfig& c, const std::function<size_t(const std::string&)>& nbytes) {
  WeightCost w;
  w.layers.resize(size_t(c.n_layers));
  std::vector<double> routed_bytes(size_t(c.n_layers)), routed_flops(size_t(c.n_layers));
  std::vector<std::vector<std::string>> modules(size_t(c.n_layers));
  for (const SchemaItem& it : schema_items(c, {.mtp = false})) {
    const SchemaEntry& e = *it.entry;
    if (e.cost == Cost::None || it.stage >= 0) continue;
    double bytes = double(nbytes(it.weight_name()));
    if (e.form == Form::Quant) bytes += double(nbytes(it.scale_name()));
    const double flops = e.cost == Cost::Linear ? 2.0 * double(it.rows) * double(it.cols) : 0.0;
    if (it.layer < 0) {
      if (e.role == Role::Head) w.head_bytes += bytes, w.head_flops += flops;
      else w.final_bytes += bytes;
      continue;
    }
    LayerWeightCost& l = w.layers[size_t(it.layer)];
    if (e.role == Role::RoutedExpert) {
      routed_bytes[size_t(it.layer)] += bytes;
      routed_flops[size_t(it.layer)] += flops;
    } else if (std::string_view(e.pattern).starts_with("ffn.")) {
      l.ffn_bytes += bytes, l.ffn_flops += flops;
    } else {
      l.attn_bytes += bytes;
      if (e.cost != Cost::Linear) continue;
      // The module is the first two name components: attn.wq_a, attn.compressor, attn.indexer.
      const std::string_view p = e.pattern;
      const std::string module(p.substr(0, p.find('.', p.find('.') + 1)));
      if (modules[size_t(it.layer)].empty() || modules[size_t(it.layer)].back() != module) {
        modules[size_t(it.layer)].push_back(module);
        l.attn_flops.push_back(0);
      }
      l.attn_flops.back() += flops;
    }
  }
  // A token reads k of the E experts: the sums are over all E (identical in size), so scale by k / E.
  const double k = c.n_activated_experts, E = c.n_routed_experts;
  for (size_t l = 0; l < w.layers.size(); ++l) {
    w.layers[l].ffn_bytes += routed_bytes[l] * k / E;
    w.layers[l].ffn_flops += routed_flops[l] * k / E;
  }
  return w;
}

}  // namespace dsv4
