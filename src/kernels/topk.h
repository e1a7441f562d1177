#pragma once
#include <cstdint>
#include <vector>

namespace dsv4 {

// Indices of the k largest scores in descending order; ties go to the lower index (a fixed rule,
// since torch's tie-breaking is implementation-defined). Returns min(k, n) indices.
std::vector<int32_t> topk_desc(const float* scores, int32_t n, int32_t k);
// The same into idx, caller scratch of n entries whose first min(k, n) become the answer; returns that count.
int32_t topk_desc(const float* scores, int32_t n, int32_t k, int32_t* idx);

}  // namespace dsv4
