// Helpers shared by the reductions: infinities, the "no index yet" sentinel and
// the strict orders used by Min/Max/KMin (ties: the smaller index wins).
#pragma once
#include "../config.hpp"
#include "../formula/math.hpp"

namespace kmr {
namespace red {

// Index of an accumulator slot that holds no element yet. It is the largest
// int64, so it loses every tie; finalize writes it as -1.
constexpr long long NO_INDEX = 0x7fffffffffffffffLL;

// +infinity in TA (float or double), without <limits> (NVRTC has none).
template <class TA>
KMR_HOST_DEVICE KMR_INLINE TA inf() {
#if defined(__CUDA_ARCH__) || defined(__CUDACC_RTC__)
  return TA(__longlong_as_double(0x7ff0000000000000LL));
#else
  return TA(__builtin_huge_val());
#endif
}

template <class TA>
KMR_HOST_DEVICE KMR_INLINE bool is_nan(TA x) {
  return x != x;
}

// (a, ia) strictly before (b, ib) for Min: NaN first (it propagates, as
// torch.min does), then smaller value, then smaller index. A total order, so
// the result does not depend on the order of accumulate/merge.
template <class TA>
KMR_HOST_DEVICE KMR_INLINE bool min_before(TA a, long long ia, TA b, long long ib) {
  if (a < b) return true;
  if (b < a) return false;
  const bool an = is_nan(a), bn = is_nan(b);
  if (an != bn) return an;
  return ia < ib;
}

// Same for Max: NaN first, then larger value, then smaller index.
template <class TA>
KMR_HOST_DEVICE KMR_INLINE bool max_before(TA a, long long ia, TA b, long long ib) {
  if (a > b) return true;
  if (b > a) return false;
  const bool an = is_nan(a), bn = is_nan(b);
  if (an != bn) return an;
  return ia < ib;
}

// Order of the K-smallest lists (torch.sort order): a real element before an
// empty slot, numbers before NaN, then smaller value, then smaller index.
template <class TA>
KMR_HOST_DEVICE KMR_INLINE bool kmin_before(TA a, long long ia, TA b, long long ib) {
  if (ib == NO_INDEX) return ia != NO_INDEX;
  if (ia == NO_INDEX) return false;
  if (a < b) return true;
  if (b < a) return false;
  const bool an = is_nan(a), bn = is_nan(b);
  if (an != bn) return bn;
  return ia < ib;
}

// An index as an output (int64, its own output array: exact past 2^24): -1 for none.
KMR_HOST_DEVICE KMR_INLINE long long index_out(long long i) { return i == NO_INDEX ? -1LL : i; }

// Adds `offset` to the n indices of a finished accumulator (indices of a chunk of j made
// global); empty slots stay NO_INDEX.
KMR_HOST_DEVICE KMR_INLINE void shift_indices(long long* idx, int n, long long offset) {
  if (offset == 0) return;
  for (int s = 0; s < n; ++s)
    if (idx[s] != NO_INDEX) idx[s] += offset;
}

}  // namespace red
}  // namespace kmr
