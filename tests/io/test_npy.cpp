// NumPy .npy float32 files: write → read round trip (bit-exact, any shape), the on-disk layout of format
// version 1.0, reading a file laid out the way NumPy writes it, and rejection of unsupported files.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "core/mapped_file.h"
#include "io/npy.h"
#include "io_test_util.h"

using namespace dsv4;
using namespace io_test;

namespace {
std::vector<float> random_floats(size_t n, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0, 3);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}
bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
}
// The header NumPy itself writes: dict repr, padded with spaces and a final '\n' so that
// 10 + header length is a multiple of 64.
std::string numpy_file(const std::string& dict, const std::vector<float>& data) {
  std::string h = dict;
  while ((10 + h.size() + 1) % 64) h += ' ';
  h += '\n';
  std::string out = std::string("\x93NUMPY\x01\x00", 8);
  out += char(h.size() & 0xff);
  out += char(h.size() >> 8);
  out += h;
  out.append(reinterpret_cast<const char*>(data.data()), data.size() * 4);
  return out;
}
}  // namespace

TEST(Npy, RoundTripShapes) {
  TempDir d;
  const std::vector<std::vector<int64_t>> shapes = {{2, 3, 4}, {5}, {1, 1}, {7, 129}, {}};
  uint32_t seed = 1;
  for (auto& shape : shapes) {
    int64_t n = 1;
    for (auto s : shape) n *= s;
    auto data = random_floats(size_t(n), seed++);
    if (n >= 4) {
      data[0] = -0.0f;
      data[1] = INFINITY;
      data[2] = NAN;
      data[3] = std::ldexp(1.0f, -140);  // subnormal
    }
    const std::string p = d.file("a.npy");
    write_npy_f32(p, shape, data.data());
    std::vector<int64_t> got_shape = {99};
    auto got = read_npy_f32(p, got_shape);
    EXPECT_EQ(got_shape, shape);
    EXPECT_TRUE(same_bits(got, data)) << "shape rank " << shape.size();
    // Version 1.0 layout: magic, version, little-endian u16 header length, header ends in '\n', data 64-aligned.
    const std::string raw = read_text_file(p);
    ASSERT_GE(raw.size(), 10u);
    EXPECT_EQ(raw.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
    const size_t hl = uint8_t(raw[8]) | (size_t(uint8_t(raw[9])) << 8);
    EXPECT_EQ((10 + hl) % 64, 0u);
    EXPECT_EQ(raw[10 + hl - 1], '\n');
    EXPECT_EQ(raw.size(), 10 + hl + size_t(n) * 4);
    const std::string header = raw.substr(10, hl);
    EXPECT_NE(header.find("'descr': '<f4'"), std::string::npos) << header;
    EXPECT_NE(header.find("'fortran_order': False"), std::string::npos) << header;
  }
}

TEST(Npy, ZeroElementArrays) {
  // Shapes with a 0 dimension are valid NumPy arrays (no data bytes). Under UBSan this also checks that the
  // reader does not memcpy into the null data() of an empty vector.
  TempDir d;
  for (const std::vector<int64_t>& shape : {std::vector<int64_t>{0, 3}, std::vector<int64_t>{3, 0, 2}}) {
    const std::string p = d.file("z.npy");
    const float dummy = 0;
    write_npy_f32(p, shape, &dummy);
    std::vector<int64_t> got_shape;
    auto got = read_npy_f32(p, got_shape);
    EXPECT_EQ(got_shape, shape);
    EXPECT_TRUE(got.empty());
  }
}

TEST(Npy, ShapeTupleSyntax) {
  // A 1-D shape must be written as "(5,)" (a Python tuple), a scalar as "()".
  TempDir d;
  float v[5] = {1, 2, 3, 4, 5};
  write_npy_f32(d.file("v.npy"), {5}, v);
  EXPECT_NE(read_text_file(d.file("v.npy")).find("'shape': (5,)"), std::string::npos);
  write_npy_f32(d.file("s.npy"), {}, v);
  EXPECT_NE(read_text_file(d.file("s.npy")).find("'shape': ()"), std::string::npos);
  write_npy_f32(d.file("m.npy"), {2, 2}, v);
  const std::string m = read_text_file(d.file("m.npy"));
  EXPECT_TRUE(m.find("'shape': (2, 2)") != std::string::npos || m.find("'shape': (2,2)") != std::string::npos) << m;
}

TEST(Npy, ReadsNumpyWrittenLayout) {
  TempDir d;
  auto data = random_floats(6, 42);
  write_bytes(d.file("np.npy"), numpy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", data));
  std::vector<int64_t> shape;
  auto got = read_npy_f32(d.file("np.npy"), shape);
  EXPECT_EQ(shape, (std::vector<int64_t>{2, 3}));
  EXPECT_TRUE(same_bits(got, data));
  write_bytes(d.file("np1.npy"), numpy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }", data));
  got = read_npy_f32(d.file("np1.npy"), shape);
  EXPECT_EQ(shape, (std::vector<int64_t>{6}));
  EXPECT_TRUE(same_bits(got, data));
}

TEST(Npy, RejectsUnsupportedFiles) {
  TempDir d;
  auto data = random_floats(4, 7);
  struct Case { std::string bytes; const char* phrase; };
  const Case cases[] = {
      {"not a numpy file at all", "not a .npy"},
      {numpy_file("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", data), "float32"},
      {numpy_file("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", data), "float32"},
      {numpy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }", data), "data size"},
      {numpy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", data), "data size"},
      {numpy_file("{'descr': '<f4', 'fortran_order': False, }", data), "shape"},
      {numpy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", data).substr(0, 40), "truncated"},
  };
  int i = 0;
  for (auto& c : cases) {
    const std::string p = d.file("bad" + std::to_string(i++) + ".npy");
    write_bytes(p, c.bytes);
    std::vector<int64_t> shape;
    const std::string msg = error_of([&] { read_npy_f32(p, shape); });
    EXPECT_CONTAINS(msg, p);
    EXPECT_CONTAINS(msg, c.phrase);
  }
  std::vector<int64_t> shape;
  EXPECT_CONTAINS(error_of([&] { read_npy_f32(d.file("missing.npy"), shape); }), "missing.npy");
  EXPECT_CONTAINS(error_of([&] { write_npy_f32(d.file("no/such/dir/x.npy"), {1}, data.data()); }), "x.npy");
}
