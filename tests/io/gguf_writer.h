#pragma once
// Test-only GGUF v3 writer (the public spec: header, typed metadata, tensor records, aligned data) and a
// converter that writes a native fixture as llama.cpp's convert_hf_to_gguf.py would for deepseek4.
#include <cstdint>
#include <string>
#include <vector>

#include "io/gguf.h"

namespace dsv4::test {

class GgufWriter {
 public:
  uint32_t version = 3;
  uint64_t alignment = 32;  // written as general.alignment when not 32

  void add_u8(const std::string& k, uint8_t v) { scalar(k, GgufType::U8, &v, 1); }
  void add_i8(const std::string& k, int8_t v) { scalar(k, GgufType::I8, &v, 1); }
  void add_u16(const std::string& k, uint16_t v) { scalar(k, GgufType::U16, &v, 2); }
  void add_i16(const std::string& k, int16_t v) { scalar(k, GgufType::I16, &v, 2); }
  void add_u32(const std::string& k, uint32_t v) { scalar(k, GgufType::U32, &v, 4); }
  void add_i32(const std::string& k, int32_t v) { scalar(k, GgufType::I32, &v, 4); }
  void add_u64(const std::string& k, uint64_t v) { scalar(k, GgufType::U64, &v, 8); }
  void add_i64(const std::string& k, int64_t v) { scalar(k, GgufType::I64, &v, 8); }
  void add_f32(const std::string& k, float v) { scalar(k, GgufType::F32, &v, 4); }
  void add_f64(const std::string& k, double v) { scalar(k, GgufType::F64, &v, 8); }
  void add_bool(const std::string& k, bool v) {
    uint8_t b = v;
    scalar(k, GgufType::BOOL, &b, 1);
  }
  void add_string(const std::string& k, const std::string& v);
  void add_ints(const std::string& k, GgufType elem, const std::vector<int64_t>& v);
  void add_floats(const std::string& k, GgufType elem, const std::vector<double>& v);
  void add_strings(const std::string& k, const std::vector<std::string>& v);

  // ne[0] innermost; bytes must be the tensor's full storage.
  void add_tensor(const std::string& name, int ggml_type, std::vector<int64_t> ne, std::vector<uint8_t> bytes);

  std::vector<uint8_t> bytes() const;
  void write(const std::string& path) const;
  // Writes PREFIX-0000k-of-0000n.gguf: metadata in the first, tensors dealt round-robin. Returns the paths.
  std::vector<std::string> write_split(const std::string& prefix, int n) const;

  size_t n_kv() const { return n_kv_; }

 private:
  struct Tensor {
    std::string name;
    int type;
    std::vector<int64_t> ne;
    std::vector<uint8_t> bytes;
  };
  void scalar(const std::string& k, GgufType t, const void* v, size_t n);
  std::vector<uint8_t> build(const std::vector<uint8_t>& kv, size_t n_kv, const std::vector<const Tensor*>& ts) const;
  std::vector<uint8_t> kv_;
  size_t n_kv_ = 0;
  std::vector<Tensor> tensors_;
};

// Appends little-endian values and GGUF strings to a byte buffer (also used to craft malformed files).
void put_bytes(std::vector<uint8_t>& out, const void* p, size_t n);
template <typename T>
void put(std::vector<uint8_t>& out, T v) {
  put_bytes(out, &v, sizeof(T));
}
void put_string(std::vector<uint8_t>& out, const std::string& s);

// Writes the native fixture at `fixture_dir` as a deepseek4 GGUF the way llama.cpp's converter does:
// FP8 dense weights dequantised to BF16 (exact), FP4 routed experts repacked as stacked MXFP4 (lossless),
// tid2eid as I32, the rest as stored. The MTP/DSpark stages, which the converter drops, are written as
// blocks blk.{n_layers + s} with the native suffix where llama.cpp has no name (docs/gguf.md). `split` > 1 writes that many shards; returns the first path.
// dense_q8_0: the dequantised FP8 dense weights are stored as Q8_0 blocks instead (llama.cpp's --outtype q8_0).
std::string convert_fixture_to_gguf(const std::string& fixture_dir, const std::string& out_dir, int split = 1,
                                    bool dense_q8_0 = false);

// The tokenizer.ggml.* metadata of a tokenizer.json, as the converter's gpt2 vocab path writes it.
void add_tokenizer_metadata(GgufWriter& w, const std::string& tokenizer_json_path, int vocab_size);

}  // namespace dsv4::test
