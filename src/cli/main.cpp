// dsv4 command-line entry point: each command registers itself from its own file.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <malloc.h>

#include "cli/commands.h"
#include "core/error.h"

int main(int argc, char** argv) {
  // A forward pass allocates large, short-lived activation buffers (a 1K-token prefill: 128 MiB
  // query blocks); keeping freed memory in the heap instead of unmapping it saves the kernel zeroing
  // fresh pages on every call. glibc caps the mmap threshold at 32 MiB, so mmap is off altogether.
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  CLI::App app{"dsv4: inference engine for DeepSeek V4 checkpoints"};
  app.require_subcommand(1);
  dsv4::cli::register_all(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const dsv4::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return dsv4::cli::exit_code();
}
