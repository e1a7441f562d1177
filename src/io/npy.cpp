#include "io/npy.h"

#include <cstring>
#include <fstream>
#include <regex>

#include "core/error.h"
#include "core/mapped_file.h"

namespace dsv4 {

void write_npy_f32(const std::string& path, const std::vector<int64_t>& shape, const float* data) {
  std::string dims;
  int64_t n = 1;
  for (auto d : shape) {
    dims += std::to_string(d) + ",";
    n *= d;
  }
  if (shape.size() > 1) dims.pop_back();
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  while ((10 + header.size() + 1) % 64) header += ' ';
  header += '\n';
  std::ofstream f(path, std::ios::binary);
  if (!f) fail("cannot write {}", path);
  f.write("\x93NUMPY\x01\x00", 8);
  uint16_t hl = uint16_t(header.size());
  f.write(reinterpret_cast<const char*>(&hl), 2);
  f.write(header.data(), std::streamsize(header.size()));
  f.write(reinterpret_cast<const char*>(data), std::streamsize(n * 4));
  if (!f) fail("write to {} failed", path);
}

std::vector<float> read_npy_f32(const std::string& path, std::vector<int64_t>& shape) {
  std::string s = read_text_file(path);
  if (s.size() < 10 || s.compare(0, 6, "\x93NUMPY") != 0) fail("{} is not a .npy file", path);
  size_t hl = uint8_t(s[8]) | (size_t(uint8_t(s[9])) << 8);
  if (10 + hl > s.size()) fail("{}: truncated .npy header", path);
  std::string header = s.substr(10, hl);
  if (header.find("'<f4'") == std::string::npos || header.find("'fortran_order': False") == std::string::npos)
    fail("{}: only C-order float32 arrays are supported", path);
  std::smatch m;
  if (!std::regex_search(header, m, std::regex(R"('shape': \(([^)]*)\))"))) fail("{}: no shape in header", path);
  shape.clear();
  int64_t n = 1;
  std::string dims = m[1];
  std::regex num(R"(\d+)");
  for (auto it = std::sregex_iterator(dims.begin(), dims.end(), num); it != std::sregex_iterator(); ++it) {
    shape.push_back(std::stoll(it->str()));
    n *= shape.back();
  }
  if (10 + hl + size_t(n) * 4 != s.size()) fail("{}: data size does not match shape", path);
  std::vector<float> out(static_cast<size_t>(n));
  if (n > 0) std::memcpy(out.data(), s.data() + 10 + hl, size_t(n) * 4);
  return out;
}

}  // namespace dsv4
