// ThreadPool, MappedFile and the error helpers of src/core.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>
#include <unistd.h>

#include "core/error.h"
#include "core/mapped_file.h"
#include "core/thread_pool.h"

using namespace dsv4;
namespace fs = std::filesystem;

TEST(ThreadPool, ParallelForCoversEachIndexOnce) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.size(), threads);
    for (size_t n : {size_t(0), size_t(1), size_t(7), size_t(1000)}) {
      for (size_t min_chunk : {size_t(1), size_t(8), size_t(5000)}) {
        std::vector<std::atomic<int>> hits(n);
        pool.parallel_for(n, [&](size_t b, size_t e) {
          ASSERT_LE(b, e);
          ASSERT_LE(e, n);
          for (size_t i = b; i < e; ++i) hits[i]++;
        }, min_chunk);
        for (size_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "n=" << n << " i=" << i;
      }
    }
  }
}

TEST(ThreadPool, ReusableManyTimes) {
  ThreadPool pool(3);
  std::atomic<long> sum{0};
  for (int it = 0; it < 200; ++it)
    pool.parallel_for(100, [&](size_t b, size_t e) {
      for (size_t i = b; i < e; ++i) sum += long(i);
    });
  EXPECT_EQ(sum.load(), 200L * 4950);
}

TEST(ThreadPool, ConcurrentAndNestedCallersDoNotDeadlock) {
  // The server's scheduler thread and a caller thread may both run model code on the global pool.
  ThreadPool pool(3);
  std::atomic<long> sum{0};
  auto work = [&] {
    for (int it = 0; it < 300; ++it)
      pool.parallel_for(64, [&](size_t b, size_t e) {
        for (size_t i = b; i < e; ++i)
          pool.parallel_for(4, [&](size_t b2, size_t e2) { sum += long(e2 - b2); });
      });
  };
  std::thread other(work);
  work();
  other.join();
  EXPECT_EQ(sum.load(), 2L * 300 * 64 * 4);
}

TEST(MappedFile, MapsBytesAndReportsErrors) {
  const fs::path dir = fs::temp_directory_path() / ("dsv4_core_ut_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string p = (dir / "f.bin").string();
  {
    std::ofstream f(p, std::ios::binary);
    f << "hello\0world";
  }
  MappedFile m(p);
  ASSERT_EQ(m.size(), 5u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(m.data()), 5), "hello");
  EXPECT_EQ(m.path(), p);
  MappedFile moved(std::move(m));
  EXPECT_EQ(moved.size(), 5u);
  EXPECT_EQ(read_text_file(p), "hello");

  const std::string empty = (dir / "empty.bin").string();
  { std::ofstream f(empty, std::ios::binary); }
  MappedFile e(empty);
  EXPECT_EQ(e.size(), 0u);

  const std::string missing = (dir / "nope.bin").string();
  try {
    MappedFile x(missing);
    FAIL() << "no error for a missing file";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("nope.bin"), std::string::npos) << err.what();
  }
  EXPECT_THROW(read_text_file(missing), Error);
  try {
    MappedFile x(dir.string());
    FAIL() << "no error for a directory";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("not a regular file"), std::string::npos) << err.what();
  }
  fs::remove_all(dir);
}

TEST(ErrorHelpers, FailFormatsAndCheckThrows) {
  try {
    fail("tensor '{}' has {} dims", "a.b", 3);
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "tensor 'a.b' has 3 dims");
  }
  EXPECT_NO_THROW(DSV4_CHECK(1 + 1 == 2, "never"));
  EXPECT_THROW(DSV4_CHECK(false, "bad {}", 1), Error);
}
