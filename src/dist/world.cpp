#include "dist/world.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <mutex>

#include "core/error.h"

#ifdef DSV4_HAVE_MPI
#include <mpi.h>
#endif

namespace dsv4::dist {

namespace {
bool started = false;
int rank_ = 0, size_ = 1;
std::atomic<bool> aborting_{false}, signalled_{false};
std::mutex reason_mu;
std::string reason_;
}  // namespace

bool launched() {
#ifdef DSV4_HAVE_MPI
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK"})
    if (std::getenv(v)) return true;
#endif
  return false;
}

void start() {
#ifdef DSV4_HAVE_MPI
  if (started) return;
  int provided = 0;
  if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS)
    fail("MPI_Init_thread failed");
  if (provided < MPI_THREAD_SERIALIZED) fail("this MPI library does not support MPI_THREAD_SERIALIZED");
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  // Errors come back as codes, so a failure is reported as a dsv4::Error rather than an abort.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  started = true;
  std::atexit(finish);
#else
  fail("this dsv4 was built without MPI: install libopenmpi-dev (scripts/setup.sh does) and rebuild");
#endif
}

bool active() { return started && size_ > 1; }
int rank() { return rank_; }
int size() { return size_; }

std::string host() {
  char h[256] = {};
  gethostname(h, sizeof h - 1);
  return h;
}

void abort_job(const std::string& why) {
  {
    std::lock_guard<std::mutex> lk(reason_mu);
    if (reason_.empty()) reason_ = why;
  }
  aborting_ = true;
}
void abort_job_from_signal() {
  signalled_ = true;
  aborting_ = true;
}
bool aborting() { return aborting_; }
std::string abort_reason() {
  std::lock_guard<std::mutex> lk(reason_mu);
  if (reason_.empty() && signalled_) return "mpirun is stopping the job: another rank ended";
  return reason_;
}

void finish() {
#ifdef DSV4_HAVE_MPI
  if (!started || aborting_) return;
  int done = 0;
  MPI_Finalized(&done);
  if (!done) MPI_Finalize();
#endif
}

}  // namespace dsv4::dist
