#pragma once
// The checkpoint schema (architecture.md §6.2): one table of every tensor of every V4 variant, from which
// binding and validation (model/weights.cpp), `inspect`, `make-model` and the bench cost model are derived.
// Adding a tensor means adding a row here; nothing else lists names or shapes.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "io/config.h"

namespace dsv4 {

class Checkpoint;

// One id per row of the table; weights.cpp routes each bound tensor into the model structure by it.
enum class TensorId : uint16_t {
  embed, head, norm, hc_head_fn, hc_head_base, hc_head_scale,
  hc_attn_fn, hc_attn_base, hc_attn_scale, hc_ffn_fn, hc_ffn_base, hc_ffn_scale, attn_norm, ffn_norm,
  wq_a, q_norm, wq_b, wkv, kv_norm, wo_a, wo_b, attn_sink,
  comp_wkv, comp_wgate, comp_ape, comp_norm,
  idx_wq_b, idx_weights_proj, idx_comp_wkv, idx_comp_wgate, idx_comp_ape, idx_comp_norm,
  gate, gate_tid2eid, gate_bias, expert_w1, expert_w2, expert_w3, shared_w1, shared_w2, shared_w3,
  mtp_e_proj, mtp_h_proj, mtp_enorm, mtp_hnorm, mtp_norm, mtp_hc_head_fn, mtp_hc_head_base, mtp_hc_head_scale,
  ds_main_proj, ds_main_norm, ds_norm, ds_hc_head_fn, ds_hc_head_base, ds_hc_head_scale, ds_markov_w1, ds_markov_w2,
  ds_confidence,
};

// Where the name lives: the prefix an entry's pattern is appended to.
enum class Scope : uint8_t {
  Global,       // no prefix
  Block,        // "layers.{L}." for backbone layers, "mtp.{s}." for the MTP block and DSpark stages
  Mtp,          // "mtp.0.": the preview MTP block's own projections and head (optional as a whole)
  DSparkFirst,  // "mtp.0.": the DSpark taps projection
  DSparkLast,   // "mtp.{S-1}.": the DSpark head
};

// Which layers of a Block entry carry it (architecture.md §2.3).
enum class When : uint8_t { Always, Compressed, Indexed, Hash, NotHash };

// How a tensor is stored and viewed; decides the accepted dtypes and the tensors of one entry.
enum class Form : uint8_t {
  Quant,   // linear X.weight [+ X.scale]: FP8 with 128×128 scales, FP4 packed with 1×32 scales, BF16, F32
  Plain,   // unquantised linear X.weight: BF16 or F32
  Vector,  // small parameter (norm, hc_*, sink, ape, bias), BF16 or F32, converted to fp32 when bound
  Ids,     // I64 table (tid2eid)
};

// What memory policy the tensor gets (runtime/ram_budget.h) and how inspect groups it.
enum class Role : uint8_t {
  Embedding,     // rows gathered per token: left to the page cache
  Head,          // the output projection
  Dense,         // read every token: resident
  RoutedExpert,  // k of E read per token: may stream
  Unused,        // known but never read (MTP copies of the embedding and head)
};

// Per-token cost of a tensor in the bench model: Linear = its bytes and 2·out·in FLOPs, Read = bytes only.
enum class Cost : uint8_t { None, Read, Linear };

// Symbolic dimensions: shapes are written with these and evaluated against a config and a layer.
enum class Dim : uint8_t {
  None, One, Three, V, D, nD, HcMult, HcMix, H, HxHd, Hd, QRank, OGroupsxORank, OGroupIn, CompWidth, Ratio,
  IdxHeads, IdxHxHd, IdxHd, IdxCompWidth, E, K, I, Taps, MarkovRank, DPlusRank,
};

// How make-model fills a tensor (fixtures README §5): normal with std a (FanIn: a/√cols in float,
// FanInD: the same in double), or uniform in [a, b]. Ids: distinct expert ids per row.
struct Init {
  enum Kind : uint8_t { Normal, FanIn, FanInD, Uniform, Ids } kind = FanIn;
  float a = 1, b = 0;
};

struct SchemaEntry {
  TensorId id;
  const char* pattern;  // after the scope prefix; "{e}" is the routed expert index
  Scope scope;
  When when;
  Form form;
  Role role;
  Dim rows, cols;       // logical [out, in] for linears; cols None for vectors
  DType shipped;        // the dtype of the official checkpoints (routed experts: FP4 packed, I8)
  Cost cost;
  bool optional;        // belongs to a group a checkpoint may omit as a whole (the preview MTP block)
  Init init;
};

const std::vector<SchemaEntry>& schema_table();
const SchemaEntry& schema_entry(TensorId id);
const char* role_name(Role r);
const char* dim_name(Dim d);

// An entry made concrete for one layer (and expert).
struct SchemaItem {
  const SchemaEntry* entry = nullptr;
  std::string name;      // Quant/Plain: without ".weight"/".scale"
  int layer = -1;        // index into compress_ratios (backbone layers, then MTP/DSpark stages); -1: global
  int stage = -1;        // MTP/DSpark stage, -1 otherwise
  int expert = -1;
  int64_t rows = 0, cols = 0;
  std::string weight_name() const;  // the tensor holding the values
  std::string scale_name() const;   // Quant only
  std::vector<int64_t> shape() const;  // logical: [rows] or [rows, cols]
};

struct SchemaOptions {
  bool mtp = true;  // include the preview MTP block when the config lists a stage
};
// Whether the checkpoint holds the preview MTP block (its e_proj): the optional group is all or nothing.
bool has_preview_mtp(const ModelConfig& c, const Checkpoint& ck);
int64_t eval_dim(Dim d, const ModelConfig& c, int layer);

// Every item the config implies, in checkpoint order: global, each layer, then the MTP or DSpark stages.
std::vector<SchemaItem> schema_items(const ModelConfig& c, const SchemaOptions& o = {});

// Concrete tensor names: an item's weight and, for Quant items, its scale.
struct SchemaTensor {
  std::string name;
  const SchemaItem* item;
  bool scale;
};
std::vector<SchemaTensor> schema_tensors(const std::vector<SchemaItem>& items);

// MTP copies of the embedding and head the reference ships but never reads (architecture.md §2.5).
bool schema_ignored(const std::string& name);

// Classifies every tensor of a checkpoint: its item (nullptr for an ignored or unexpected tensor).
struct TensorClass {
  const SchemaItem* item = nullptr;
  bool scale = false;
  Role role = Role::Dense;  // Unused for ignored names; Dense for unexpected ones
  bool known = false;       // in the schema (or ignored by it)
};
class SchemaIndex {
 public:
  SchemaIndex(const ModelConfig& c, const Checkpoint& ck);
  const std::vector<SchemaItem>& items() const { return items_; }
  TensorClass classify(const std::string& name) const;
  std::vector<std::string> unexpected(const Checkpoint& ck) const;

 private:
  std::vector<SchemaItem> items_;
  std::vector<SchemaTensor> tensors_;
  std::vector<std::pair<std::string, size_t>> by_name_;  // sorted: name -> tensors_ index
};

// Per-token cost of one layer's weights (bench, architecture.md §6.2): bytes of the tensors read
// and linear FLOPs, routed experts weighted by k / E. Attention over the context is not here.
struct LayerWeightCost {
  double attn_bytes = 0;  // hc_* read, attention linears, compressors, indexer
  // FLOPs per attention module (attn.wq_a, ..., attn.compressor, attn.indexer) in table order: bench adds
  // them one by one, so its running totals round exactly as they always have.
  std::vector<double> attn_flops;
  double ffn_bytes = 0, ffn_flops = 0;  // gate, shared expert, k of E routed experts
};
struct WeightCost {
  double head_bytes = 0, head_flops = 0;  // output projection
  double final_bytes = 0;                 // final norm and hc_head read once per token
  std::vector<LayerWeightCost> layers;    // backbone layers only: MTP/DSpark stages run off the main path
};
// `nbytes` gives a tensor's stored size (a checkpoint's, or 0 when absent).
WeightCost weight_cost(const ModelConfig& c, const std::function<size_t(const std::string&)>& nbytes);

}  // namespace dsv4
