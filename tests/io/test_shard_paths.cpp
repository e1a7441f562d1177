// Shard names in model.safetensors.index.json (issue 13): only plain file names inside the checkpoint
// folder that name regular files are opened; the error names the tensor and the shard. Symlinks to
// regular files anywhere (the Hugging Face cache layout) keep working.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "io_test_util.h"

using namespace dsv4;
using namespace io_test;

namespace {

void write_index(const std::string& path, const nlohmann::json& weight_map) {
  std::ofstream(path) << nlohmann::json{{"weight_map", weight_map}}.dump();
}

void write_shard(const std::string& path, const std::string& tensor) {
  write_safetensors(path, {{tensor, DType::F32, {2}, std::vector<uint8_t>(8, 0)}});
}

// The error for an index mapping "a.weight" to a good shard and "evil.weight" to `shard`.
std::string index_error(const TempDir& d, const std::string& shard) {
  write_shard(d.file("good.safetensors"), "a.weight");
  write_index(d.file("model.safetensors.index.json"), {{"a.weight", "good.safetensors"}, {"evil.weight", shard}});
  return error_of([&] { Checkpoint ck(d.str()); });
}

}  // namespace

TEST(ShardPaths, NamesThatLeaveTheFolderAreRejected) {
  TempDir d;
  fs::create_directories(d.file("sub"));
  write_shard(d.file("sub/x.safetensors"), "evil.weight");
  for (const std::string shard : {"../../../../etc/passwd", "/dev/zero", "/etc/passwd", "sub/x.safetensors",
                                  "./good.safetensors", "", ".", "..", "sub\\x.safetensors"}) {
    const std::string msg = index_error(d, shard);
    EXPECT_CONTAINS(msg, "'evil.weight'") << shard;
    EXPECT_CONTAINS(msg, "'" + shard + "'");
    EXPECT_CONTAINS(msg, "plain file name");
  }
}

TEST(ShardPaths, OnlyRegularFilesAreOpened) {
  TempDir d;
  fs::create_directories(d.file("dir.safetensors"));
  ASSERT_EQ(::mkfifo(d.file("fifo.safetensors").c_str(), 0600), 0);  // opening it would block
  fs::create_symlink("/dev/zero", d.file("zero.safetensors"));
  fs::create_symlink(d.file("fifo.safetensors"), d.file("to_fifo.safetensors"));
  for (const std::string shard : {"dir.safetensors", "fifo.safetensors", "zero.safetensors", "to_fifo.safetensors"}) {
    const std::string msg = index_error(d, shard);
    EXPECT_CONTAINS(msg, "'evil.weight'") << shard;
    EXPECT_CONTAINS(msg, "'" + shard + "'");
    EXPECT_CONTAINS(msg, "not a regular file");
  }
  fs::create_symlink(d.file("nowhere"), d.file("dangling.safetensors"));
  EXPECT_CONTAINS(index_error(d, "dangling.safetensors"), "dangling symlink");
  EXPECT_CONTAINS(index_error(d, "absent.safetensors"), "missing");
}

TEST(ShardPaths, FolderWithoutIndexRejectsNonRegularShards) {
  TempDir d;
  write_shard(d.file("a.safetensors"), "a.weight");
  ASSERT_EQ(::mkfifo(d.file("b.safetensors").c_str(), 0600), 0);
  const std::string msg = error_of([&] { Checkpoint ck(d.str()); });
  EXPECT_CONTAINS(msg, "'b.safetensors'");
  EXPECT_CONTAINS(msg, "not a regular file");
}

TEST(ShardPaths, IndexThatIsNotARegularFileIsRejected) {
  TempDir d;
  fs::create_directories(d.file("model.safetensors.index.json"));
  EXPECT_CONTAINS(error_of([&] { Checkpoint ck(d.str()); }), "model.safetensors.index.json");
}

TEST(ShardPaths, HuggingFaceCacheSymlinksLoad) {
  // huggingface-cli download: snapshots/<rev>/<shard> -> ../../blobs/<hash>, targets outside the folder.
  TempDir d;
  const fs::path root = d.str(), snap = root / "snapshots" / "0123abcd", blobs = root / "blobs";
  fs::create_directories(snap);
  fs::create_directories(blobs);
  write_shard((blobs / "1111").string(), "a.weight");
  write_shard((blobs / "2222").string(), "b.weight");
  write_index((blobs / "3333").string(), {{"a.weight", "model-00001-of-00002.safetensors"},
                                          {"b.weight", "model-00002-of-00002.safetensors"}});
  fs::create_symlink("../../blobs/1111", snap / "model-00001-of-00002.safetensors");
  fs::create_symlink("../../blobs/2222", snap / "model-00002-of-00002.safetensors");
  fs::create_symlink("../../blobs/3333", snap / "model.safetensors.index.json");
  Checkpoint ck(snap.string());
  EXPECT_EQ(ck.num_files(), 2u);
  EXPECT_NE(ck.find("a.weight"), nullptr);
  EXPECT_NE(ck.find("b.weight"), nullptr);
}
