// model/schema: the table enumerates exactly the tensors of every fixture checkpoint, config changes move
// the set as the layer kinds say, and the cost model adds up to the bytes of the bound tensors.
#include "model/schema.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>

#include "io/safetensors.h"
#include "model/weights.h"

namespace dsv4::test {
namespace {

const std::string kData = DSV4_TEST_DATA;
std::string model_dir(const std::string& name) {
  return name == "nano" ? kData + "/../../models/dsv4-nano" : kData + "/fixtures/" + name;
}

std::set<std::string> names_of(const ModelConfig& c, const SchemaOptions& o = {}) {
  std::set<std::string> out;
  const auto items = schema_items(c, o);
  for (const SchemaTensor& t : schema_tensors(items)) EXPECT_TRUE(out.insert(t.name).second) << "twice: " << t.name;
  return out;
}

std::set<std::string> minus(const std::set<std::string>& a, const std::set<std::string>& b) {
  std::set<std::string> d;
  std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::inserter(d, d.end()));
  return d;
}

std::string list(const std::set<std::string>& s) {
  std::string r;
  for (auto& n : s) r += "\n  " + n;
  return r;
}

class SchemaFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(SchemaFixture, EnumeratesExactlyTheCheckpoint) {
  const std::string dir = model_dir(GetParam());
  const ModelConfig c = load_config(dir);
  const Checkpoint ck(dir);
  std::set<std::string> have;
  for (auto& [name, t] : ck.tensors()) have.insert(name);
  const std::set<std::string> want = names_of(c, {.mtp = has_preview_mtp(c, ck)});
  EXPECT_TRUE(minus(want, have).empty()) << "missing:" << list(minus(want, have));
  EXPECT_TRUE(minus(have, want).empty()) << "extra:" << list(minus(have, want));
  // Every stored shape and dtype is the one the table gives for its format.
  const SchemaIndex idx(c, ck);
  EXPECT_TRUE(idx.unexpected(ck).empty());
  for (auto& [name, t] : ck.tensors()) {
    const TensorClass tc = idx.classify(name);
    ASSERT_TRUE(tc.item) << name;
    const SchemaItem& it = *tc.item;
    const SchemaEntry& e = *it.entry;
    std::vector<int64_t> shape = it.shape();
    if (tc.scale && t->dtype == DType::F8_E8M0 && ck.get(it.weight_name()).dtype == DType::F8_E4M3)
      shape = {(it.rows + 127) / 128, (it.cols + 127) / 128};
    else if (tc.scale) shape = {it.rows, it.cols / 32};
    else if (e.form == Form::Quant && t->dtype == DType::I8) shape = {it.rows, it.cols / 2};
    EXPECT_EQ(t->shape, shape) << name;
    if (!tc.scale && e.form != Form::Quant) {
      EXPECT_EQ(t->dtype, e.shipped) << name;
    }
    if (e.role == Role::RoutedExpert) {
      EXPECT_NE(name.find(".ffn.experts."), std::string::npos) << name;
    }
    if (name == "embed.weight") {
      EXPECT_EQ(tc.role, Role::Embedding);
    }
  }
}

TEST_P(SchemaFixture, CostModelAddsUpToTheBoundTensors) {
  const std::string dir = model_dir(GetParam());
  const ModelConfig c = load_config(dir);
  const Checkpoint ck(dir);
  const ModelWeights w = bind_weights(ck, c);
  const WeightCost wc = weight_cost(c, [&](const std::string& n) {
    const TensorInfo* t = ck.find(n);
    return t ? t->nbytes : size_t(0);
  });
  auto bytes = [](const Linear& l) { return double(l.weight_bytes()); };
  auto flops = [](const Linear& l) { return 2.0 * double(l.out) * double(l.in); };
  EXPECT_EQ(wc.head_bytes, bytes(w.head));
  EXPECT_EQ(wc.head_flops, flops(w.head));
  EXPECT_EQ(wc.final_bytes, 4.0 * double(w.hc_head.fn.n) + 2.0 * double(w.norm.n));
  ASSERT_EQ(wc.layers.size(), w.blocks.size());
  const double k = c.n_activated_experts;
  for (size_t l = 0; l < w.blocks.size(); ++l) {
    const BlockWeights& b = w.blocks[l];
    const AttentionWeights& a = b.attn;
    std::vector<const Linear*> attn = {&a.wq_a, &a.wq_b, &a.wkv, &a.wo_a, &a.wo_b};
    if (has_compressor(a.kind)) attn.insert(attn.end(), {&a.comp.wkv, &a.comp.wgate});
    if (has_indexer(a.kind))
      attn.insert(attn.end(), {&a.indexer.wq_b, &a.indexer.weights_proj, &a.indexer.comp.wkv, &a.indexer.comp.wgate});
    double ab = 4.0 * double(b.hc_attn.fn.n + b.hc_ffn.fn.n), af = 0, sum_modules = 0;
    for (const Linear* L : attn) ab += bytes(*L), af += flops(*L);
    for (double m : wc.layers[l].attn_flops) sum_modules += m;
    // wq_a, wq_b, wkv, wo_a, wo_b, then the compressor and the indexer as one module each.
    EXPECT_EQ(wc.layers[l].attn_flops.size(), 5u + has_compressor(a.kind) + has_indexer(a.kind)) << l;
    EXPECT_EQ(wc.layers[l].attn_bytes, ab) << l;
    EXPECT_EQ(sum_modules, af) << l;
    auto ex_b = [&](const ExpertWeights& e) { return bytes(e.w1) + bytes(e.w2) + bytes(e.w3); };
    auto ex_f = [&](const ExpertWeights& e) { return flops(e.w1) + flops(e.w2) + flops(e.w3); };
    EXPECT_EQ(wc.layers[l].ffn_bytes, bytes(b.moe.gate) + ex_b(b.moe.shared) + k * ex_b(b.moe.experts[0])) << l;
    EXPECT_EQ(wc.layers[l].ffn_flops, flops(b.moe.gate) + ex_f(b.moe.shared) + k * ex_f(b.moe.experts[0])) << l;
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, SchemaFixture, ::testing::Values("tiny-flash", "tiny-pro", "tiny-0731", "nano"));

TEST(Schema, EveryIdHasOneRow) {
  std::set<int> ids;
  for (const SchemaEntry& e : schema_table()) {
    EXPECT_TRUE(ids.insert(int(e.id)).second) << e.pattern;
    EXPECT_EQ(&schema_entry(e.id), &e);
  }
  EXPECT_EQ(ids.size(), size_t(TensorId::ds_confidence) + 1);
}

TEST(Schema, ConfigChangesMoveTheTensorSet) {
  const ModelConfig base = load_config(model_dir("tiny-flash"));  // [0, 4, 128, 4] + MTP [0], 1 hash layer
  const std::set<std::string> before = names_of(base);

  // One more backbone layer (HCA) before the MTP stage: exactly its block appears.
  ModelConfig more = base;
  more.n_layers += 1;
  more.compress_ratios.insert(more.compress_ratios.begin() + base.n_layers, 128);
  const std::set<std::string> after = names_of(more);
  const std::set<std::string> added = minus(after, before);
  EXPECT_TRUE(minus(before, after).empty()) << list(minus(before, after));
  for (auto& n : added) EXPECT_EQ(n.rfind("layers.4.", 0), 0u) << n;
  const size_t per_expert = 3 * 2;  // w1, w2, w3, each weight + scale
  const size_t hca = 6 + 2 + 2 * 5 + 1 + 1 + 3 + 2 + 1 + 1 + per_expert * size_t(base.n_routed_experts) + per_expert;
  EXPECT_EQ(added.size(), hca) << list(added);
  EXPECT_TRUE(added.count("layers.4.attn.compressor.ape"));
  EXPECT_FALSE(added.count("layers.4.attn.indexer.wq_b.weight"));  // HCA: no indexer

  // Two hash layers: layer 1 trades its gate bias for a tid2eid table.
  ModelConfig hash = base;
  hash.n_hash_layers = 2;
  const std::set<std::string> h = names_of(hash);
  EXPECT_EQ(minus(h, before), (std::set<std::string>{"layers.1.ffn.gate.tid2eid"}));
  EXPECT_EQ(minus(before, h), (std::set<std::string>{"layers.1.ffn.gate.bias"}));

  // More routed experts: six tensors per expert per block (backbone and MTP).
  ModelConfig wide = base;
  wide.n_routed_experts += 1;
  EXPECT_EQ(names_of(wide).size(), before.size() + per_expert * size_t(base.n_layers + 1));

  // Without the optional MTP block nothing under mtp. remains.
  for (auto& n : names_of(base, {.mtp = false})) EXPECT_NE(n.rfind("mtp.", 0), 0u) << n;

  // The ignored MTP copies of the embedding and head are known but unused.
  EXPECT_TRUE(schema_ignored("mtp.0.emb.tok_emb.weight"));
  EXPECT_TRUE(schema_ignored("mtp.0.head.weight"));
  EXPECT_FALSE(schema_ignored("mtp.2.markov_head.markov_w1.weight"));
}

TEST(Schema, ShapesFollowTheConfig) {
  const ModelConfig c = load_config(model_dir("tiny-pro"));  // [128, 128, 4, 128] + [0]
  std::map<std::string, std::vector<int64_t>> shape;
  for (const SchemaItem& it : schema_items(c)) shape[it.name] = it.shape();
  using V = std::vector<int64_t>;
  EXPECT_EQ(shape["layers.2.attn.compressor.wkv"], (V{2 * c.head_dim, c.dim}));  // CSA: overlapping
  EXPECT_EQ(shape["layers.0.attn.compressor.wkv"], (V{c.head_dim, c.dim}));      // HCA
  EXPECT_EQ(shape["layers.0.attn.compressor.ape"], (V{128, c.head_dim}));
  EXPECT_EQ(shape["layers.2.attn.indexer.compressor.ape"], (V{4, 2 * c.index_head_dim}));
  EXPECT_EQ(shape["layers.3.attn.wo_a"],
            (V{int64_t(c.o_groups) * c.o_lora_rank, int64_t(c.n_heads / c.o_groups) * c.head_dim}));
  EXPECT_EQ(shape["layers.0.ffn.gate.tid2eid"], (V{c.vocab_size, c.n_activated_experts}));
  EXPECT_EQ(shape["hc_head_scale"], (V{1}));
  EXPECT_EQ(shape["mtp.0.hc_attn_scale"], (V{3}));
}

}  // namespace
}  // namespace dsv4::test
