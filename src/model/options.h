#pragma once

namespace dsv4 {

// Numerics switches. Defaults = the current official revision (architecture.md §1.2, fixtures README §6).
struct NumericsOptions {
  bool act_quant = true;            // rule 1: FP8 1x128 activation round-trip before FP8/FP4 GEMMs
  bool kv_fp8_roundtrip = true;     // rule 2: KV nope dims on the e4m3 grid (first revision: off)
  bool index_fp4_roundtrip = true;  // rule 3: FP4 round-trip of indexer queries and keys
  bool shared_expert_clamp = true;  // SwiGLU clamp on the shared expert (first revision: off)

  static NumericsOptions no_act_quant() { return {false, false, false, true}; }
  static NumericsOptions first_revision() { return {true, false, true, false}; }
};

}  // namespace dsv4
