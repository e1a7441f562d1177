#pragma once
// Importance matrix (as llama.cpp's imatrix): for every linear, the mean square of each input column over
// the tokens that reached it while the model read a calibration text. The low-bit encoders weight each
// column's squared error by it (runtime/quantize.h), so the columns that carry large activations keep more
// precision. Stored as a safetensors file: per weight tensor an F32 [in] vector of means, named as the weight,
// and an I64 [1] "<name>.count" with its token count.
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "model/transformer.h"
#include "tokenizer/tokenizer.h"

namespace dsv4 {

struct ImportanceMatrix {
  std::map<std::string, std::vector<float>> mean_sq;
  std::map<std::string, int64_t> count;
  // The vector of a weight tensor, or nullptr when absent or never reached (all zero).
  const std::vector<float>* find(const std::string& weight) const;
};

ImportanceMatrix load_imatrix(const std::string& path);
void save_imatrix(const ImportanceMatrix& m, const std::string& path);

// Runs the text through the model in windows of ctx tokens (the perplexity protocol) and collects the
// statistics of every product over weights of m's checkpoint. Routed experts must be mapped, not streamed.
ImportanceMatrix collect_imatrix(const Model& m, const Tokenizer& tok, const std::string& text, int64_t ctx,
                                 const std::function<void(int64_t done, int64_t total)>& progress = {});

}  // namespace dsv4
