#pragma once
// Checkpoint tensors bound to the model structure, per layer type (architecture.md §6.2). Nothing large is copied:
// linears are views over the mapped shards.
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "io/config.h"
#include "io/safetensors.h"
#include "kernels/linear.h"

namespace dsv4 {

// Small fp32 parameter vector: a view when the checkpoint holds aligned F32, else converted.
struct FloatVec {
  const float* p = nullptr;
  std::vector<float> own;
  size_t n = 0;
  const float* data() const { return p; }
  bool empty() const { return p == nullptr; }
};

struct HcWeights {
  FloatVec fn, base, scale;
};

struct CompressorWeights {
  Linear wkv, wgate;
  FloatVec ape, norm;
  int ratio = 0, d_c = 0;
  bool overlap = false;
  int width() const { return (overlap ? 2 : 1) * d_c; }
};

struct IndexerWeights {
  Linear wq_b, weights_proj;
  CompressorWeights comp;
};

struct AttentionWeights {
  FloatVec q_norm, kv_norm, sink;
  Linear wq_a, wq_b, wkv, wo_a, wo_b;
  LayerKind kind = LayerKind::SlidingWindow;
  int ratio = 0;
  CompressorWeights comp;  // has_compressor(kind)
  IndexerWeights indexer;  // has_indexer(kind)
};

struct ExpertWeights {
  Linear w1, w2, w3;
};

struct MoeWeights {
  Linear gate;                // [E, D], fp32 math
  FloatVec bias;              // empty on hash layers
  const uint8_t* tid2eid = nullptr;  // I64 [V, k] on hash layers
  std::vector<ExpertWeights> experts;
  ExpertWeights shared;
  bool hash() const { return tid2eid != nullptr; }
  int64_t tid2eid_at(int64_t tok, int i, int k) const;
};

struct BlockWeights {
  int layer_id = 0;
  HcWeights hc_attn, hc_ffn;
  FloatVec attn_norm, ffn_norm;
  AttentionWeights attn;
  MoeWeights moe;
};

struct MtpWeights {  // preview single-stage MTP (mtp.0)
  BlockWeights block;
  Linear e_proj, h_proj;
  FloatVec enorm, hnorm, norm;
  HcWeights hc_head;
};

struct DSparkWeights {  // 0731 draft head: stages mtp.0..2 plus projections (bound and validated)
  std::vector<BlockWeights> stages;
  Linear main_proj;
  FloatVec main_norm, norm;
  HcWeights hc_head;
  Linear markov_w1, markov_w2, confidence;
};

struct ModelWeights {
  Linear embed, head;  // both [V, D] bf16
  FloatVec norm;
  HcWeights hc_head;
  std::vector<BlockWeights> blocks;
  std::unique_ptr<MtpWeights> mtp;
  std::unique_ptr<DSparkWeights> dspark;
};

// Builds a Linear view over a weight tensor and its optional .scale tensor; checks dtypes and shapes.
// FP4 is recognised from an I8/U8 weight of shape [out, in/2] with [out, in/32] scales.
Linear make_linear(const TensorInfo& weight, const TensorInfo* scale, int64_t out, int64_t in);

// Binds every tensor the schema (model/schema.h) implies for the config; throws one error listing all
// missing and unexpected tensors, or naming the first tensor with a wrong dtype or shape.
ModelWeights bind_weights(const Checkpoint& ckpt, const ModelConfig& cfg);

}  // namespace dsv4
