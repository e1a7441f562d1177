#pragma once
// Token sampling (penalties, temperature, top-k, top-p, min-p) with a fixed PRNG, so a seed gives the
// same tokens on every platform, and a stop-string matcher for streamed text.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dsv4 {

struct SamplingParams {
  float temperature = 1.0f;        // 0 = greedy
  int top_k = 0;                   // 0 = off
  float top_p = 1.0f;              // 1 = off
  float min_p = 0.0f;              // 0 = off; keeps p >= min_p * p_max
  float repetition_penalty = 1.0f; // 1 = off; seen tokens: positive logits / r, negative logits * r
  float presence_penalty = 0.0f;   // subtracted once from every seen token
  float frequency_penalty = 0.0f;  // subtracted count times
  // OpenAI's logit_bias: (token id, bias in [-100, 100]) added to the logit after the penalties, so it
  // moves greedy picks too; -100 bans the token outright (its logit becomes -inf).
  std::vector<std::pair<int32_t, float>> logit_bias{};
  uint64_t seed = 0;
};

// Pipeline: penalties (over `history`) -> logit bias -> temperature -> top-k -> top-p (on the renormalised top-k
// distribution) -> min-p -> draw. Temperature 0 takes the argmax after penalties (lowest id on ties).
// Ties in every ordering are broken by the lower token id, and the draw uses xoshiro256** seeded with
// splitmix64(seed), so results are reproducible bit for bit.
class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);  // throws dsv4::Error on out-of-range parameters

  int32_t sample(std::span<const float> logits, std::span<const int32_t> history);

  // The distribution sample() draws from: (token id, probability) pairs, probabilities summing to 1,
  // ordered as the draw walks them. Greedy gives the single argmax with probability 1.
  std::vector<std::pair<int32_t, double>> distribution(std::span<const float> logits,
                                                       std::span<const int32_t> history);

  // Penalised logits (in place); exposed for callers that want logprobs and for tests.
  void apply_penalties(std::span<float> logits, std::span<const int32_t> history) const;
  // Adds logit_bias in place; throws for a biased id outside the logits.
  void apply_logit_bias(std::span<float> logits) const;

  const SamplingParams& params() const { return params_; }

  // Uniform double in [0, 1) from the sampler's stream (53 random bits).
  double next_uniform();

 private:
  uint64_t next_u64();

  SamplingParams params_;
  uint64_t state_[4];
  std::vector<float> work_;
};

// Watches generated text for stop strings. push() returns the text that is safe to emit: everything
// up to the first complete stop string (which is not emitted), holding back a tail that could still
// grow into a stop. After a stop, further pushes return nothing. Works on bytes, so a held-back tail
// may end inside a UTF-8 character exactly as the input did.
class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);  // throws dsv4::Error on an empty stop string

  struct Result {
    std::string text;      // safe to emit now
    bool stopped = false;  // a stop string was hit (now or earlier)
  };
  Result push(std::string_view text);

  // End of generation without a stop: returns the held-back tail.
  std::string flush();

  bool stopped() const { return stopped_; }
  // The stop string that matched ("" if none).
  const std::string& matched() const { return matched_; }

 private:
  std::vector<std::string> stops_;
  size_t max_len_ = 0;
  std::string held_;
  bool stopped_ = false;
  std::string matched_;
};

}  // namespace dsv4
