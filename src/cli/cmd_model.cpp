#include "cli/commands.h"

namespace dsv4::cli {
void register_model_commands(CLI::App& app) {}
}  // namespace dsv4::cli
