// Log-sum-exp family, streamed with a running max m and sums shifted by m:
// acc = [m, s_0, s_1, ...] with s_k = sum_j exp(f_j - m) w_jk. A formula of
// dim D > 1 (LogSumExp, and the *Vec reductions: weights of dim D too) is
// reduced coordinate by coordinate: one such block per coordinate.
// f = -inf adds nothing (all -inf, or ny = 0, gives -inf, never NaN);
// f = +inf gives +inf; NaN in f propagates to the output.
#pragma once
#include "common.hpp"

namespace kmr {
namespace red {

// Adds exp(f) * w[0..n) to the shifted sums acc = [m, s[0..n)].
template <class TA>
KMR_HOST_DEVICE KMR_INLINE void lse_add(TA* acc, int n, TA f, const TA* w) {
  TA& m = acc[0];
  TA* s = acc + 1;
  if (f == -inf<TA>()) return;
  if (f > m) {  // new max: rescale the old sums (exp(-inf) = 0 when empty)
    const TA c = vexp(m - f);
    for (int q = 0; q < n; ++q) s[q] = s[q] * c + w[q];
    m = f;
  } else if (f == m) {  // also f = m = +inf, where f - m would be NaN
    for (int q = 0; q < n; ++q) s[q] += w[q];
  } else {  // f < m, or f NaN (then s becomes NaN)
    const TA e = vexp(f - m);
    for (int q = 0; q < n; ++q) s[q] += e * w[q];
  }
}

// acc = acc (+) acc2, both [m, s[0..n)].
template <class TA>
KMR_HOST_DEVICE KMR_INLINE void lse_merge(TA* acc, int n, const TA* acc2) {
  const TA m = acc[0], m2 = acc2[0];
  TA* s = acc + 1;
  const TA* s2 = acc2 + 1;
  if (m2 > m) {
    const TA c = vexp(m - m2);
    for (int q = 0; q < n; ++q) s[q] = s[q] * c + s2[q];
    acc[0] = m2;
  } else if (m2 == m) {
    for (int q = 0; q < n; ++q) s[q] += s2[q];
  } else {
    const TA c = vexp(m2 - m);
    for (int q = 0; q < n; ++q) s[q] += s2[q] * c;
  }
}

template <class TA>
KMR_HOST_DEVICE KMR_INLINE void lse_init(TA* acc, int n) {
  acc[0] = -inf<TA>();
  for (int q = 0; q < n; ++q) acc[1 + q] = TA(0);
}

}  // namespace red

// a_i[c] = log sum_j exp(f_ij[c]), coordinate by coordinate: acc = [m_c, s_c] for c = 0..DIMF-1
// (DIMF = 1: the scalar LogSumExp, acc = [m, s]).
template <class TA, int DIMF>
struct LogSumExpReduction {
  static constexpr const char* NAME = "LogSumExp";
  int k;
  KMR_HOST_DEVICE int acc_dim() const { return 2 * DIMF; }
  KMR_HOST_DEVICE int idx_dim() const { return 0; }
  KMR_HOST_DEVICE int out_dim() const { return DIMF; }
  KMR_HOST_DEVICE int out_idx_dim() const { return 0; }
  KMR_HOST_DEVICE void init(TA* acc, long long*) const {
    for (int c = 0; c < DIMF; ++c) red::lse_init(acc + 2 * c, 1);
  }
  template <class T>
  KMR_HOST_DEVICE void accumulate(TA* acc, long long*, const T* f, long long) const {
    const TA one = TA(1);
    for (int c = 0; c < DIMF; ++c) red::lse_add(acc + 2 * c, 1, static_cast<TA>(f[c]), &one);
  }
  KMR_HOST_DEVICE void merge(TA* acc, long long*, const TA* acc2, const long long*) const {
    for (int c = 0; c < DIMF; ++c) red::lse_merge(acc + 2 * c, 1, acc2 + 2 * c);
  }
  template <class T>
  KMR_HOST_DEVICE void finalize(T* out, long long*, const TA* acc, const long long*) const {
    for (int c = 0; c < DIMF; ++c) out[c] = static_cast<T>(acc[2 * c] + vlog(acc[2 * c + 1]));
  }
};

// a_i = log sum_j exp(f_ij) g_ij   (formula = Concat(f, g), DIMF = 1 + D, out D)
template <class TA, int DIMF>
struct LogSumExpWeightReduction {
  static_assert(DIMF >= 2, "kmr: weighted LogSumExp needs Concat(F, F2) of dimension 1 + D");
  static constexpr const char* NAME = "LogSumExpWeight";  // user: "LogSumExp" with formula2
  static constexpr int D = DIMF - 1;
  int k;
  KMR_HOST_DEVICE int acc_dim() const { return 1 + D; }
  KMR_HOST_DEVICE int idx_dim() const { return 0; }
  KMR_HOST_DEVICE int out_dim() const { return D; }
  KMR_HOST_DEVICE int out_idx_dim() const { return 0; }
  KMR_HOST_DEVICE void init(TA* acc, long long*) const { red::lse_init(acc, D); }
  template <class T>
  KMR_HOST_DEVICE void accumulate(TA* acc, long long*, const T* f, long long) const {
    TA w[D];
    for (int q = 0; q < D; ++q) w[q] = static_cast<TA>(f[1 + q]);
    red::lse_add(acc, D, static_cast<TA>(f[0]), w);
  }
  KMR_HOST_DEVICE void merge(TA* acc, long long*, const TA* acc2, const long long*) const {
    red::lse_merge(acc, D, acc2);
  }
  template <class T>
  KMR_HOST_DEVICE void finalize(T* out, long long*, const TA* acc, const long long*) const {
    for (int q = 0; q < D; ++q) out[q] = static_cast<T>(acc[0] + vlog(acc[1 + q]));
  }
};

// a_i = sum_j exp(f_ij) g_ij / sum_j exp(f_ij)   (formula = Concat(f, g), DIMF = 1 + D, out D;
// NaN (0/0) when there is no j or every f is -inf)
template <class TA, int DIMF>
struct SumSoftMaxWeightReduction {
  static_assert(DIMF >= 2, "kmr: SumSoftMaxWeight needs Concat(F, F2) of dimension 1 + D");
  static constexpr const char* NAME = "SumSoftMaxWeight";
  static constexpr int D = DIMF - 1;
  int k;
  KMR_HOST_DEVICE int acc_dim() const { return 2 + D; }  // m, denominator, numerators
  KMR_HOST_DEVICE int idx_dim() const { return 0; }
  KMR_HOST_DEVICE int out_dim() const { return D; }
  KMR_HOST_DEVICE int out_idx_dim() const { return 0; }
  KMR_HOST_DEVICE void init(TA* acc, long long*) const { red::lse_init(acc, 1 + D); }
  template <class T>
  KMR_HOST_DEVICE void accumulate(TA* acc, long long*, const T* f, long long) const {
    TA w[1 + D];
    w[0] = TA(1);
    for (int q = 0; q < D; ++q) w[1 + q] = static_cast<TA>(f[1 + q]);
    red::lse_add(acc, 1 + D, static_cast<TA>(f[0]), w);
  }
  KMR_HOST_DEVICE void merge(TA* acc, long long*, const TA* acc2, const long long*) const {
    red::lse_merge(acc, 1 + D, acc2);
  }
  template <class T>
  KMR_HOST_DEVICE void finalize(T* out, long long*, const TA* acc, const long long*) const {
    for (int q = 0; q < D; ++q) out[q] = static_cast<T>(acc[2 + q] / acc[1]);
  }
};

// a_i[c] = log sum_j exp(f_ij[c]) g_ij[c], coordinate by coordinate   (formula = Concat(f, g), f and g
// of dim D, DIMF = 2 D, out D; acc = [m_c, s_c] for c = 0..D-1, as LogSumExp's)
template <class TA, int DIMF>
struct LogSumExpWeightVecReduction {
  static_assert(DIMF >= 2 && DIMF % 2 == 0,
                "kmr: coordinate-wise weighted LogSumExp needs Concat(F, F2), both of dim D");
  static constexpr const char* NAME = "LogSumExpWeightVec";  // user: "LogSumExp" with formula2, dim F = dim F2 > 1
  static constexpr int D = DIMF / 2;
  int k;
  KMR_HOST_DEVICE int acc_dim() const { return 2 * D; }
  KMR_HOST_DEVICE int idx_dim() const { return 0; }
  KMR_HOST_DEVICE int out_dim() const { return D; }
  KMR_HOST_DEVICE int out_idx_dim() const { return 0; }
  KMR_HOST_DEVICE void init(TA* acc, long long*) const {
    for (int c = 0; c < D; ++c) red::lse_init(acc + 2 * c, 1);
  }
  template <class T>
  KMR_HOST_DEVICE void accumulate(TA* acc, long long*, const T* f, long long) const {
    for (int c = 0; c < D; ++c) {
      const TA w = static_cast<TA>(f[D + c]);
      red::lse_add(acc + 2 * c, 1, static_cast<TA>(f[c]), &w);
    }
  }
  KMR_HOST_DEVICE void merge(TA* acc, long long*, const TA* acc2, const long long*) const {
    for (int c = 0; c < D; ++c) red::lse_merge(acc + 2 * c, 1, acc2 + 2 * c);
  }
  template <class T>
  KMR_HOST_DEVICE void finalize(T* out, long long*, const TA* acc, const long long*) const {
    for (int c = 0; c < D; ++c) out[c] = static_cast<T>(acc[2 * c] + vlog(acc[2 * c + 1]));
  }
};

// a_i[c] = sum_j exp(f_ij[c]) g_ij[c] / sum_j exp(f_ij[c]), coordinate by coordinate   (formula =
// Concat(f, g), f and g of dim D, DIMF = 2 D, out D; acc = [m_c, denominator_c, numerator_c] for
// c = 0..D-1; NaN (0/0) where there is no j or every f[c] is -inf)
template <class TA, int DIMF>
struct SumSoftMaxWeightVecReduction {
  static_assert(DIMF >= 2 && DIMF % 2 == 0, "kmr: coordinate-wise SumSoftMaxWeight needs Concat(F, F2), both of dim D");
  static constexpr const char* NAME = "SumSoftMaxWeightVec";  // user: "SumSoftMaxWeight", dim F = dim F2 > 1
  static constexpr int D = DIMF / 2;
  int k;
  KMR_HOST_DEVICE int acc_dim() const { return 3 * D; }
  KMR_HOST_DEVICE int idx_dim() const { return 0; }
  KMR_HOST_DEVICE int out_dim() const { return D; }
  KMR_HOST_DEVICE int out_idx_dim() const { return 0; }
  KMR_HOST_DEVICE void init(TA* acc, long long*) const {
    for (int c = 0; c < D; ++c) red::lse_init(acc + 3 * c, 2);
  }
  template <class T>
  KMR_HOST_DEVICE void accumulate(TA* acc, long long*, const T* f, long long) const {
    for (int c = 0; c < D; ++c) {
      const TA w[2] = {TA(1), static_cast<TA>(f[D + c])};
      red::lse_add(acc + 3 * c, 2, static_cast<TA>(f[c]), w);
    }
  }
  KMR_HOST_DEVICE void merge(TA* acc, long long*, const TA* acc2, const long long*) const {
    for (int c = 0; c < D; ++c) red::lse_merge(acc + 3 * c, 2, acc2 + 3 * c);
  }
  template <class T>
  KMR_HOST_DEVICE void finalize(T* out, long long*, const TA* acc, const long long*) const {
    for (int c = 0; c < D; ++c) out[c] = static_cast<T>(acc[3 * c + 2] / acc[3 * c + 1]);
  }
};

}  // namespace kmr
