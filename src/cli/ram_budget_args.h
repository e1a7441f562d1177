#pragma once
// --ram-budget on every command that loads a model (run, chat, serve, bench, generate, logits).
#include <CLI/CLI.hpp>

#include <cstdio>
#include <optional>
#include <string>

#include "runtime/ram_budget.h"

namespace dsv4::cli {

inline void add_ram_budget_option(CLI::App* c, std::string& v) {
  c->add_option("--ram-budget", v,
                "RAM for the weights, e.g. 48G: dense weights stay resident, routed experts beyond it stream from "
                "disk through a cache (default: from the memory limit; streams only when the model does not fit; off: "
                "plain memory map)");
}
// Unset: the default budget; "off": no streaming, the page cache decides (0).
inline std::optional<uint64_t> ram_budget_arg(const std::string& v) {
  if (v.empty()) return std::nullopt;
  if (v == "off") return uint64_t(0);
  return parse_byte_size(v);
}
// Streams the experts when the budget says so, and says so on stderr.
inline void attach_ram_budget(Model& m, std::optional<uint64_t> budget, bool quiet = false) {
  RamSetup r = apply_ram_budget(m, budget, quiet);
  if (r.streaming && !quiet) std::fprintf(stderr, "%s\n", r.summary.c_str());
}

}  // namespace dsv4::cli
