#pragma once
// Expert parallel placement: which rank computes each routed expert. Rank 0 keeps the dense weights
// (attention, shared experts, gates, norms, head) and the sequences; the routed experts are spread so
// that every rank's bytes follow its RAM budget and, within each layer, the routing load (the counts
// a streaming run saved, else uniform) is balanced. Pure arithmetic: `inspect --ranks N` prints it,
// and under mpirun rank 0 computes it and sends it to the others.
#include <cstdint>
#include <string>
#include <vector>

namespace dsv4::dist {

struct PlacementInput {
  int ranks = 1;
  int n_experts = 0;             // routed experts per layer
  int n_activated = 0;           // experts per token
  int dim = 0;                   // hidden size: one row on the wire
  std::vector<int> layers;       // layer ids with routed experts (backbone, then MTP / DSpark blocks)
  uint64_t dense_bytes = 0;      // what rank 0 holds besides its experts
  uint64_t expert_bytes = 0;     // one expert
  std::vector<uint64_t> budget;  // per rank; 0 (or empty): an equal share of the model
  std::vector<float> load;       // [layers × n_experts] routing counts; empty: uniform
};

struct Placement {
  int ranks = 1, n_experts = 0;
  std::vector<int> layers;
  std::vector<int16_t> owner;             // [layers × n_experts]
  std::vector<uint64_t> bytes;            // per rank: its weights (dense on rank 0 + its experts)
  std::vector<uint64_t> experts;          // per rank: routed experts it owns, over all layers
  int owner_of(int layer, int expert) const;  // -1 for a layer without routed experts
};

// Throws dsv4::Error when the budgets given cannot hold the model, naming what is missing.
Placement place_experts(const PlacementInput& in);

// Expected traffic of one token through one MoE layer, from rank 0's side, under the load (or
// uniform) routing: the rows it sends (one per remote rank holding any of the token's experts) and
// the expert outputs it receives (one per remote pick), in BF16 as the numerics contract allows.
struct WireEstimate {
  double rows_sent = 0, outputs_received = 0, remote_ranks = 0;
  double bytes = 0;  // both directions
};
WireEstimate estimate_wire(const Placement& p, const PlacementInput& in);

// The plan in lines: bytes and experts per rank, bytes on the wire per token per layer.
std::string describe_placement(const Placement& p, const PlacementInput& in);

}  // namespace dsv4::dist
