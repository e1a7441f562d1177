#pragma once
// Shared by the fuzz targets: a scratch folder per process, file writing, input splitting, and the
// check that turns a broken invariant into a libFuzzer finding.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

namespace fuzz {

namespace fs = std::filesystem;

// Created on first use, removed at exit (libFuzzer exits normally at the end of a timed run).
inline const fs::path& scratch_dir() {
  static const fs::path dir = [] {
    fs::path p = fs::temp_directory_path() / ("dsv4_fuzz_" + std::to_string(::getpid()));
    fs::remove_all(p);
    fs::create_directories(p);
    std::atexit([] { std::error_code ec; fs::remove_all(scratch_dir(), ec); });
    return p;
  }();
  return dir;
}

inline void write_file(const fs::path& p, std::string_view bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), std::streamsize(bytes.size()));
  if (!f) std::abort();  // the harness itself failed, not the code under test
}

// The pieces of `s` between occurrences of `sep` (always at least one).
inline std::vector<std::string_view> split(std::string_view s, std::string_view sep) {
  std::vector<std::string_view> out;
  for (size_t at; (at = s.find(sep)) != std::string_view::npos; s.remove_prefix(at + sep.size()))
    out.push_back(s.substr(0, at));
  out.push_back(s);
  return out;
}

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

}  // namespace fuzz

// A broken invariant is a finding: report it and abort (libFuzzer saves the input).
#define FUZZ_CHECK(cond, ...)                                        \
  do {                                                               \
    if (!(cond)) {                                                   \
      std::fprintf(stderr, "FUZZ_CHECK failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      std::fprintf(stderr, __VA_ARGS__);                             \
      std::fputc('\n', stderr);                                      \
      std::abort();                                                  \
    }                                                                \
  } while (0)
