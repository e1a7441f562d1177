#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace dsv4 {

// Writes a little-endian float32 NumPy .npy array (format version 1.0).
void write_npy_f32(const std::string& path, const std::vector<int64_t>& shape, const float* data);
// Reads a float32 .npy written by write_npy_f32 (or NumPy), returning the data and its shape.
std::vector<float> read_npy_f32(const std::string& path, std::vector<int64_t>& shape);

}  // namespace dsv4
