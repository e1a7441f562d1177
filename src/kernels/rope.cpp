#include "kernels/rope.h"

#include <algorithm>
#include <cmath>

namespace dsv4 {

Rope::Rope(const RopeParams& p) : r_(p.rope_dim) {
  const int half = r_ / 2;
  freqs_.resize(size_t(half));
  for (int i = 0; i < half; ++i)
    freqs_[size_t(i)] = 1.0f / std::pow(float(p.base), float(2 * i) / float(r_));
  if (p.yarn && p.original_seq_len > 0) {
    auto corr = [&](double beta) {
      return r_ * std::log(double(p.original_seq_len) / (2 * M_PI * beta)) / (2 * std::log(p.base));
    };
    low_ = std::max(int(std::floor(corr(p.beta_fast))), 0);
    high_ = std::min(int(std::ceil(corr(p.beta_slow))), r_ - 1);
    float lo = float(low_), hi = float(high_);
    if (low_ == high_) hi += 0.001f;
    for (int i = 0; i < half; ++i) {
      float ramp = std::clamp((float(i) - lo) / (hi - lo), 0.0f, 1.0f);
      float smooth = 1.0f - ramp;
      float f = freqs_[size_t(i)];
      freqs_[size_t(i)] = f / float(p.factor) * (1.0f - smooth) + f * smooth;
    }
  }
}

void Rope::apply(float* x, int len, int64_t t, bool inverse) const {
  float* v = x + (len - r_);
  const float tf = float(t);
  for (int i = 0; i < r_ / 2; ++i) {
    float th = tf * freqs_[size_t(i)];  // fp32 product, as the reference rounds it
    float c = std::cos(th), s = std::sin(th);
    if (inverse) s = -s;
    float a = v[2 * i], b = v[2 * i + 1];
    v[2 * i] = a * c - b * s;
    v[2 * i + 1] = a * s + b * c;
  }
}

}  // namespace dsv4
