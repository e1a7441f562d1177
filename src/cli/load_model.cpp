#include "cli/load_model.h"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "cli/ram_budget_args.h"
#include "core/error.h"
#include "dist/expert_parallel.h"
#include "dist/world.h"

namespace dsv4::cli {

namespace {
// mpirun stops every rank with SIGTERM when one of them ended: rank 0 says so at once (mpirun's own
// report names the rank), and a step waiting on peers fails instead of hanging.
void on_sigterm(int) {
  static const char msg[] = "dsv4: mpirun is stopping the job: another rank ended (mpirun names it)\n";
  ssize_t rc = write(STDERR_FILENO, msg, sizeof msg - 1);
  (void)rc;
  dist::abort_job_from_signal();
}
}  // namespace

void add_parallel_option(CLI::App* c, std::string& mode) {
  c->add_option("--parallel-mode", mode,
                "under mpirun: expert = routed experts spread over the ranks by their --ram-budget, rank 0 runs the "
                "rest (default)")
      ->check(CLI::IsMember({"expert"}));
}

std::unique_ptr<Model> load_model(const std::string& dir, const NumericsOptions& opt, std::optional<uint64_t> budget,
                                  const std::string& parallel_mode, bool quiet) {
  if (dist::launched()) dist::start();
  if (!dist::active()) {  // one process (mpirun -np 1 too)
    auto m = std::make_unique<Model>(dir, opt);
    attach_ram_budget(*m, budget, quiet);
    return m;
  }
  (void)parallel_mode;  // expert is the only mode
  std::unique_ptr<Model> m;
  std::string error;
  try {
    m = std::make_unique<Model>(dir, opt);
  } catch (const Error& e) {
    error = e.what();
  }
  dist::Placement plan;
  dist::PlacementInput used;
  try {
    plan = dist::agree_placement(m.get(), error, budget.value_or(0), &used);
  } catch (const Error&) {
    if (dist::rank() == 0) throw;
    std::_Exit(1);  // rank 0 names what failed
  }
  if (dist::rank() != 0) {
    dist::serve_experts(*m, plan);
    dist::finish();
    std::exit(0);
  }
  struct sigaction sa = {};
  sa.sa_handler = on_sigterm;
  sigaction(SIGTERM, &sa, nullptr);
  if (!quiet)
    std::fprintf(stderr, "%s\n", dist::describe_placement(plan, used).c_str());
  m->set_expert_peers(std::make_shared<dist::MpiExpertPeers>(std::move(plan), m->config().dim));
  return m;
}

}  // namespace dsv4::cli
