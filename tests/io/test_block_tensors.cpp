// Block-quantised tensors in safetensors shards (io/safetensors.h kBlockFormatKeyPrefix): the stream writer
// stores a logical [rows, cols] tensor as U8 [rows, row bytes] with its format in __metadata__, the reader
// gives back the logical view, and every inconsistent header names the tensor and what is wrong.
#include <gtest/gtest.h>

#include <random>

#include "io_test_util.h"
#include "io/safetensors.h"
#include "io/safetensors_writer.h"

using namespace dsv4;
using namespace io_test;

TEST(BlockTensors, StreamWriterRoundTripsFormatAndLogicalShape) {
  TempDir d;
  const std::string p = d.file("q.safetensors");
  const std::vector<TensorDecl> decls = {{"a.weight", DType::U8, {3, 512}, BlockFormat::Q4_K},
                                         {"b.weight", DType::U8, {2, 64}, BlockFormat::Q8_0},
                                         {"c", DType::F32, {4}}};
  std::mt19937 g(5);
  std::vector<std::vector<uint8_t>> data;
  {
    SafetensorsStreamWriter w(p, decls);
    for (const auto& t : decls) {
      std::vector<uint8_t> b(t.nbytes());
      for (auto& x : b) x = uint8_t(g());
      w.write(b.data(), b.size());
      data.push_back(std::move(b));
    }
    w.close();
  }
  EXPECT_EQ(decls[0].nbytes(), size_t(3 * 2 * 144));
  EXPECT_EQ(decls[1].nbytes(), size_t(2 * 2 * 34));
  SafetensorsFile f(p);
  const TensorInfo& a = f.tensors().at("a.weight");
  EXPECT_EQ(a.format, BlockFormat::Q4_K);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{3, 512}));
  EXPECT_EQ(a.nbytes, data[0].size());
  EXPECT_EQ(std::vector<uint8_t>(a.data, a.data + a.nbytes), data[0]);
  EXPECT_EQ(f.tensors().at("b.weight").format, BlockFormat::Q8_0);
  EXPECT_EQ(f.tensors().at("c").format, BlockFormat::None);
}

TEST(BlockTensors, WriterRejectsColumnsThatDoNotSplitIntoBlocks) {
  TempDir d;
  const std::string msg = error_of([&] {
    SafetensorsStreamWriter w(d.file("x.safetensors"), {{"w", DType::U8, {2, 128}, BlockFormat::Q4_K}});
  });
  EXPECT_CONTAINS(msg, "'w'");
  EXPECT_CONTAINS(msg, "q4_k");
}

TEST(BlockTensors, BadMetadataNamesTensorAndProblem) {
  TempDir d;
  auto file = [&](const std::string& fmtval, const std::string& dtype, const std::string& shape, size_t bytes) {
    const std::string header = R"({"__metadata__":{"format":"pt","dsv4.block_format.w":)" + fmtval + R"(},)" +
                               R"("w":{"dtype":")" + dtype + R"(","shape":)" + shape +
                               R"(,"data_offsets":[0,)" + std::to_string(bytes) + "]}}";
    const std::string p = d.file("bad.safetensors");
    write_bytes(p, safetensors_bytes(header, std::string(bytes, '\0')));
    return error_of([&] { SafetensorsFile f(p); });
  };
  EXPECT_CONTAINS(file(R"("q9_z:32")", "U8", "[1,34]", 34), "known format");
  EXPECT_CONTAINS(file(R"("q8_0")", "U8", "[1,34]", 34), "<format>:<columns>");
  EXPECT_CONTAINS(file(R"("q8_0:48")", "U8", "[1,34]", 34), "multiple of 32");
  EXPECT_CONTAINS(file(R"("q8_0:64")", "U8", "[1,34]", 34), "must be U8 [rows, 68]");
  EXPECT_CONTAINS(file(R"("q8_0:32")", "F32", "[1,34]", 136), "must be U8");
  EXPECT_CONTAINS(file(R"("q8_0:32x")", "U8", "[1,34]", 34), "multiple of 32");
  const std::string ok = file(R"("q8_0:32")", "U8", "[1,34]", 34);
  EXPECT_EQ(ok, "<no exception>");
  // A format for a tensor the file does not have.
  const std::string header = R"({"__metadata__":{"dsv4.block_format.v":"q8_0:32"},)"
                             R"("w":{"dtype":"U8","shape":[1,34],"data_offsets":[0,34]}})";
  write_bytes(d.file("orphan.safetensors"), safetensors_bytes(header, std::string(34, '\0')));
  EXPECT_CONTAINS(error_of([&] { SafetensorsFile f(d.file("orphan.safetensors")); }), "'v'");
}
