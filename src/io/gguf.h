#pragma once
// GGUF (v2, v3) files, memory-mapped and validated: typed metadata and tensors used in place.
// A split model (NAME-00001-of-0000N.gguf) opens as one GgufModel whose tensors are the union of its shards.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/mapped_file.h"

namespace dsv4 {

// The metadata value types of the GGUF spec, numbered as in the file.
enum class GgufType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7, STRING = 8, ARRAY = 9,
  U64 = 10, I64 = 11, F64 = 12,
};
const char* gguf_type_name(GgufType t);

// One metadata value. Scalars are held widened (integers in i/u, floats in f); arrays keep their
// element type and either numbers (widened per element) or strings.
struct GgufValue {
  GgufType type = GgufType::U8;
  GgufType elem = GgufType::U8;  // ARRAY only
  int64_t i = 0;                 // signed integers, bool
  uint64_t u = 0;                // unsigned integers
  double f = 0;                  // F32, F64
  std::string s;
  std::vector<int64_t> ints;     // integer/bool arrays (U64 above INT64_MAX is rejected)
  std::vector<double> floats;    // float arrays
  std::vector<std::string> strs; // string arrays
  size_t array_size() const;
};

// ggml tensor types with a known storage layout: plain element types and the block formats.
struct GgmlTypeInfo {
  int id;
  const char* name;
  int block_elems;  // 1 for plain types
  int block_bytes;
};
const GgmlTypeInfo* ggml_type_info(int id);  // nullptr for ids this engine cannot size

struct GgufTensor {
  std::string name;
  int type = 0;              // ggml type id
  std::vector<int64_t> ne;   // ne[0] innermost (the GGUF order)
  uint64_t offset = 0;       // from the start of the data section
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  const std::string* file = nullptr;
};

class GgufFile {
 public:
  // Maps and validates the whole file; any defect throws naming the file and the problem.
  explicit GgufFile(const std::string& path);
  const std::string& path() const { return file_.path(); }
  const MappedFile& mapped() const { return file_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const std::map<std::string, GgufValue>& metadata() const { return kv_; }
  const std::vector<GgufTensor>& tensors() const { return tensors_; }

  const GgufValue* find(const std::string& key) const;
  const GgufValue& get(const std::string& key) const;  // throws naming the key
  // Typed access: each throws naming the key when it is missing or of another type / out of range.
  uint64_t get_uint(const std::string& key) const;     // any integer type, >= 0
  int64_t get_int(const std::string& key) const;       // any integer type within int64
  double get_float(const std::string& key) const;      // F32 or F64 (or an integer)
  bool get_bool(const std::string& key) const;
  const std::string& get_string(const std::string& key) const;
  const std::vector<int64_t>& get_ints(const std::string& key) const;   // integer array
  const std::vector<double>& get_floats(const std::string& key) const;  // F32/F64 array
  const std::vector<std::string>& get_strings(const std::string& key) const;

 private:
  MappedFile file_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::map<std::string, GgufValue> kv_;
  std::vector<GgufTensor> tensors_;
};

// All shards of a model: given any shard of a split, opens every one (split.count, split.no).
class GgufModel {
 public:
  explicit GgufModel(const std::string& path);
  const GgufFile& first() const { return *files_.front(); }  // holds the model metadata
  const std::vector<std::unique_ptr<GgufFile>>& files() const { return files_; }
  const std::map<std::string, const GgufTensor*>& tensors() const { return index_; }
  const GgufTensor* find(const std::string& name) const;

 private:
  std::vector<std::unique_ptr<GgufFile>> files_;
  std::map<std::string, const GgufTensor*> index_;
};

bool is_gguf_path(const std::string& path);  // a regular file whose name ends in .gguf

}  // namespace dsv4
