// dsv4 command-line entry point: each command registers itself from its own file.
#include <CLI/CLI.hpp>

#include <cstdio>

#include "cli/commands.h"
#include "core/error.h"

int main(int argc, char** argv) {
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
