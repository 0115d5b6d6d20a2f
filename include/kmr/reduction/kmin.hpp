// K smallest values per coordinate (runtime K = the member k), sorted
// ascending, ties to the smaller index, NaN after all numbers (torch.sort
// order). Accumulator and output layout: [K][DIMF], i.e. slot r*DIMF + d.
// Slots with no element (K > ny) hold +inf and index -1.
#pragma once
#include "common.hpp"
#include "minmax.hpp"  // red::OUT_VALUES/OUT_INDICES/OUT_BOTH

namespace kmr {
namespace red {

template <class TA, int DIMF, int OUT>
struct KMinBase {
  int k;
  KMR_HOST_DEVICE int kk() const { return k > 0 ? k : 0; }
  KMR_HOST_DEVICE int acc_dim() const { return kk() * DIMF; }
  KMR_HOST_DEVICE int idx_dim() const { return kk() * DIMF; }
  // Values to out, indices to out_idx (int64), each [K][DIMF].
  KMR_HOST_DEVICE int out_dim() const { return OUT == OUT_INDICES ? 0 : kk() * DIMF; }
  KMR_HOST_DEVICE int out_idx_dim() const { return OUT == OUT_VALUES ? 0 : kk() * DIMF; }
  KMR_HOST_DEVICE void init(TA* acc, long long* idx) const {
    for (int s = 0; s < kk() * DIMF; ++s) {
      acc[s] = inf<TA>();
      idx[s] = NO_INDEX;
    }
  }
  // Inserts (x, j) into the sorted list of coordinate d; false if it is not among the K best.
  KMR_HOST_DEVICE bool insert(TA* acc, long long* idx, int d, TA x, long long j) const {
    int r = kk() - 1;
    if (r < 0 || !kmin_before(x, j, acc[r * DIMF + d], idx[r * DIMF + d])) return false;
    for (; r > 0 && kmin_before(x, j, acc[(r - 1) * DIMF + d], idx[(r - 1) * DIMF + d]); --r) {
      acc[r * DIMF + d] = acc[(r - 1) * DIMF + d];
      idx[r * DIMF + d] = idx[(r - 1) * DIMF + d];
    }
    acc[r * DIMF + d] = x;
    idx[r * DIMF + d] = j;
    return true;
  }
  template <class T>
  KMR_HOST_DEVICE void accumulate(TA* acc, long long* idx, const T* f, long long j) const {
    for (int d = 0; d < DIMF; ++d) insert(acc, idx, d, static_cast<TA>(f[d]), j);
  }
  // acc2's list is sorted: once one of its entries is rejected, so are the next.
  KMR_HOST_DEVICE void merge(TA* acc, long long* idx, const TA* acc2, const long long* idx2) const {
    for (int d = 0; d < DIMF; ++d)
      for (int r = 0; r < kk(); ++r)
        if (!insert(acc, idx, d, acc2[r * DIMF + d], idx2[r * DIMF + d])) break;
  }
  template <class T>
  KMR_HOST_DEVICE void finalize(T* out, long long* out_idx, const TA* acc, const long long* idx) const {
    const int n = kk() * DIMF;
    for (int s = 0; s < n; ++s) {
      if constexpr (OUT != OUT_INDICES) out[s] = static_cast<T>(acc[s]);
      if constexpr (OUT != OUT_VALUES) out_idx[s] = index_out(idx[s]);
    }
  }
};

}  // namespace red

// a_i[r][d] = r-th smallest of (f_ij[d])_j, r < K
template <class TA, int DIMF>
struct KMinReduction : red::KMinBase<TA, DIMF, red::OUT_VALUES> {
  static constexpr const char* NAME = "KMin";
};
// a_i[r][d] = index j of the r-th smallest f_ij[d] (int64, to out_idx)
template <class TA, int DIMF>
struct ArgKMinReduction : red::KMinBase<TA, DIMF, red::OUT_INDICES> {
  static constexpr const char* NAME = "ArgKMin";
};
// a_i = KMin (K*DIMF values, out), ArgKMin (K*DIMF indices, out_idx)
template <class TA, int DIMF>
struct KMin_ArgKMinReduction : red::KMinBase<TA, DIMF, red::OUT_BOTH> {
  static constexpr const char* NAME = "KMin_ArgKMin";
};

}  // namespace kmr
