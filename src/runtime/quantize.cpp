#include "runtime/quantize.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <nlohmann/json.hpp>
#include <vector>

#include "core/error.h"
#include "core/mapped_file.h"
#include "core/thread_pool.h"
#include "io/config.h"
#include "io/safetensors.h"
#include "io/safetensors_writer.h"
#include "kernels/blocks.h"
#include "model/schema.h"
#include "model/weights.h"
#include "runtime/imatrix.h"

namespace fs = std::filesystem;

namespace dsv4 {

BlockFormat block_fallback(BlockFormat want, int64_t cols) {
  if (want == BlockFormat::None || cols % block_info(want).elems == 0) return want;
  if (cols % 32) return BlockFormat::None;
  switch (want) {
    case BlockFormat::Q5_K:
    case BlockFormat::Q6_K: return BlockFormat::Q8_0;
    default: return BlockFormat::Q4_0;  // Q2_K, Q3_K, Q4_K, IQ2_XXS: the 4-bit 32-wide format
  }
}

namespace {

struct Plan {
  const TensorInfo* t = nullptr;
  const TensorInfo* scale = nullptr;  // of an encoded tensor (dropped from the output)
  BlockFormat fmt = BlockFormat::None;
  bool fallback = false;
  int64_t rows = 0, cols = 0;  // logical (a packed FP4 tensor holds two per byte)
};

// Encodes every row of one linear: exact dequantisation, then the block encoder.
void encode(const Plan& p, const float* imp, SafetensorsStreamWriter& w, ThreadPool& pool) {
  const int64_t rows = p.rows, cols = p.cols, rb = block_row_bytes(p.fmt, cols);
  const Linear L = make_linear(*p.t, p.scale, rows, cols);
  constexpr int64_t kChunk = 256;  // rows per write: bounded memory for any tensor size
  std::vector<uint8_t> out(size_t(std::min(rows, kChunk) * rb));
  for (int64_t r0 = 0; r0 < rows; r0 += kChunk) {
    const int64_t r1 = std::min(rows, r0 + kChunk);
    pool.parallel_for(size_t(r1 - r0), [&](size_t a, size_t b) {
      std::vector<float> row(static_cast<size_t>(cols));
      for (size_t i = a; i < b; ++i) {
        L.dequant_row(r0 + int64_t(i), row.data());
        blocks::quantize_row(p.fmt, row.data(), cols, imp, out.data() + i * size_t(rb));
      }
    });
    w.write(out.data(), size_t((r1 - r0) * rb));
  }
}

std::string shard_name(const TensorInfo& t) { return fs::path(*t.file).filename().string(); }

}  // namespace

QuantizeReport quantize_checkpoint(const std::string& in_dir, const std::string& out_dir, const QuantizeOptions& o,
                                   const std::function<void(uint64_t, uint64_t)>& progress) {
  for (BlockFormat f : {o.experts, o.dense})
    if (f != BlockFormat::None && !blocks::can_quantize(f))
      fail("quantize: no encoder for {} (it can be read, not written)", block_name(f));
  if (fs::exists(out_dir) && !fs::is_directory(out_dir)) fail("quantize: {} exists and is not a folder", out_dir);
  if (fs::exists(out_dir) && fs::equivalent(in_dir, out_dir)) fail("quantize: the output folder is the input folder");
  const ModelConfig cfg = load_config(in_dir);
  const Checkpoint ck(in_dir);
  bind_weights(ck, cfg);  // a broken checkpoint fails here, before anything is written
  const SchemaIndex schema(cfg, ck);
  const ImportanceMatrix imatrix = o.imatrix.empty() ? ImportanceMatrix{} : load_imatrix(o.imatrix);

  // What each tensor becomes, grouped by the shard it lives in (tensors() is sorted by name).
  std::map<std::string, std::vector<Plan>> shards;
  std::set<std::string> dropped;  // scale tensors of encoded linears
  QuantizeReport rep;
  for (const auto& [name, t] : ck.tensors()) {
    Plan p{t};
    const TensorClass c = schema.classify(name);
    if (c.item && !c.scale && c.item->entry->form == Form::Quant && t->format == BlockFormat::None) {
      const BlockFormat want = c.role == Role::RoutedExpert ? o.experts : o.dense;
      p.rows = c.item->rows, p.cols = c.item->cols;
      p.fmt = block_fallback(want, p.cols);
      p.fallback = p.fmt != want;
      if (p.fmt != BlockFormat::None) {
        p.scale = ck.find(c.item->scale_name());
        if (p.scale) dropped.insert(p.scale->name);
      }
    }
    shards[shard_name(*t)].push_back(p);
  }
  fs::create_directories(out_dir);
  uint64_t total = 0, done = 0;
  for (const auto& [name, t] : ck.tensors()) total += t->nbytes;

  ThreadPool& pool = ThreadPool::global();
  nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
  uint64_t total_out = 0;
  for (const auto& [file, plans] : shards) {
    std::vector<TensorDecl> decls;
    for (const Plan& p : plans) {
      if (dropped.count(p.t->name)) continue;
      const bool enc = p.fmt != BlockFormat::None;
      TensorDecl d{p.t->name, enc ? DType::U8 : p.t->dtype, enc ? std::vector<int64_t>{p.rows, p.cols} : p.t->shape,
                   enc ? p.fmt : p.t->format};
      decls.push_back(d);
      weight_map[d.name] = file;
      total_out += d.nbytes();
    }
    SafetensorsStreamWriter w((fs::path(out_dir) / file).string(), decls);
    for (const Plan& p : plans) {
      done += p.t->nbytes;
      if (dropped.count(p.t->name)) continue;
      if (p.fmt == BlockFormat::None) {
        w.write(p.t->data, p.t->nbytes);
        ++rep.tensors_copied;
      } else {
        const std::vector<float>* imp = imatrix.find(p.t->name);
        if (imp && int64_t(imp->size()) != p.cols)
          fail("{}: the importance matrix of '{}' has {} columns, the tensor {}", o.imatrix, p.t->name, imp->size(),
               p.cols);
        if (imp) ++rep.imatrix_rows_weighted;
        encode(p, imp ? imp->data() : nullptr, w, pool);
        ++rep.tensors_encoded;
        rep.tensors_fallback += p.fallback;
      }
      if (progress) progress(done, total);
    }
    w.close();
  }
  rep.bytes_in = total;
  rep.bytes_out = total_out;

  // The index (when the input had one), config.json with the formats noted, and every other file as is.
  for (const auto& e : fs::directory_iterator(in_dir)) {
    const std::string n = e.path().filename().string();
    if (!e.is_regular_file() || e.path().extension() == ".safetensors" || n == "model.safetensors.index.json" ||
        n == "config.json")
      continue;
    fs::copy_file(e.path(), fs::path(out_dir) / n, fs::copy_options::overwrite_existing);
  }
  if (fs::exists(fs::path(in_dir) / "model.safetensors.index.json")) {
    nlohmann::ordered_json index;
    index["metadata"] = {{"total_size", total_out}};
    index["weight_map"] = weight_map;
    std::ofstream f(fs::path(out_dir) / "model.safetensors.index.json");
    f << index.dump(2) << "\n";
    if (!f) fail("cannot write {}/model.safetensors.index.json", out_dir);
  }
  auto config = nlohmann::ordered_json::parse(read_text_file((fs::path(in_dir) / "config.json").string()));
  auto& q = config["quantization_config"];
  if (!q.is_object()) q = nlohmann::ordered_json::object();
  q["dsv4_block_formats"] = {{"routed_experts", std::string(block_name(o.experts))},
                             {"dense", std::string(block_name(o.dense))},
                             {"imatrix", o.imatrix.empty() ? "" : fs::path(o.imatrix).filename().string()}};
  std::ofstream f(fs::path(out_dir) / "config.json");
  f << config.dump(2) << "\n";
  if (!f) fail("cannot write {}/config.json", out_dir);
  return rep;
}

}  // namespace dsv4
