// GGUF reader (io/gguf.h) and the deepseek4 binding (io/gguf_deepseek4.h) against the tiny fixtures.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/dtype.h"
#include "io/config.h"
#include "io/gguf.h"
#include "io/gguf_deepseek4.h"
#include "io/gguf_writer.h"
#include "io/io_test_util.h"
#include "io/safetensors.h"

using namespace dsv4;
using dsv4::test::GgufWriter;
using dsv4::test::put;
using dsv4::test::put_string;
using io_test::TempDir;

namespace {

void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

// The reader's error for these bytes; "" when they parse.
std::string error_of(const TempDir& d, const std::vector<uint8_t>& b) {
  const std::string p = d.file("x.gguf");
  write_bytes(p, b);
  try {
    GgufFile f(p);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::vector<uint8_t> f32_bytes(std::vector<float> v) {
  std::vector<uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

GgufWriter all_types() {
  GgufWriter w;
  w.add_u8("t.u8", 200);
  w.add_i8("t.i8", -100);
  w.add_u16("t.u16", 60000);
  w.add_i16("t.i16", -30000);
  w.add_u32("t.u32", 4000000000u);
  w.add_i32("t.i32", -2000000000);
  w.add_u64("t.u64", 1ull << 40);
  w.add_i64("t.i64", -(1ll << 40));
  w.add_f32("t.f32", 1.5f);
  w.add_f64("t.f64", 0.1);
  w.add_bool("t.bool", true);
  w.add_string("t.str", "héllo");
  w.add_ints("t.ints", GgufType::I32, {1, -2, 3});
  w.add_ints("t.u8s", GgufType::U8, {0, 255});
  w.add_floats("t.f32s", GgufType::F32, {0.5, -2});
  w.add_floats("t.f64s", GgufType::F64, {0.1});
  w.add_strings("t.strs", {"a", "", "ccc"});
  w.add_tensor("a", 0, {3, 2}, f32_bytes({1, 2, 3, 4, 5, 6}));
  w.add_tensor("b", 30, {16}, std::vector<uint8_t>(32, 7));  // ends the file: no trailing padding
  return w;
}

}  // namespace

TEST(Gguf, RoundTripsEveryMetadataType) {
  TempDir d;
  for (uint32_t version : {2u, 3u})
    for (uint64_t align : {32u, 64u}) {
      GgufWriter w = all_types();
      w.version = version;
      w.alignment = align;
      w.write(d.file("a.gguf"));
      GgufFile f(d.file("a.gguf"));
      EXPECT_EQ(f.version(), version);
      EXPECT_EQ(f.alignment(), align);
      EXPECT_EQ(f.get_uint("t.u8"), 200u);
      EXPECT_EQ(f.get_int("t.i8"), -100);
      EXPECT_EQ(f.get_uint("t.u16"), 60000u);
      EXPECT_EQ(f.get_int("t.i16"), -30000);
      EXPECT_EQ(f.get_uint("t.u32"), 4000000000u);
      EXPECT_EQ(f.get_int("t.i32"), -2000000000);
      EXPECT_EQ(f.get_uint("t.u64"), 1ull << 40);
      EXPECT_EQ(f.get_int("t.i64"), -(1ll << 40));
      EXPECT_EQ(f.get_float("t.f32"), 1.5);
      EXPECT_EQ(f.get_float("t.f64"), 0.1);
      EXPECT_TRUE(f.get_bool("t.bool"));
      EXPECT_EQ(f.get_string("t.str"), "héllo");
      EXPECT_EQ(f.get_ints("t.ints"), (std::vector<int64_t>{1, -2, 3}));
      EXPECT_EQ(f.get_ints("t.u8s"), (std::vector<int64_t>{0, 255}));
      EXPECT_EQ(f.get_floats("t.f32s"), (std::vector<double>{0.5, -2}));
      EXPECT_EQ(f.get_floats("t.f64s"), (std::vector<double>{0.1}));
      EXPECT_EQ(f.get_strings("t.strs"), (std::vector<std::string>{"a", "", "ccc"}));
      ASSERT_EQ(f.tensors().size(), 2u);
      const GgufTensor& a = f.tensors()[0];
      EXPECT_EQ(a.name, "a");
      EXPECT_EQ(a.ne, (std::vector<int64_t>{3, 2}));
      EXPECT_EQ(a.nbytes, 24u);
      EXPECT_EQ(uintptr_t(a.data - f.mapped().data()) % align, 0u);
      float v[6];
      std::memcpy(v, a.data, 24);
      EXPECT_EQ(v[5], 6.f);
      EXPECT_EQ(f.tensors()[1].nbytes, 32u);
      EXPECT_EQ(f.tensors()[1].data[0], 7);
    }
}

TEST(Gguf, TypedAccessNamesTheKey) {
  TempDir d;
  all_types().write(d.file("a.gguf"));
  GgufFile f(d.file("a.gguf"));
  auto msg = [&](auto fn) {
    try {
      fn();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(msg([&] { f.get_int("t.missing"); }).find("missing metadata key 't.missing'"), std::string::npos);
  EXPECT_NE(msg([&] { f.get_string("t.u8"); }).find("key 't.u8' must be a string"), std::string::npos);
  EXPECT_NE(msg([&] { f.get_uint("t.i8"); }).find("must not be negative"), std::string::npos);
  EXPECT_NE(msg([&] { f.get_bool("t.u8"); }).find("must be a bool"), std::string::npos);
  EXPECT_NE(msg([&] { f.get_ints("t.strs"); }).find("integer array"), std::string::npos);
}

TEST(Gguf, EveryTruncationIsAnError) {
  TempDir d;
  const std::vector<uint8_t> full = all_types().bytes();
  // Cutting anywhere (header, metadata, tensor records, data) must throw, never read past the end.
  for (size_t n = 0; n < full.size(); n += (n < 600 ? 1 : 7)) {
    const std::string e = error_of(d, {full.begin(), full.begin() + std::ptrdiff_t(n)});
    EXPECT_FALSE(e.empty()) << "prefix of " << n << " bytes parsed";
  }
  EXPECT_EQ(error_of(d, full), "");
}

TEST(Gguf, MalformedHeadersNameTheProblem) {
  TempDir d;
  auto header = [](uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    std::vector<uint8_t> b;
    dsv4::test::put_bytes(b, "GGUF", 4);
    put<uint32_t>(b, version);
    put<uint64_t>(b, n_tensors);
    put<uint64_t>(b, n_kv);
    return b;
  };
  auto has = [&](const std::vector<uint8_t>& b, const std::string& what) {
    const std::string e = error_of(d, b);
    EXPECT_NE(e.find(what), std::string::npos) << "got: " << e;
    EXPECT_NE(e.find("x.gguf"), std::string::npos) << "error does not name the file: " << e;
  };
  std::vector<uint8_t> magic = header(3, 0, 0);
  magic[0] = 'X';
  has(magic, "bad magic");
  has(header(1, 0, 0), "unsupported GGUF version 1");
  has(header(4, 0, 0), "unsupported GGUF version 4");
  has(header(3, 0, 1ull << 60), "metadata count");
  has(header(3, 1ull << 60, 0), "tensor count");
  {
    auto b = header(3, 0, 1);
    put<uint64_t>(b, 1000);  // key length past the end
    dsv4::test::put_bytes(b, "abc", 3);
    for (int k = 0; k < 12; ++k) b.push_back(0);
    has(b, "length 1000");
  }
  {
    auto b = header(3, 0, 1);
    put_string(b, "k");
    put<uint32_t>(b, 77);
    put<uint64_t>(b, 0);
    has(b, "unknown value type 77");
  }
  {
    auto b = header(3, 0, 1);
    put_string(b, "k");
    put<uint32_t>(b, uint32_t(GgufType::ARRAY));
    put<uint32_t>(b, uint32_t(GgufType::U32));
    put<uint64_t>(b, 1ull << 62);
    has(b, "array of");
  }
  {
    auto b = header(3, 0, 1);
    put_string(b, "k");
    put<uint32_t>(b, uint32_t(GgufType::ARRAY));
    put<uint32_t>(b, uint32_t(GgufType::ARRAY));
    put<uint64_t>(b, 0);
    put<uint64_t>(b, 0);
    has(b, "nested arrays");
  }
  {
    auto b = header(3, 0, 1);
    put_string(b, "k");
    put<uint32_t>(b, uint32_t(GgufType::BOOL));
    b.push_back(2);
    for (int k = 0; k < 12; ++k) b.push_back(0);
    has(b, "neither 0 nor 1");
  }
  {
    GgufWriter w;
    w.add_u32("k", 1);
    w.add_u32("k", 2);
    has(w.bytes(), "duplicate metadata key 'k'");
  }
  {
    GgufWriter w;
    w.add_u32("general.alignment", 48);
    has(w.bytes(), "not a power of two");
  }
}

TEST(Gguf, MalformedTensorsNameTheProblem) {
  TempDir d;
  // One-tensor file with a hand-made record: name, dims, type, offset; then `data` bytes of data.
  auto file = [](std::vector<uint64_t> ne, uint32_t type, uint64_t offset, size_t data, int n = 1) {
    std::vector<uint8_t> b;
    dsv4::test::put_bytes(b, "GGUF", 4);
    put<uint32_t>(b, 3);
    put<uint64_t>(b, uint64_t(n));
    put<uint64_t>(b, 0);
    for (int k = 0; k < n; ++k) {
      put_string(b, "t" + std::to_string(k));
      put<uint32_t>(b, uint32_t(ne.size()));
      for (uint64_t x : ne) put<uint64_t>(b, x);
      put<uint32_t>(b, type);
      put<uint64_t>(b, offset);
    }
    b.resize((b.size() + 31) / 32 * 32 + data, 0);
    return b;
  };
  auto has = [&](const std::vector<uint8_t>& b, const std::string& what) {
    const std::string e = error_of(d, b);
    EXPECT_NE(e.find(what), std::string::npos) << "got: " << e;
  };
  EXPECT_EQ(error_of(d, file({8}, 0, 0, 32)), "");
  has(file({8}, 0, 0, 16), "outside the file's data section");
  has(file({8}, 0, 1ull << 62, 32), "outside the file's data section");
  has(file({8}, 0, 4, 64), "not a multiple of the alignment");
  has(file({8}, 0, 0, 64, 2), "overlap");
  has(file({8}, 9999, 0, 32), "ggml type 9999");
  has(file({8}, 17, 0, 32), "ggml type 17");  // IQ2_XS: known to ggml, not to this engine
  has(file({}, 0, 0, 32), "0 dimensions");
  has(file({1, 1, 1, 1, 1}, 0, 0, 32), "5 dimensions");
  has(file({0}, 0, 0, 32), "out of range");
  has(file({1ull << 40, 1ull << 40}, 0, 0, 32), "too many elements");
  has(file({16}, 39, 0, 32), "not a whole number of mxfp4 blocks");
  {
    GgufWriter w;
    w.add_tensor("same", 0, {1}, f32_bytes({1}));
    w.add_tensor("same", 0, {1}, f32_bytes({2}));
    has(w.bytes(), "duplicate tensor 'same'");
  }
}

TEST(Gguf, SplitFilesOpenFromAnyShard) {
  TempDir d;
  GgufWriter w = all_types();
  for (int k = 0; k < 5; ++k) w.add_tensor("x" + std::to_string(k), 0, {2}, f32_bytes({float(k), 1}));
  const auto paths = w.write_split(d.file("m"), 3);
  ASSERT_EQ(paths.size(), 3u);
  for (const auto& p : paths) {
    GgufModel m(p);
    EXPECT_EQ(m.files().size(), 3u);
    EXPECT_EQ(m.tensors().size(), 7u);
    EXPECT_EQ(m.first().get_string("t.str"), "héllo");
    ASSERT_NE(m.find("x4"), nullptr);
    float v;
    std::memcpy(&v, m.find("x4")->data, 4);
    EXPECT_EQ(v, 4.f);
  }
  std::filesystem::remove(paths[2]);
  EXPECT_THROW(GgufModel{paths[0]}, Error);
  try {
    GgufModel m(paths[1]);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("m-00003-of-00003.gguf"), std::string::npos) << e.what();
  }
}

// ---- the deepseek4 binding -------------------------------------------------------------------------

namespace {

std::string fixture(const std::string& name) { return std::string(DSV4_TEST_DATA) + "/fixtures/" + name; }

float fp4_value(const TensorInfo& w, const TensorInfo& s, int64_t r, int64_t c) {
  const uint8_t b = w.data[r * w.dim(1) + c / 2];
  return e2m1_to_f32(c % 2 ? b >> 4 : b & 15) * e8m0_to_f32(s.data[r * s.dim(1) + c / 32]);
}

float mxfp4_value(const TensorInfo& t, int64_t r, int64_t c) {
  const uint8_t* blk = t.data + r * block_row_bytes(BlockFormat::MXFP4, t.dim(1)) + (c / 32) * 17;
  const int j = int(c % 32);
  const uint8_t q = j < 16 ? blk[1 + j] & 15 : blk[1 + j - 16] >> 4;
  return e2m1_to_f32(q) * e8m0_to_f32(blk[0]);
}

}  // namespace

class GgufFixture : public ::testing::TestWithParam<const char*> {};

TEST_P(GgufFixture, ConfigMatchesTheFixture) {
  TempDir d;
  const std::string g = dsv4::test::convert_fixture_to_gguf(fixture(GetParam()), d.str());
  const ModelConfig want = load_config(fixture(GetParam()));
  const ModelConfig got = load_config(g);
  EXPECT_EQ(to_hf_config_json(got), to_hf_config_json(want));
  EXPECT_EQ(got.n_mtp_layers, want.n_mtp_layers);
}

TEST_P(GgufFixture, EveryNativeTensorIsThereWithItsValues) {
  TempDir d;
  const Checkpoint native(fixture(GetParam()));
  const Checkpoint gg(dsv4::test::convert_fixture_to_gguf(fixture(GetParam()), d.str()));
  size_t experts = 0, dequantised = 0;
  for (const auto& [name, t] : native.tensors()) {
    if (name.ends_with(".scale")) continue;
    const TensorInfo* g = gg.find(name);
    ASSERT_NE(g, nullptr) << name;
    const TensorInfo* s = native.find(name.substr(0, name.size() - 7) + ".scale");
    if (t->dtype == DType::I8 && s) {  // FP4 routed expert -> MXFP4 view
      ASSERT_EQ(g->format, BlockFormat::MXFP4) << name;
      EXPECT_EQ(g->dtype, DType::U8);
      ASSERT_EQ(g->shape, (std::vector<int64_t>{t->dim(0), t->dim(1) * 2})) << name;
      ASSERT_EQ(g->nbytes, size_t(g->dim(0) * block_row_bytes(BlockFormat::MXFP4, g->dim(1))));
      for (int64_t r = 0; r < g->dim(0); ++r)
        for (int64_t c = 0; c < g->dim(1); ++c)
          ASSERT_EQ(mxfp4_value(*g, r, c), fp4_value(*t, *s, r, c)) << name << " [" << r << "," << c << "]";
      // The expert cache reads experts by file offset: locate must find the same bytes on disk.
      const auto loc = gg.locate(g->data);
      std::ifstream f(*loc.path, std::ios::binary);
      f.seekg(std::streamoff(loc.offset));
      std::vector<char> buf(g->nbytes);
      f.read(buf.data(), std::streamsize(buf.size()));
      EXPECT_EQ(std::memcmp(buf.data(), g->data, g->nbytes), 0) << name;
      ++experts;
    } else if (t->dtype == DType::F8_E4M3) {  // FP8 dense -> BF16, exactly
      ASSERT_EQ(g->dtype, DType::BF16) << name;
      ASSERT_EQ(g->shape, t->shape) << name;
      for (int64_t r = 0; r < t->dim(0); ++r)
        for (int64_t c = 0; c < t->dim(1); ++c) {
          uint16_t h;
          std::memcpy(&h, g->data + 2 * (r * t->dim(1) + c), 2);
          const float want = e4m3_to_f32(t->data[r * t->dim(1) + c]) * e8m0_to_f32(s->data[(r / 128) * s->dim(1) + c / 128]);
          ASSERT_EQ(bf16_to_f32(h), want) << name;
        }
      ++dequantised;
    } else {  // plain: same dtype, shape and bytes (tid2eid widened back to I64)
      EXPECT_EQ(g->dtype, t->dtype) << name;
      EXPECT_EQ(g->shape, t->shape) << name;
      ASSERT_EQ(g->nbytes, t->nbytes) << name;
      EXPECT_EQ(std::memcmp(g->data, t->data, t->nbytes), 0) << name;
    }
  }
  if (std::string(GetParam()) != "tiny-pro") EXPECT_GT(experts, 0u);  // tiny-pro's experts are FP8
  EXPECT_GT(dequantised, 0u);
  // Nothing extra: scales are folded in, experts are sliced.
  size_t native_weights = 0;
  for (const auto& [name, t] : native.tensors()) native_weights += !name.ends_with(".scale");
  EXPECT_EQ(gg.tensors().size(), native_weights);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GgufFixture, ::testing::Values("tiny-flash", "tiny-pro", "tiny-0731"));

TEST(GgufDeepseek4, SplitCheckpointFromAnyShard) {
  TempDir d;
  const std::string first = dsv4::test::convert_fixture_to_gguf(fixture("tiny-flash"), d.str(), 3);
  const std::string second = first.substr(0, first.size() - 20) + "-00002-of-00003.gguf";
  ASSERT_TRUE(std::filesystem::exists(second)) << second;
  const Checkpoint a(second);
  EXPECT_EQ(a.num_files(), 3u);
  EXPECT_NE(a.find("layers.0.ffn.experts.7.w2.weight"), nullptr);
  EXPECT_EQ(to_hf_config_json(load_config(second)), to_hf_config_json(load_config(fixture("tiny-flash"))));
}

TEST(GgufDeepseek4, NameMappingRoundTrips) {
  for (const char* n : {"embed.weight", "head.weight", "hc_head_fn", "layers.3.attn.wkv.weight", "layers.0.attn.attn_sink",
                        "layers.2.attn.indexer.compressor.ape", "layers.1.ffn.gate.bias", "layers.0.ffn.gate.tid2eid",
                        "layers.9.e_proj.weight"}) {
    EXPECT_EQ(gguf_deepseek4_native_name(gguf_deepseek4_gguf_name(n)), n);
  }
  int e = -1;
  EXPECT_EQ(gguf_deepseek4_gguf_name("layers.4.ffn.experts.17.w2.weight", &e), "blk.4.ffn_down_exps.weight");
  EXPECT_EQ(e, 17);
  EXPECT_EQ(gguf_deepseek4_gguf_name("layers.4.attn.wq_a.weight"), "blk.4.attn_q_a.weight");
  EXPECT_EQ(gguf_deepseek4_gguf_name("layers.4.attn.indexer.weights_proj.weight"), "blk.4.indexer.proj.weight");
}

TEST(GgufDeepseek4, ArchitectureAndMissingKeysAreNamed) {
  TempDir d;
  auto error = [&](GgufWriter w) {
    w.write(d.file("m.gguf"));
    try {
      load_config(d.file("m.gguf"));
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  {
    GgufWriter w;
    w.add_string("general.architecture", "llama");
    const std::string e = error(w);
    EXPECT_NE(e.find("general.architecture"), std::string::npos) << e;
    EXPECT_NE(e.find("'llama'"), std::string::npos) << e;
  }
  {
    GgufWriter w;
    w.add_string("general.architecture", "deepseek4");
    w.add_u32("deepseek4.vocab_size", 512);
    const std::string e = error(w);
    EXPECT_NE(e.find("'deepseek4.embedding_length'"), std::string::npos) << e;
  }
  EXPECT_NE(error(GgufWriter()).find("'general.architecture'"), std::string::npos);
}
