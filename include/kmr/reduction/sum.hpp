// Sum reductions: plain and compensated (Kahan).
#pragma once
#include "common.hpp"

namespace kmr {

// a_i = sum_j f_ij (elementwise on vectors; empty sum = 0; NaN propagates).
template <class TA, int DIMF>
struct SumReduction {
  static constexpr const char* NAME = "Sum";
  int k;
  KMR_HOST_DEVICE int acc_dim() const { return DIMF; }
  KMR_HOST_DEVICE int idx_dim() const { return 0; }
  KMR_HOST_DEVICE int out_dim() const { return DIMF; }
  KMR_HOST_DEVICE int out_idx_dim() const { return 0; }
  KMR_HOST_DEVICE void init(TA* acc, long long*) const {
    for (int d = 0; d < DIMF; ++d) acc[d] = TA(0);
  }
  template <class T>
  KMR_HOST_DEVICE void accumulate(TA* acc, long long*, const T* f, long long) const {
    for (int d = 0; d < DIMF; ++d) acc[d] += static_cast<TA>(f[d]);
  }
  KMR_HOST_DEVICE void merge(TA* acc, long long*, const TA* acc2, const long long*) const {
    for (int d = 0; d < DIMF; ++d) acc[d] += acc2[d];
  }
  template <class T>
  KMR_HOST_DEVICE void finalize(T* out, long long*, const TA* acc, const long long*) const {
    for (int d = 0; d < DIMF; ++d) out[d] = static_cast<T>(acc[d]);
  }
};

// a_i = sum_j f_ij with Kahan compensation: acc = [s (DIMF), c (DIMF)], s - c is the sum.
template <class TA, int DIMF>
struct SumKahanReduction {
  static constexpr const char* NAME = "SumKahan";
  int k;
  KMR_HOST_DEVICE int acc_dim() const { return 2 * DIMF; }
  KMR_HOST_DEVICE int idx_dim() const { return 0; }
  KMR_HOST_DEVICE int out_dim() const { return DIMF; }
  KMR_HOST_DEVICE int out_idx_dim() const { return 0; }
  KMR_HOST_DEVICE void init(TA* acc, long long*) const {
    for (int d = 0; d < 2 * DIMF; ++d) acc[d] = TA(0);
  }
  // One compensated step s += x. The correction is dropped once it is NaN
  // (s became infinite): s then carries the inf or NaN by itself.
  KMR_HOST_DEVICE static void add(TA& s, TA& c, TA x) {
    const TA y = x - c;
    const TA t = s + y;
    c = (t - s) - y;
    if (c != c) c = TA(0);
    s = t;
  }
  template <class T>
  KMR_HOST_DEVICE void accumulate(TA* acc, long long*, const T* f, long long) const {
    for (int d = 0; d < DIMF; ++d) add(acc[d], acc[DIMF + d], static_cast<TA>(f[d]));
  }
  KMR_HOST_DEVICE void merge(TA* acc, long long*, const TA* acc2, const long long*) const {
    for (int d = 0; d < DIMF; ++d) {
      add(acc[d], acc[DIMF + d], acc2[d]);
      add(acc[d], acc[DIMF + d], -acc2[DIMF + d]);
    }
  }
  template <class T>
  KMR_HOST_DEVICE void finalize(T* out, long long*, const TA* acc, const long long*) const {
    for (int d = 0; d < DIMF; ++d) out[d] = static_cast<T>(acc[d] - acc[DIMF + d]);
  }
};

}  // namespace kmr
