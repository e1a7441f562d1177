#pragma once
#include <cstddef>

namespace dsv4 {

// In-place natural-order (Sylvester) Walsh–Hadamard transform of length n (a power of two),
// scaled by n^-1/2: H[i][j] = (-1)^popcount(i & j), no random signs.
void hadamard(float* x, size_t n);

}  // namespace dsv4
