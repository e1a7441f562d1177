#pragma once
// Interleaved RoPE on the last r dims of a vector, with optional YaRN frequency blending (architecture.md §4.7).
#include <cstdint>
#include <vector>

namespace dsv4 {

struct RopeParams {
  int rope_dim = 64;
  double base = 10000;
  bool yarn = false;
  double factor = 1, beta_fast = 32, beta_slow = 1;
  int64_t original_seq_len = 0;
};

class Rope {
 public:
  explicit Rope(const RopeParams& p);
  const std::vector<float>& freqs() const { return freqs_; }
  int yarn_low() const { return low_; }
  int yarn_high() const { return high_; }
  // Rotates x[len-r .. len) in place at position t; inverse rotates by -θ.
  void apply(float* x, int len, int64_t t, bool inverse = false) const;

 private:
  int r_;
  std::vector<float> freqs_;
  int low_ = 0, high_ = 0;
};

}  // namespace dsv4
