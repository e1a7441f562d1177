#include "runtime/imatrix.h"

#include <cmath>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "core/error.h"
#include "io/safetensors.h"
#include "kernels/linear.h"
#include "runtime/perplexity.h"

namespace dsv4 {

namespace {
constexpr std::string_view kCountSuffix = ".count";

// Sums x² per column of each known weight; weights are recognised by their mapped address.
class Collector final : public MatmulObserver {
 public:
  explicit Collector(const Checkpoint& ck) {
    for (const auto& [name, t] : ck.tensors())
      if (t->shape.size() == 2) by_ptr_.emplace(t->data, Acc{name, {}, 0});
  }
  void observe(const Linear& W, const float* x, int64_t S, int64_t xstride) override {
    auto it = by_ptr_.find(W.w);
    if (it == by_ptr_.end()) return;  // a weight outside the checkpoint (none today)
    std::lock_guard<std::mutex> lock(mu_);
    Acc& a = it->second;
    if (a.sum.empty()) a.sum.assign(size_t(W.in), 0.0);
    for (int64_t s = 0; s < S; ++s) {
      const float* r = x + s * xstride;
      for (int64_t k = 0; k < W.in; ++k) a.sum[size_t(k)] += double(r[k]) * r[k];
    }
    a.n += S;
  }
  ImportanceMatrix result() const {
    ImportanceMatrix m;
    for (const auto& [p, a] : by_ptr_) {
      if (a.n == 0) continue;
      std::vector<float>& v = m.mean_sq[a.name];
      v.resize(a.sum.size());
      for (size_t k = 0; k < v.size(); ++k) v[k] = float(a.sum[k] / double(a.n));
      m.count[a.name] = a.n;
    }
    return m;
  }

 private:
  struct Acc {
    std::string name;
    std::vector<double> sum;
    int64_t n;
  };
  std::unordered_map<const uint8_t*, Acc> by_ptr_;
  std::mutex mu_;
};
}  // namespace

const std::vector<float>* ImportanceMatrix::find(const std::string& weight) const {
  auto it = mean_sq.find(weight);
  if (it == mean_sq.end()) return nullptr;
  for (float v : it->second)
    if (v > 0) return &it->second;
  return nullptr;
}

void save_imatrix(const ImportanceMatrix& m, const std::string& path) {
  std::vector<TensorToWrite> ts;
  for (const auto& [name, v] : m.mean_sq) {
    TensorToWrite t{name, DType::F32, {int64_t(v.size())}, std::vector<uint8_t>(v.size() * 4)};
    std::memcpy(t.bytes.data(), v.data(), t.bytes.size());
    ts.push_back(std::move(t));
    const auto c = m.count.find(name);
    const int64_t n = c == m.count.end() ? 0 : c->second;
    TensorToWrite ct{name + std::string(kCountSuffix), DType::I64, {1}, std::vector<uint8_t>(8)};
    std::memcpy(ct.bytes.data(), &n, 8);
    ts.push_back(std::move(ct));
  }
  write_safetensors(path, ts);
}

ImportanceMatrix load_imatrix(const std::string& path) {
  const SafetensorsFile f(path);
  ImportanceMatrix m;
  for (const auto& [name, t] : f.tensors()) {
    const bool is_count = name.size() > kCountSuffix.size() &&
                          name.compare(name.size() - kCountSuffix.size(), kCountSuffix.size(), kCountSuffix) == 0;
    if (is_count) {
      if (t.dtype != DType::I64 || t.numel() != 1) fail("{}: '{}' must be I64 [1]", path, name);
      int64_t n;
      std::memcpy(&n, t.data, 8);
      m.count[name.substr(0, name.size() - kCountSuffix.size())] = n;
      continue;
    }
    if (t.dtype != DType::F32 || t.shape.size() != 1)
      fail("{}: '{}' is {} {}, an importance vector must be F32 [columns]", path, name, dtype_name(t.dtype),
           t.shape_str());
    std::vector<float>& v = m.mean_sq[name];
    v.resize(size_t(t.numel()));
    std::memcpy(v.data(), t.data, v.size() * 4);
    for (size_t k = 0; k < v.size(); ++k)
      if (!std::isfinite(v[k]) || v[k] < 0)
        fail("{}: '{}' holds {} at column {}, not a finite mean square", path, name, v[k], k);
  }
  return m;
}

ImportanceMatrix collect_imatrix(const Model& m, const Tokenizer& tok, const std::string& text, int64_t ctx,
                                 const std::function<void(int64_t, int64_t)>& progress) {
  Collector c(m.checkpoint());
  set_matmul_observer(&c);
  try {
    perplexity(m, tok, text, ctx, progress);
  } catch (...) {
    set_matmul_observer(nullptr);
    throw;
  }
  set_matmul_observer(nullptr);
  return c.result();
}

}  // namespace dsv4
