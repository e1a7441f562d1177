#pragma once
// Streams a safetensors file whose tensors are produced one after another (checkpoints larger than RAM).
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "core/block_format.h"
#include "core/dtype.h"

namespace dsv4 {

// A block-quantised tensor (format != None) is declared with its logical [rows, cols] shape and stored
// as U8 [rows, row bytes], its format named in the header's __metadata__ (io/safetensors.h).
struct TensorDecl {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  BlockFormat format = BlockFormat::None;
  size_t nbytes() const;
};

class SafetensorsStreamWriter {
 public:
  // Writes the header; data must then be appended in declaration order, each tensor complete.
  SafetensorsStreamWriter(const std::string& path, const std::vector<TensorDecl>& tensors);
  void write(const void* data, size_t n);
  void close();  // checks that every declared byte was written

 private:
  std::string path_;
  std::ofstream f_;
  size_t expected_ = 0, written_ = 0;
};

}  // namespace dsv4
