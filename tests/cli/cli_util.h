#pragma once
// Runs the dsv4 executable with a shell command line and captures exit code, stdout and stderr.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace dsv4::test {

struct CmdRun {
  int rc = -1;
  std::string out, err;
};

inline std::string slurp_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline CmdRun run_dsv4(const std::string& args, const std::filesystem::path& tmp) {
  const auto out = tmp / "stdout.txt", err = tmp / "stderr.txt";
  const std::string cmd = std::string(DSV4_BINARY) + " " + args + " >" + out.string() + " 2>" + err.string();
  const int st = std::system(cmd.c_str());
  CmdRun r;
  r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  r.out = slurp_file(out);
  r.err = slurp_file(err);
  return r;
}

inline std::filesystem::path make_temp_dir(const std::string& tag) {
  auto d = std::filesystem::temp_directory_path() / ("dsv4_" + tag + "_" + std::to_string(::getpid()));
  std::filesystem::create_directories(d);
  return d;
}

}  // namespace dsv4::test
