#pragma once
// Safetensors shards, memory-mapped and validated; a Checkpoint is the union of a folder's shards.
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/block_format.h"
#include "core/dtype.h"
#include "core/mapped_file.h"

namespace dsv4 {

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  // Block-quantised (core/block_format.h): shape is the logical [rows, cols] of weights and dtype is U8;
  // the bytes are rows × block_row_bytes(format, cols).
  BlockFormat format = BlockFormat::None;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // points into the mapped shard
  size_t nbytes = 0;
  const std::string* file = nullptr;

  int64_t numel() const;
  int64_t dim(int i) const { return shape.at(size_t(i)); }
  std::string shape_str() const;
};

// The header's __metadata__ key naming a block-quantised tensor's format: "<prefix><tensor>" = "<format>:<cols>"
// (e.g. "q4_k:4096"); the tensor itself is U8 [rows, rows' bytes].
inline constexpr std::string_view kBlockFormatKeyPrefix = "dsv4.block_format.";

class SafetensorsFile {
 public:
  // Maps the file and validates its header: length bounds, JSON, dtypes, offsets inside the
  // data region, byte size = shape x dtype, no overlapping tensors, block formats that fit their bytes.
  explicit SafetensorsFile(const std::string& path);
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const std::string& path() const { return file_.path(); }
  const MappedFile& mapped() const { return file_; }

 private:
  MappedFile file_;
  std::map<std::string, TensorInfo> tensors_;
};

class GgufModel;

class Checkpoint {
 public:
  // dir holds model.safetensors.index.json (sharded) or one or more *.safetensors files; or `dir` is a
  // .gguf file (any shard of a split) of llama.cpp's deepseek4 architecture, seen under the native names
  // (io/gguf_deepseek4.cpp).
  explicit Checkpoint(const std::string& dir);
  const TensorInfo* find(const std::string& name) const;
  const TensorInfo& get(const std::string& name) const;  // throws naming the tensor
  const std::map<std::string, const TensorInfo*>& tensors() const { return index_; }
  const std::string& dir() const { return dir_; }
  size_t num_files() const;
  // Where mapped bytes lie on disk, for readers that bypass the map (the expert cache's direct reads).
  struct Location {
    const std::string* path = nullptr;
    uint64_t offset = 0;
  };
  Location locate(const uint8_t* p) const;  // throws if p is in no shard

 private:
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorInfo*> index_;
  // The GGUF branch: the shards, and the TensorInfos made for them (views into the map, but for
  // owned_bytes_, the tid2eid tables widened to I64).
  void open_gguf(const std::string& path);
  Location locate_gguf(const uint8_t* p) const;
  std::shared_ptr<const GgufModel> gguf_;
  std::deque<TensorInfo> owned_;
  std::deque<std::vector<uint8_t>> owned_bytes_;
};

// Writes tensors as one safetensors file (used by make-model and tests).
struct TensorToWrite {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors);

}  // namespace dsv4
