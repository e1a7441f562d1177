// The disk tier of the prefix cache (runtime/disk_cache.h) behind the scheduler: a prompt's state is
// found again by a new scheduler on the same folder (a restart), gives the same greedy tokens as a
// cold run, and a damaged file is ignored and rewritten.
#include <gtest/gtest.h>

#include <dirent.h>
#include <sys/stat.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <unistd.h>

#include "runtime/test_util.h"

namespace dsv4 {
namespace {

std::string fresh_dir(const std::string& name) {
  static std::atomic<int> n{0};
  const std::string d = fmt::format("{}disk_cache_{}_{}_{}", ::testing::TempDir(), name, ::getpid(), n++);
  std::filesystem::remove_all(d);
  return d;
}

std::vector<std::string> state_files(const std::string& dir) {
  std::vector<std::string> out;
  if (!std::filesystem::exists(dir)) return out;
  for (auto& e : std::filesystem::recursive_directory_iterator(dir))
    if (e.path().extension() == ".state") out.push_back(e.path().string());
  return out;
}

SchedulerOptions opts(const std::string& dir, int64_t chunk = 8) {
  SchedulerOptions o{1, 4096, chunk, 0};  // RAM tier off: every hit below comes from disk
  o.cache_dir = dir;
  return o;
}

struct Run {
  std::vector<int32_t> tokens;
  int64_t cached = -1;
  SchedulerStats stats;
};

Run run(const SchedulerOptions& o, const std::vector<int32_t>& prompt, int n = 16) {
  Scheduler s(nano().model, nano().tok, o);
  Collected c;
  submit(s, greedy(prompt, n), c);
  c.done.get_future().wait();
  EXPECT_EQ(c.finish == "stop" || c.finish == "length", true) << c.finish;
  return {c.tokens, c.cached, s.stats()};
}  // the scheduler's destructor writes what is queued

const std::vector<int32_t>& prompt() {
  static const auto p = prompt_ids("Who was the father of Isaac, and what did the LORD promise him in the land?");
  return p;
}

TEST(DiskCache, ARestartFindsThePromptAndContinuesExactly) {
  const auto cold = run(opts(""), prompt());
  const std::string dir = fresh_dir("restart");
  const auto first = run(opts(dir), prompt());
  EXPECT_EQ(first.cached, 0);
  EXPECT_EQ(first.tokens, cold.tokens);
  EXPECT_FALSE(state_files(dir).empty());
  const auto second = run(opts(dir), prompt());
  EXPECT_EQ(second.cached, int64_t(prompt().size()) - 1);
  EXPECT_EQ(second.stats.disk_hits, 1u);
  EXPECT_EQ(second.tokens, cold.tokens);
  std::filesystem::remove_all(dir);
}

TEST(DiskCache, APromptSharingOnlyTheStartUsesAPrefillSnapshot) {
  const std::string dir = fresh_dir("shared");
  SchedulerOptions o = opts(dir);
  o.disk_snapshot_interval = 16;
  run(o, prompt());
  auto other = std::vector<int32_t>(prompt().begin(), prompt().begin() + 20);
  const auto tail = prompt_ids("And the LORD said unto Moses");
  other.insert(other.end(), tail.begin() + 1, tail.end());
  const auto cold = run(opts(""), other);
  const auto warm = run(o, other);
  EXPECT_EQ(warm.cached, 16);
  EXPECT_EQ(warm.tokens, cold.tokens);
  std::filesystem::remove_all(dir);
}

TEST(DiskCache, ADamagedFileIsIgnoredAndRewritten) {
  const auto cold = run(opts(""), prompt());
  const std::string dir = fresh_dir("damaged");
  run(opts(dir), prompt());
  const auto files = state_files(dir);
  ASSERT_FALSE(files.empty());
  for (auto& f : files) {
    std::fstream io(f, std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(std::streamoff(std::filesystem::file_size(f) / 2));
    io.put('\x5a');
  }
  const auto second = run(opts(dir), prompt());
  EXPECT_EQ(second.cached, 0);
  EXPECT_GE(second.stats.disk.rejected, 1u);
  EXPECT_EQ(second.tokens, cold.tokens);
  // A truncated file the same way; then the rewritten ones are trusted again.
  const auto third = run(opts(dir), prompt());
  EXPECT_EQ(third.cached, int64_t(prompt().size()) - 1);
  EXPECT_EQ(third.tokens, cold.tokens);
  for (auto& f : state_files(dir)) std::filesystem::resize_file(f, std::filesystem::file_size(f) - 3);
  const auto fourth = run(opts(dir), prompt());
  EXPECT_EQ(fourth.cached, 0);
  EXPECT_EQ(fourth.tokens, cold.tokens);
  std::filesystem::remove_all(dir);
}

TEST(DiskCache, TheSizeCapEvictsTheLeastRecentlyUsed) {
  const std::string dir = fresh_dir("cap");
  run(opts(dir), prompt(), 1);
  const auto files = state_files(dir);
  ASSERT_FALSE(files.empty());
  uint64_t one = 0;
  for (auto& f : files) one = std::max<uint64_t>(one, std::filesystem::file_size(f));
  SchedulerOptions o = opts(dir);
  o.cache_disk_bytes = one * 2;
  run(o, prompt_ids("Blessed are the meek, for they shall inherit the earth"), 1);
  run(o, prompt_ids("In the beginning God created the heaven and the earth"), 1);
  uint64_t total = 0;
  for (auto& f : state_files(dir)) total += std::filesystem::file_size(f);
  EXPECT_LE(total, o.cache_disk_bytes);
  EXPECT_LT(state_files(dir).size(), 2 * files.size() + files.size());  // some were evicted
  // The newest prompt survives, the first one (least recently used) is gone.
  EXPECT_EQ(run(o, prompt(), 1).cached, 0);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace dsv4
