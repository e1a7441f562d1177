#include "io/safetensors_writer.h"

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace dsv4 {

size_t TensorDecl::nbytes() const {
  size_t n = dtype_size(dtype);
  for (auto d : shape) n *= size_t(d);
  return n;
}

SafetensorsStreamWriter::SafetensorsStreamWriter(const std::string& path, const std::vector<TensorDecl>& tensors)
    : path_(path), f_(path, std::ios::binary) {
  if (!f_) fail("cannot write {}", path);
  nlohmann::ordered_json h;
  h["__metadata__"] = {{"format", "pt"}};
  for (auto& t : tensors) {
    h[t.name] = {{"dtype", std::string(dtype_name(t.dtype))}, {"shape", t.shape},
                 {"data_offsets", {expected_, expected_ + t.nbytes()}}};
    expected_ += t.nbytes();
  }
  std::string s = h.dump();
  while (s.size() % 8) s += ' ';
  uint64_t n = s.size();
  f_.write(reinterpret_cast<const char*>(&n), 8);
  f_.write(s.data(), std::streamsize(s.size()));
}

void SafetensorsStreamWriter::write(const void* data, size_t n) {
  f_.write(static_cast<const char*>(data), std::streamsize(n));
  written_ += n;
  if (!f_) fail("write to {} failed (disk full?)", path_);
}

void SafetensorsStreamWriter::close() {
  if (written_ != expected_) fail("{}: wrote {} data bytes, declared {}", path_, written_, expected_);
  f_.close();
  if (!f_) fail("closing {} failed", path_);
}

}  // namespace dsv4
