// Min, Max and their arg versions, elementwise on vectors. NaN wins (it
// propagates, as in torch.min/max/argmin/argmax); ties go to the smaller index.
// With no element (ny = 0): values are +inf (Min) / -inf (Max), indices -1.
#pragma once
#include "common.hpp"

namespace kmr {
namespace red {

enum MinMaxOut : int { OUT_VALUES = 0, OUT_INDICES = 1, OUT_BOTH = 2 };

// Shared body: best (value, index) per coordinate; OUT picks what is written.
template <class TA, int DIMF, bool IS_MAX, int OUT>
struct MinMax {
  int k;
  static constexpr bool HAS_IDX = OUT != OUT_VALUES;
  KMR_HOST_DEVICE int acc_dim() const { return DIMF; }
  KMR_HOST_DEVICE int idx_dim() const { return HAS_IDX ? DIMF : 0; }
  // Values to out (Min, Max and the values of Min_ArgMin...), indices to out_idx (int64).
  KMR_HOST_DEVICE int out_dim() const { return OUT == OUT_INDICES ? 0 : DIMF; }
  KMR_HOST_DEVICE int out_idx_dim() const { return HAS_IDX ? DIMF : 0; }
  KMR_HOST_DEVICE static bool before(TA a, long long ia, TA b, long long ib) {
    return IS_MAX ? max_before(a, ia, b, ib) : min_before(a, ia, b, ib);
  }
  // Value-only: x replaces a when it is better or NaN (NaN then stays).
  KMR_HOST_DEVICE static bool better_value(TA x, TA a) { return (IS_MAX ? x > a : x < a) || is_nan(x); }
  KMR_HOST_DEVICE void init(TA* acc, long long* idx) const {
    for (int d = 0; d < DIMF; ++d) {
      acc[d] = IS_MAX ? -inf<TA>() : inf<TA>();
      if constexpr (HAS_IDX) idx[d] = NO_INDEX;
    }
  }
  template <class T>
  KMR_HOST_DEVICE void accumulate(TA* acc, long long* idx, const T* f, long long j) const {
    for (int d = 0; d < DIMF; ++d) {
      const TA x = static_cast<TA>(f[d]);
      if constexpr (HAS_IDX) {
        if (before(x, j, acc[d], idx[d])) {
          acc[d] = x;
          idx[d] = j;
        }
      } else {
        if (better_value(x, acc[d])) acc[d] = x;
      }
    }
  }
  KMR_HOST_DEVICE void merge(TA* acc, long long* idx, const TA* acc2, const long long* idx2) const {
    for (int d = 0; d < DIMF; ++d) {
      if constexpr (HAS_IDX) {
        if (before(acc2[d], idx2[d], acc[d], idx[d])) {
          acc[d] = acc2[d];
          idx[d] = idx2[d];
        }
      } else {
        if (better_value(acc2[d], acc[d])) acc[d] = acc2[d];
      }
    }
  }
  template <class T>
  KMR_HOST_DEVICE void finalize(T* out, long long* out_idx, const TA* acc, const long long* idx) const {
    for (int d = 0; d < DIMF; ++d) {
      if constexpr (OUT != OUT_INDICES) out[d] = static_cast<T>(acc[d]);
      if constexpr (HAS_IDX) out_idx[d] = index_out(idx[d]);
    }
  }
};

}  // namespace red

// a_i = min_j f_ij
template <class TA, int DIMF>
struct MinReduction : red::MinMax<TA, DIMF, false, red::OUT_VALUES> {
  static constexpr const char* NAME = "Min";
};
// a_i = max_j f_ij
template <class TA, int DIMF>
struct MaxReduction : red::MinMax<TA, DIMF, true, red::OUT_VALUES> {
  static constexpr const char* NAME = "Max";
};
// a_i = argmin_j f_ij (int64, to out_idx)
template <class TA, int DIMF>
struct ArgMinReduction : red::MinMax<TA, DIMF, false, red::OUT_INDICES> {
  static constexpr const char* NAME = "ArgMin";
};
// a_i = argmax_j f_ij (int64, to out_idx)
template <class TA, int DIMF>
struct ArgMaxReduction : red::MinMax<TA, DIMF, true, red::OUT_INDICES> {
  static constexpr const char* NAME = "ArgMax";
};
// a_i = min_j f_ij (out), argmin_j f_ij (out_idx)
template <class TA, int DIMF>
struct Min_ArgMinReduction : red::MinMax<TA, DIMF, false, red::OUT_BOTH> {
  static constexpr const char* NAME = "Min_ArgMin";
};
// a_i = max_j f_ij (out), argmax_j f_ij (out_idx)
template <class TA, int DIMF>
struct Max_ArgMaxReduction : red::MinMax<TA, DIMF, true, red::OUT_BOTH> {
  static constexpr const char* NAME = "Max_ArgMax";
};

}  // namespace kmr
