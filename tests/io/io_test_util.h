#pragma once
// Helpers for the io tests: a per-test temporary folder and raw file writers.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "core/error.h"

namespace io_test {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = std::string("dsv4_io_ut_") + std::to_string(::getpid()) + "_" +
                       (info ? std::string(info->test_suite_name()) + "_" + info->name() : "x");
    path_ = fs::temp_directory_path() / name;
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  std::string str() const { return path_.string(); }

 private:
  fs::path path_;
};

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), std::streamsize(bytes.size()));
}

// A safetensors file by hand: 8-byte little-endian header length, header text, data bytes.
inline std::string safetensors_bytes(const std::string& header, const std::string& data, int64_t hlen_override = -1) {
  uint64_t n = hlen_override >= 0 ? uint64_t(hlen_override) : header.size();
  std::string out(8, '\0');
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const dsv4::Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("<not a dsv4::Error: ") + e.what() + ">";
  }
  return "<no exception>";
}

}  // namespace io_test

#define EXPECT_CONTAINS(hay, needle)                                                                          \
  EXPECT_NE(std::string(hay).find(needle), std::string::npos) << "message: " << (hay) << "\nexpected to contain: " \
                                                                << (needle)
