#pragma once
// Random checkpoints in the official V4 format with real (or tiny) dimensions, for benchmarks and
// tests: FP8 linears with 128×128 E8M0 scales, FP4 routed experts with 1×32 scales, BF16/F32 rest.
// Data are random and well scaled (fixtures README §5), never constant.
#include <cstdint>
#include <string>

namespace dsv4 {

struct RandomCheckpointSpec {
  std::string like = "flash";  // flash, pro or tiny
  int layers = 2;
  int experts = 0;             // 0: the variant's own count
  int vocab = 0;               // 0: the variant's own vocabulary
  int hash_layers = -1;        // -1: min(3, layers / 2)
  bool mtp = false;            // add the preview MTP block
  bool fp8_experts = false;    // Base format instead of FP4 experts
  uint64_t seed = 1;
};

// Writes config.json, one shard per layer plus one for the rest, and model.safetensors.index.json.
void write_random_checkpoint(const RandomCheckpointSpec& spec, const std::string& dir);

}  // namespace dsv4
