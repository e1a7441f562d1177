#pragma once
// Routed experts computed by other processes (expert parallel, dist/expert_parallel.h over MPI). The
// MoE hands the jobs of experts it does not own to their owners, computes its own meanwhile, then
// waits for the outputs. Where an expert runs changes nothing in the result: every job's output is
// computed alone by the same kernels and summed here, in ascending expert id, as without peers.
#include <cstdint>
#include <span>

namespace dsv4 {

// One expert's share of a step: n (token, slot) pairs of the rows x [S, D] given to post().
struct RemoteJob {
  int32_t expert = 0;
  int64_t n = 0;
  const int64_t* rows = nullptr;   // [n]: each pair's token row in x
  const float* scale = nullptr;    // [n]: its routing weight
  float* out = nullptr;            // [n, D]: written by wait()
};

// What the peers cost so far (bench): messages and bytes both ways, the time the caller was blocked
// in wait(), and per layer the slowest peer's compute and the rest of its round trip (the wire) where
// the caller had to wait for it (a reply that came while it computed its own experts costs no wire).
struct PeerTraffic {
  uint64_t layers = 0, messages = 0, bytes_sent = 0, bytes_received = 0;
  double wait_s = 0, remote_compute_s = 0, wire_s = 0;
};

class ExpertPeers {
 public:
  virtual ~ExpertPeers() = default;
  // Whether this process computes `expert` of `layer` (BlockWeights::layer_id).
  virtual bool local(int layer, int32_t expert) const = 0;
  // Sends the jobs to their owners and returns; x stays valid until wait() returns.
  virtual void post(int layer, const float* x, int64_t S, std::span<const RemoteJob> jobs) = 0;
  // Blocks until every posted job's out is written; throws dsv4::Error naming a peer that failed.
  virtual void wait() = 0;
  virtual PeerTraffic traffic() const = 0;
};

}  // namespace dsv4
