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

// An index as an output value (indices are written as T values, -1 for none).
template <class T>
KMR_HOST_DEVICE KMR_INLINE T index_value(long long i) {
  return i == NO_INDEX ? T(-1) : T(i);
}

}  // namespace red
}  // namespace kmr
