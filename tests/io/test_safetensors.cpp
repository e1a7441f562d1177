// Safetensors shards and Checkpoint folders (architecture.md §6.1): validation errors name the file / tensor at
// fault; write_safetensors → SafetensorsFile round-trips bytes and shapes; the tiny fixture loads.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "io_test_util.h"
#include "io/safetensors.h"

using namespace dsv4;
using namespace io_test;

namespace {

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 g(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = uint8_t(g());
  return v;
}

std::string open_error(const std::string& path) {
  return error_of([&] { SafetensorsFile f(path); });
}

// A well-formed header for one F32 tensor "w" of shape [2, 3] at [0, 24), plus its data.
const std::string kGoodHeader = R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}})";

}  // namespace

// ------------------------------------------------------------------------------------------- round trip

TEST(Safetensors, WriteThenReadRoundTrip) {
  TempDir d;
  std::vector<TensorToWrite> ts = {
      {"embed.weight", DType::BF16, {3, 5}, random_bytes(30, 1)},
      {"layers.0.attn.wq_a.weight", DType::F8_E4M3, {4, 6}, random_bytes(24, 2)},
      {"layers.0.attn.wq_a.scale", DType::F8_E8M0, {1, 1}, random_bytes(1, 3)},
      {"layers.0.ffn.experts.0.w1.weight", DType::I8, {2, 16}, random_bytes(32, 4)},
      {"hc_head_base", DType::F32, {4}, random_bytes(16, 5)},
      {"scalar", DType::F32, {}, random_bytes(4, 6)},
      {"empty", DType::F32, {0, 7}, {}},
      {"ids", DType::I64, {3}, random_bytes(24, 7)},
  };
  const std::string p = d.file("model.safetensors");
  write_safetensors(p, ts);
  SafetensorsFile f(p);
  EXPECT_EQ(f.path(), p);
  ASSERT_EQ(f.tensors().size(), ts.size()) << "__metadata__ must not appear as a tensor";
  for (auto& t : ts) {
    ASSERT_TRUE(f.tensors().count(t.name)) << t.name;
    const TensorInfo& info = f.tensors().at(t.name);
    EXPECT_EQ(info.name, t.name);
    EXPECT_EQ(info.dtype, t.dtype) << t.name;
    EXPECT_EQ(info.shape, t.shape) << t.name;
    EXPECT_EQ(info.nbytes, t.bytes.size()) << t.name;
    ASSERT_NE(info.file, nullptr);
    EXPECT_EQ(*info.file, p);
    if (!t.bytes.empty()) {
      EXPECT_EQ(std::vector<uint8_t>(info.data, info.data + info.nbytes), t.bytes) << t.name;
    }
  }
  EXPECT_EQ(f.tensors().at("embed.weight").numel(), 15);
  EXPECT_EQ(f.tensors().at("scalar").numel(), 1);
  EXPECT_EQ(f.tensors().at("empty").numel(), 0);
  EXPECT_EQ(f.tensors().at("embed.weight").shape_str(), "[3, 5]");
  EXPECT_EQ(f.tensors().at("scalar").shape_str(), "[]");
  EXPECT_EQ(f.tensors().at("embed.weight").dim(1), 5);
  // The data region starts 8-byte aligned (header padded).
  std::ifstream in(p, std::ios::binary);
  uint64_t hlen = 0;
  in.read(reinterpret_cast<char*>(&hlen), 8);
  EXPECT_EQ((8 + hlen) % 8, 0u);
}

TEST(Safetensors, HandWrittenFileWithMetadataAndGap) {
  // Tensors need not be contiguous or in order; __metadata__ is skipped.
  TempDir d;
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"b":{"dtype":"BF16","shape":[2],"data_offsets":[8,12]},)"
      R"("a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]}})";
  const std::string data("\x01\x02\x03?????\x80\x3f\x00\x40", 12);
  write_bytes(d.file("x.safetensors"), safetensors_bytes(header, data));
  SafetensorsFile f(d.file("x.safetensors"));
  ASSERT_EQ(f.tensors().size(), 2u);
  const auto& b = f.tensors().at("b");
  EXPECT_EQ(b.dtype, DType::BF16);
  EXPECT_EQ(bf16_to_f32(uint16_t(b.data[0] | (b.data[1] << 8))), 1.0f);
  EXPECT_EQ(bf16_to_f32(uint16_t(b.data[2] | (b.data[3] << 8))), 2.0f);
  EXPECT_EQ(f.tensors().at("a").data[2], 3);
}

// ------------------------------------------------------------------------------------------- bad files

TEST(SafetensorsErrors, TruncatedBelow8Bytes) {
  TempDir d;
  for (size_t n : {size_t(0), size_t(5)}) {
    const std::string p = d.file("short" + std::to_string(n) + ".safetensors");
    write_bytes(p, std::string(n, '\x10'));
    const std::string msg = open_error(p);
    EXPECT_CONTAINS(msg, p);
    EXPECT_CONTAINS(msg, "truncated");
  }
}

TEST(SafetensorsErrors, HeaderLengthPastEof) {
  TempDir d;
  const std::string p = d.file("hlen.safetensors");
  write_bytes(p, safetensors_bytes(kGoodHeader, std::string(24, '\0'), 1000));
  const std::string msg = open_error(p);
  EXPECT_CONTAINS(msg, p);
  EXPECT_CONTAINS(msg, "past the end");
  // An absurd header length is rejected without trying to read it.
  const std::string q = d.file("huge.safetensors");
  write_bytes(q, safetensors_bytes(kGoodHeader, "", int64_t(1) << 40));
  const std::string m2 = open_error(q);
  EXPECT_CONTAINS(m2, q);
  EXPECT_CONTAINS(m2, "header length");
}

TEST(SafetensorsErrors, DataOffsetsPastEof) {
  TempDir d;
  const std::string p = d.file("cut.safetensors");
  write_bytes(p, safetensors_bytes(kGoodHeader, std::string(20, '\0')));  // 4 bytes short
  const std::string msg = open_error(p);
  EXPECT_CONTAINS(msg, p);
  EXPECT_CONTAINS(msg, "'w'");
  EXPECT_CONTAINS(msg, "past the end");
  // A valid file truncated on disk gives the same diagnosis.
  const std::string q = d.file("trunc.safetensors");
  write_safetensors(q, {{"t.weight", DType::F32, {64}, random_bytes(256, 9)}});
  std::filesystem::resize_file(q, std::filesystem::file_size(q) - 10);
  const std::string m2 = open_error(q);
  EXPECT_CONTAINS(m2, "t.weight");
  EXPECT_CONTAINS(m2, "truncated");
}

TEST(SafetensorsErrors, BadHeaderJson) {
  TempDir d;
  for (std::string h : {std::string(R"({"w":{"dtype":"F32",)"), std::string("not json at all")}) {
    const std::string p = d.file("badjson.safetensors");
    write_bytes(p, safetensors_bytes(h, std::string(24, '\0')));
    const std::string msg = open_error(p);
    EXPECT_CONTAINS(msg, p);
    EXPECT_CONTAINS(msg, "JSON");
  }
  const std::string p = d.file("array.safetensors");
  write_bytes(p, safetensors_bytes("[1, 2, 3]", ""));
  EXPECT_CONTAINS(open_error(p), "not a JSON object");
}

TEST(SafetensorsErrors, UnknownDtype) {
  TempDir d;
  const std::string p = d.file("dtype.safetensors");
  write_bytes(p, safetensors_bytes(R"({"layers.0.x":{"dtype":"F8_E5M2","shape":[4],"data_offsets":[0,4]}})",
                                   std::string(4, '\0')));
  const std::string msg = open_error(p);
  EXPECT_CONTAINS(msg, "layers.0.x");
  EXPECT_CONTAINS(msg, "unknown dtype");
  EXPECT_CONTAINS(msg, "F8_E5M2");
  EXPECT_CONTAINS(msg, p);
}

TEST(SafetensorsErrors, ByteSizeNotShapeTimesDtype) {
  TempDir d;
  const std::string p = d.file("size.safetensors");
  write_bytes(p, safetensors_bytes(R"({"head.weight":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,24]}})",
                                   std::string(24, '\0')));
  const std::string msg = open_error(p);
  EXPECT_CONTAINS(msg, "head.weight");
  EXPECT_CONTAINS(msg, "byte size");
  EXPECT_CONTAINS(msg, "[2, 3]");
}

TEST(SafetensorsErrors, OverlappingTensors) {
  TempDir d;
  const std::string p = d.file("overlap.safetensors");
  write_bytes(p, safetensors_bytes(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                                   R"("b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})",
                                   std::string(24, '\0')));
  const std::string msg = open_error(p);
  EXPECT_CONTAINS(msg, p);
  EXPECT_CONTAINS(msg, "overlap");
  // Adjacent is fine.
  const std::string q = d.file("adjacent.safetensors");
  write_bytes(q, safetensors_bytes(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                                   R"("b":{"dtype":"F32","shape":[2],"data_offsets":[16,24]}})",
                                   std::string(24, '\0')));
  EXPECT_NO_THROW(SafetensorsFile f(q));
}

TEST(SafetensorsErrors, ReversedOffsets) {
  TempDir d;
  const std::string p = d.file("rev.safetensors");
  write_bytes(p, safetensors_bytes(R"({"rev.t":{"dtype":"F32","shape":[2],"data_offsets":[16,8]}})",
                                   std::string(24, '\0')));
  const std::string msg = open_error(p);
  EXPECT_CONTAINS(msg, "rev.t");
  EXPECT_CONTAINS(msg, "reversed");
}

TEST(SafetensorsErrors, MalformedEntries) {
  TempDir d;
  struct Case { const char* header; const char* phrase; };
  const Case cases[] = {
      {R"({"m.t":{"dtype":"F32","shape":[2]}})", "data_offsets"},
      {R"({"m.t":{"shape":[2],"data_offsets":[0,8]}})", "dtype"},
      {R"({"m.t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", "negative"},
      {R"({"m.t":{"dtype":"F32","shape":"2","data_offsets":[0,8]}})", "shape"},
      {R"({"m.t":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", "data_offsets"},
      {R"({"m.t":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", "data_offsets"},
      {R"({"m.t":{"dtype":32,"shape":[2],"data_offsets":[0,8]}})", "dtype"},
      {R"({"m.t":[1,2]})", "dtype"},
  };
  for (auto& c : cases) {
    const std::string p = d.file("bad.safetensors");
    write_bytes(p, safetensors_bytes(c.header, std::string(8, '\0')));
    const std::string msg = open_error(p);
    EXPECT_CONTAINS(msg, "m.t");
    EXPECT_CONTAINS(msg, c.phrase);
  }
}

// ------------------------------------------------------------------------------------------- Checkpoint

namespace {
void write_index(const std::string& path, const nlohmann::json& weight_map) {
  nlohmann::json j = {{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}};
  std::ofstream(path) << j.dump(2);
}
}  // namespace

TEST(Checkpoint, ShardedWithIndex) {
  TempDir d;
  write_safetensors(d.file("model-00001-of-00002.safetensors"),
                    {{"a.weight", DType::F32, {2}, random_bytes(8, 1)}, {"b.weight", DType::BF16, {4}, random_bytes(8, 2)}});
  write_safetensors(d.file("model-00002-of-00002.safetensors"), {{"c.weight", DType::I8, {3}, random_bytes(3, 3)}});
  write_index(d.file("model.safetensors.index.json"), {{"a.weight", "model-00001-of-00002.safetensors"},
                                                       {"b.weight", "model-00001-of-00002.safetensors"},
                                                       {"c.weight", "model-00002-of-00002.safetensors"}});
  Checkpoint ck(d.str());
  EXPECT_EQ(ck.num_files(), 2u);
  EXPECT_EQ(ck.tensors().size(), 3u);
  EXPECT_EQ(ck.get("c.weight").dtype, DType::I8);
  EXPECT_EQ(ck.get("b.weight").shape, (std::vector<int64_t>{4}));
  EXPECT_EQ(ck.find("nope"), nullptr);
  EXPECT_EQ(ck.dir(), d.str());
}

TEST(Checkpoint, MissingTensorViaGetNamesIt) {
  TempDir d;
  write_safetensors(d.file("model.safetensors"), {{"a.weight", DType::F32, {2}, random_bytes(8, 1)}});
  Checkpoint ck(d.str());
  const std::string msg = error_of([&] { ck.get("layers.7.attn.wkv.weight"); });
  EXPECT_CONTAINS(msg, "layers.7.attn.wkv.weight");
  EXPECT_CONTAINS(msg, "missing");
}

TEST(Checkpoint, IndexPointsToMissingShard) {
  TempDir d;
  write_safetensors(d.file("model-00001-of-00002.safetensors"), {{"a.weight", DType::F32, {2}, random_bytes(8, 1)}});
  write_index(d.file("model.safetensors.index.json"),
              {{"a.weight", "model-00001-of-00002.safetensors"}, {"z.weight", "model-00002-of-00002.safetensors"}});
  const std::string msg = error_of([&] { Checkpoint ck(d.str()); });
  EXPECT_CONTAINS(msg, "model-00002-of-00002.safetensors");
  EXPECT_CONTAINS(msg, "missing");
}

TEST(Checkpoint, TensorListedInIndexButAbsentFromItsShard) {
  TempDir d;
  write_safetensors(d.file("s1.safetensors"), {{"a.weight", DType::F32, {2}, random_bytes(8, 1)}});
  write_safetensors(d.file("s2.safetensors"), {{"b.weight", DType::F32, {2}, random_bytes(8, 2)}});
  // "b.weight" exists, but in s2, while the index says s1; "ghost" exists nowhere.
  write_index(d.file("model.safetensors.index.json"), {{"a.weight", "s1.safetensors"}, {"b.weight", "s1.safetensors"}});
  const std::string msg = error_of([&] { Checkpoint ck(d.str()); });
  EXPECT_CONTAINS(msg, "b.weight");
  EXPECT_CONTAINS(msg, "s1.safetensors");
  write_index(d.file("model.safetensors.index.json"), {{"a.weight", "s1.safetensors"}, {"ghost", "s2.safetensors"}});
  const std::string m2 = error_of([&] { Checkpoint ck(d.str()); });
  EXPECT_CONTAINS(m2, "ghost");
  EXPECT_CONTAINS(m2, "s2.safetensors");
}

TEST(Checkpoint, BadIndexJson) {
  TempDir d;
  write_safetensors(d.file("s1.safetensors"), {{"a.weight", DType::F32, {2}, random_bytes(8, 1)}});
  std::ofstream(d.file("model.safetensors.index.json")) << "{\"weight_map\": {";
  const std::string msg = error_of([&] { Checkpoint ck(d.str()); });
  EXPECT_CONTAINS(msg, "model.safetensors.index.json");
  std::ofstream(d.file("model.safetensors.index.json")) << R"({"metadata": {}})";
  const std::string m2 = error_of([&] { Checkpoint ck(d.str()); });
  EXPECT_CONTAINS(m2, "weight_map");
  std::ofstream(d.file("model.safetensors.index.json")) << R"({"weight_map": {"a.weight": 3}})";
  const std::string m3 = error_of([&] { Checkpoint ck(d.str()); });
  EXPECT_CONTAINS(m3, "a.weight");
}

TEST(Checkpoint, BadShardNamesTheShardFile) {
  TempDir d;
  write_bytes(d.file("broken.safetensors"), "\x01\x02");
  const std::string msg = error_of([&] { Checkpoint ck(d.str()); });
  EXPECT_CONTAINS(msg, "broken.safetensors");
}

TEST(Checkpoint, FolderWithoutIndex) {
  TempDir d;
  write_safetensors(d.file("b.safetensors"), {{"x", DType::F32, {1}, random_bytes(4, 1)}});
  write_safetensors(d.file("a.safetensors"), {{"y", DType::F32, {1}, random_bytes(4, 2)}});
  write_safetensors(d.file("golden.safetensors"), {{"logits", DType::F32, {1}, random_bytes(4, 3)}});
  Checkpoint ck(d.str());
  EXPECT_EQ(ck.num_files(), 2u) << "golden.safetensors is not part of the model";
  EXPECT_NE(ck.find("x"), nullptr);
  EXPECT_NE(ck.find("y"), nullptr);
  EXPECT_EQ(ck.find("logits"), nullptr);
  // The same tensor in two shards is an error naming it.
  write_safetensors(d.file("c.safetensors"), {{"x", DType::F32, {1}, random_bytes(4, 4)}});
  const std::string msg = error_of([&] { Checkpoint ck2(d.str()); });
  EXPECT_CONTAINS(msg, "'x'");
}

TEST(Checkpoint, MissingOrEmptyFolder) {
  TempDir d;
  const std::string nope = d.file("no_such_dir");
  EXPECT_CONTAINS(error_of([&] { Checkpoint ck(nope); }), nope);
  EXPECT_CONTAINS(error_of([&] { Checkpoint ck(d.str()); }), d.str());
}

TEST(Checkpoint, TinyFlashFixtureLoads) {
  const std::string dir = std::string(DSV4_TEST_DATA) + "/fixtures/tiny-flash";
  if (!std::filesystem::exists(dir + "/model.safetensors.index.json")) GTEST_SKIP() << "fixture not present";
  Checkpoint ck(dir);
  EXPECT_EQ(ck.num_files(), 2u);
  std::ifstream in(dir + "/model.safetensors.index.json");
  auto idx = nlohmann::json::parse(in);
  EXPECT_EQ(ck.tensors().size(), idx["weight_map"].size());
  const TensorInfo& e = ck.get("embed.weight");
  EXPECT_EQ(e.dtype, DType::BF16);
  EXPECT_EQ(e.shape, (std::vector<int64_t>{512, 256}));
  EXPECT_EQ(ck.get("hc_head_fn").shape, (std::vector<int64_t>{4, 1024}));
  EXPECT_EQ(ck.get("layers.1.attn.wq_a.weight").dtype, DType::F8_E4M3);
  EXPECT_EQ(ck.get("layers.1.attn.wq_a.scale").dtype, DType::F8_E8M0);
  EXPECT_EQ(ck.get("layers.0.ffn.experts.0.w1.weight").dtype, DType::I8);
  for (auto& [name, t] : ck.tensors()) {
    EXPECT_EQ(int64_t(t->nbytes), t->numel() * int64_t(dtype_size(t->dtype))) << name;
    EXPECT_EQ(idx["weight_map"][name].get<std::string>(), std::filesystem::path(*t->file).filename().string()) << name;
  }
}
