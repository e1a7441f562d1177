#pragma once
// Streams a safetensors file whose tensors are produced one after another (checkpoints larger than RAM).
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace dsv4 {

struct TensorDecl {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
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
