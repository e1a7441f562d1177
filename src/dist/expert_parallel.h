#pragma once
// Expert parallel over MPI: rank 0 runs the model (dense layers, sequences, sampling, server) and
// sends each MoE layer's rows to the ranks owning the picked experts; the others serve experts until
// rank 0 is done. Per layer and peer one message each way: the distinct token rows and each pair's
// (row, weight), then the expert outputs. Values travel in BF16 when every one of them is a BF16
// value (the numerics contract rounds the ffn_norm output and every GEMM output to BF16), else F32,
// so the result is bit-identical to one process.
#include <cstdint>
#include <memory>
#include <vector>

#include "dist/placement.h"
#include "model/expert_peers.h"
#include "model/transformer.h"

namespace dsv4::dist {

class MpiExpertPeers final : public ExpertPeers {
 public:
  MpiExpertPeers(Placement plan, int dim);
  ~MpiExpertPeers() override;  // tells every worker to stop
  bool local(int layer, int32_t expert) const override;
  void post(int layer, const float* x, int64_t S, std::span<const RemoteJob> jobs) override;
  void wait() override;
  const Placement& placement() const { return plan_; }
  PeerTraffic traffic() const override { return stats_; }

 private:
  struct Outbox {
    std::vector<char> buf;         // the message
    std::vector<RemoteJob> jobs;   // where the reply's outputs go
    bool pending = false;
    double posted = 0;             // steady-clock seconds
  };
  Placement plan_;
  int dim_;
  std::vector<Outbox> out_;        // per rank
  std::vector<void*> requests_;    // MPI_Request per rank, opaque here
  std::vector<char> reply_;
  std::vector<int32_t> row_of_;    // token row → its index in a message
  PeerTraffic stats_;
};

// A worker's life: serve rank 0's expert jobs with m's experts until told to stop.
void serve_experts(const Model& m, const Placement& plan);

// Startup of every rank: gathers each rank's load status and RAM budget on rank 0, fails everywhere
// with rank 0 naming the ranks that could not load, then places the experts on rank 0 and sends the
// placement to all. `error` is this rank's load failure ("" when it loaded); m is null then.
// On rank 0, `used` (when given) receives the input the placement was made from.
Placement agree_placement(const Model* m, const std::string& error, uint64_t budget, PlacementInput* used = nullptr);
// The placement's input for a loaded model: layers, bytes, the saved routing counts if any.
PlacementInput placement_input(const Checkpoint& ck, const ModelWeights& w, const ModelConfig& c, int ranks);
inline PlacementInput placement_input(const Model& m, int ranks) {
  return placement_input(m.checkpoint(), m.weights(), m.config(), ranks);
}

}  // namespace dsv4::dist
