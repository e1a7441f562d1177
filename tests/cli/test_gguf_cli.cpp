// dsv4 inspect on a llama.cpp-style deepseek4 GGUF (docs/gguf.md): the config and every tensor are read
// from the one file; binding stops at the MXFP4 experts until block-format matmuls land.
#include <gtest/gtest.h>

#include <filesystem>

#include "cli/cli_util.h"
#include "io/gguf_writer.h"

namespace dsv4::test {
namespace {

namespace fs = std::filesystem;

TEST(GgufCli, InspectReadsTheGgufLikeTheFolder) {
  const fs::path tmp = make_temp_dir("gguf_cli");
  const std::string flash = std::string(DSV4_TEST_DATA) + "/fixtures/tiny-flash";
  const std::string gguf = convert_fixture_to_gguf(flash, (tmp / "out").string());
  const CmdRun native = run_dsv4("inspect -m " + flash, tmp);
  const CmdRun r = run_dsv4("inspect -m " + gguf, tmp);
  EXPECT_NE(r.out.find("checkpoint: " + gguf + " (1 shard)"), std::string::npos) << r.out << r.err;
  EXPECT_NE(r.out.find("mxfp4"), std::string::npos) << r.out;
  // Same architecture line and parameter count as the native checkpoint.
  for (const char* line : {"dim 256, 4 layers, 4 heads", "parameters: "}) {
    const size_t a = native.out.find(line), b = r.out.find(line);
    ASSERT_NE(a, std::string::npos) << native.out;
    ASSERT_NE(b, std::string::npos) << r.out;
    EXPECT_EQ(native.out.substr(a, native.out.find('\n', a) - a), r.out.substr(b, r.out.find('\n', b) - b));
  }
  fs::remove_all(tmp);
}

}  // namespace
}  // namespace dsv4::test
