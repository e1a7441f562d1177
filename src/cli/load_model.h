#pragma once
// Every command that runs a model loads it here, so `mpirun -np N dsv4 run|chat|serve|bench|...` works
// for all of them: rank 0 gets the model with its expert peers and does the command; the other ranks
// serve their experts until rank 0 is done and then exit the process.
#include <CLI/CLI.hpp>

#include <memory>
#include <optional>
#include <string>

#include "model/transformer.h"

namespace dsv4::cli {

// --parallel-mode: how the ranks of an MPI job share the model. Expert parallel is the one built.
void add_parallel_option(CLI::App* c, std::string& mode);

// Loads the checkpoint, attaches the RAM budget (one process) or agrees a placement with the other
// ranks (under mpirun). On ranks other than 0 it does not return.
std::unique_ptr<Model> load_model(const std::string& dir, const NumericsOptions& opt, std::optional<uint64_t> budget,
                                  const std::string& parallel_mode, bool quiet = false);

}  // namespace dsv4::cli
