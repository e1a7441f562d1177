#include "io/safetensors_writer.h"

#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/safetensors.h"

namespace dsv4 {

size_t TensorDecl::nbytes() const {
  if (format != BlockFormat::None) return size_t(shape.at(0) * block_row_bytes(format, shape.at(1)));
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
    std::vector<int64_t> shape = t.shape;
    std::string dtype(dtype_name(t.dtype));
    if (t.format != BlockFormat::None) {
      if (t.shape.size() != 2 || t.shape[1] % block_info(t.format).elems)
        fail("{}: tensor '{}' of shape [{}] does not split into {} blocks", path, t.name, fmt::join(t.shape, ", "),
             block_name(t.format));
      shape = {t.shape[0], block_row_bytes(t.format, t.shape[1])};
      dtype = "U8";
      h["__metadata__"][std::string(kBlockFormatKeyPrefix) + t.name] =
          fmt::format("{}:{}", block_name(t.format), t.shape[1]);
    }
    h[t.name] = {{"dtype", dtype}, {"shape", shape}, {"data_offsets", {expected_, expected_ + t.nbytes()}}};
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
