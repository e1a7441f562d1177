#pragma once
// Shared helpers for the golden-fixture tests: load golden tensors, run teacher-forced schedules,
// compare logits with the fixtures README's tier-1 and tier-2 statistics.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "model/transformer.h"

namespace dsv4::test {

inline std::string fixture_dir(const std::string& name) { return std::string(DSV4_TEST_DATA) + "/fixtures/" + name; }

struct Golden {
  explicit Golden(const std::string& fixture) : file(fixture_dir(fixture) + "/golden.safetensors") {}
  SafetensorsFile file;
  const TensorInfo& t(const std::string& name) const {
    auto it = file.tensors().find(name);
    if (it == file.tensors().end()) throw std::runtime_error("golden tensor missing: " + name);
    return it->second;
  }
  std::vector<float> f32(const std::string& name) const {
    auto& ti = t(name);
    std::vector<float> v(size_t(ti.numel()));
    std::memcpy(v.data(), ti.data, v.size() * 4);
    return v;
  }
  std::vector<int32_t> i32(const std::string& name) const {
    auto& ti = t(name);
    std::vector<int32_t> v(size_t(ti.numel()));
    std::memcpy(v.data(), ti.data, v.size() * 4);
    return v;
  }
};

struct Schedule {
  std::vector<float> logits;      // one row per position from prefill-1 on
  std::vector<float> mtp;         // MTP rows, when requested
  std::vector<float> layer_streams;  // [n_layers, n, D] at the last prefill position
  std::vector<std::vector<int32_t>> topk;  // indexer picks at the last prefill position, per layer
};

// Prefill ids[0:P] (in chunks of `chunk`, 0 = one call), then decode ids[P:T] one at a time.
inline Schedule run_schedule(const Model& m, const std::vector<int32_t>& ids, int64_t P, bool with_mtp,
                             int64_t chunk = 0) {
  Schedule out;
  SequenceState st = m.new_sequence();
  ForwardOptions fo;
  fo.keep_streams = with_mtp;
  fo.keep_layer_streams = true;
  std::vector<float> streams;
  if (chunk <= 0) chunk = P;
  for (int64_t p = 0; p < P; p += chunk) {
    const int64_t s = std::min(chunk, P - p);
    auto r = m.forward(st, ids.data() + p, s, fo);
    if (with_mtp) streams.insert(streams.end(), r.final_streams.begin(), r.final_streams.end());
    if (p + s == P) {
      out.logits = r.logits;
      out.layer_streams = r.layer_streams;
      out.topk = r.last_topk;
    }
  }
  fo.keep_layer_streams = false;
  const int64_t T = int64_t(ids.size());
  if (with_mtp && P < T) out.mtp = m.mtp_forward(st, streams.data(), ids.data() + 1, P);
  for (int64_t t = P; t < T; ++t) {
    auto r = m.forward(st, ids.data() + t, 1, fo);
    out.logits.insert(out.logits.end(), r.logits.begin(), r.logits.end());
    if (with_mtp && t + 1 < T) {
      auto x = m.mtp_forward(st, r.final_streams.data(), ids.data() + t + 1, 1);
      out.mtp.insert(out.mtp.end(), x.begin(), x.end());
    }
  }
  return out;
}

struct Agreement {
  double median_row = 0, max_row = 0, mean = 0;
  int argmax_same = 0, rows = 0, argmax_required_diff = 0;
};

// Row error = max|Δ| / std(golden row); mean = mean|Δ| / std(all golden); argmax rows whose golden
// top1-top2 gap is at least gap_floor·std must agree.
inline Agreement compare(const std::vector<float>& got, const std::vector<float>& ref, int64_t V,
                         double gap_floor = 1e-4) {
  Agreement a;
  EXPECT_EQ(got.size(), ref.size());
  const int64_t rows = int64_t(std::min(got.size(), ref.size())) / V;
  std::vector<double> errs;
  double sum_abs = 0, s = 0, ss = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const float* g = got.data() + r * V;
    const float* f = ref.data() + r * V;
    double mu = 0, var = 0, mx = 0;
    for (int64_t v = 0; v < V; ++v) mu += f[v];
    mu /= double(V);
    for (int64_t v = 0; v < V; ++v) var += (f[v] - mu) * (f[v] - mu);
    double sd = std::sqrt(var / double(V));
    for (int64_t v = 0; v < V; ++v) {
      double d = std::fabs(double(g[v]) - f[v]);
      mx = std::max(mx, d);
      sum_abs += d;
      s += f[v];
      ss += double(f[v]) * f[v];
    }
    errs.push_back(mx / sd);
    int64_t ag = std::max_element(g, g + V) - g, af = std::max_element(f, f + V) - f;
    std::vector<float> sorted(f, f + V);
    std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<float>());
    bool clear = (sorted[0] - sorted[1]) / sd >= gap_floor;
    if (ag == af) ++a.argmax_same;
    else if (clear) ++a.argmax_required_diff;
  }
  std::sort(errs.begin(), errs.end());
  a.rows = int(rows);
  a.median_row = errs[errs.size() / 2];
  a.max_row = errs.back();
  const double n = double(rows * V);
  a.mean = sum_abs / n / std::sqrt(ss / n - (s / n) * (s / n));
  return a;
}

inline void expect_tier1(const Agreement& a, const std::string& what) {
  EXPECT_LE(a.max_row, 2e-4) << what << ": max row error " << a.max_row;
  EXPECT_EQ(a.argmax_required_diff, 0) << what << ": argmax differs on rows with a clear gap";
  std::printf("[tier1] %s: median %.3g max %.3g mean %.3g argmax %d/%d\n", what.c_str(), a.median_row, a.max_row,
              a.mean, a.argmax_same, a.rows);
}

inline void expect_tier2(const Agreement& a, const std::string& what) {
  EXPECT_LE(a.mean, 0.15) << what;
  EXPECT_LE(a.median_row, 0.45) << what;
  EXPECT_GE(a.argmax_same, int(std::ceil(0.7 * a.rows))) << what;
  std::printf("[tier2] %s: median %.3g max %.3g mean %.3g argmax %d/%d\n", what.c_str(), a.median_row, a.max_row,
              a.mean, a.argmax_same, a.rows);
}

// max |a-b| / rms(b)
inline double rel_rms_error(const float* a, const float* b, size_t n) {
  double mx = 0, ss = 0;
  for (size_t i = 0; i < n; ++i) {
    mx = std::max(mx, std::fabs(double(a[i]) - b[i]));
    ss += double(b[i]) * b[i];
  }
  return mx / std::sqrt(ss / double(n));
}

}  // namespace dsv4::test
