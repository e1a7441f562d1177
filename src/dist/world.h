#pragma once
// The MPI job this process belongs to (OpenMPI, started with mpirun). MPI is initialised only when
// the process was started by mpirun, so a plain `dsv4 run` never touches it. Built without MPI
// (no libopenmpi-dev at configure time), launched() is false and start() explains why it fails.
#include <string>

namespace dsv4::dist {

// Started by mpirun (or another PMI launcher): its environment says so.
bool launched();
// Initialises MPI once (MPI_THREAD_SERIALIZED: the model's forward calls it from one thread at a time).
void start();
bool active();  // start() ran and the job has more than one rank
int rank();     // 0 when not active
int size();     // 1 when not active
std::string host();  // this rank's host name
// The job is being torn down (a rank ended and mpirun stops the others): waits on peers give up
// with this message instead of blocking, and MPI is not finalised.
void abort_job(const std::string& why);
bool aborting();
void abort_job_from_signal();  // async-signal-safe: mpirun's SIGTERM
std::string abort_reason();
// MPI_Finalize (a no-op when not started or aborting); called at exit.
void finish();

}  // namespace dsv4::dist
