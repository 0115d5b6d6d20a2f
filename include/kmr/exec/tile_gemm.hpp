// The CPU driver's inner-product tiles (host only): for a block of rows and a
// block of j, the values of one tileable term (tile_terms.hpp) as a small
// matrix product, so that the formula evaluated per pair reads one scalar.
//
// A register block of MR rows x NR packs of j keeps MR * NR accumulators; per
// coordinate c it loads NR packs of y (the j-variables are already transposed
// component by component, zero padded) and broadcasts MR values of x: MR * NR
// FMAs for MR + NR loads. Column blocks are the outer loop, so that the NR packs
// of every coordinate (D cache lines) stay in L1 while all the rows pass.
//
// SqDist uses the expansion |x|^2 + |y|^2 - 2 <x, y>, with the norms computed
// once per row and per j. Its rounding error is about eps (|x|^2 + |y|^2), not
// eps |x - y|^2: for points much closer than their norms (|x - y| / |x| below
// ~1e-3 in float32), the relative error of the distance grows as the square of
// that ratio (docs/internals.md, "Inner-product tiles"). A negative result of the cancellation is
// set to 0 (a SqDist is never negative); NaN stays NaN.
#pragma once
#include <cstdint>

#include "../simd/pack.hpp"
#include "tile_terms.hpp"

namespace kmr {
namespace tile {

// Column packs and rows of the register block: MR * NR accumulators + NR y packs + 1 broadcast
// fit the 16 vector registers of AVX2 (and leave AVX-512's 32 for the compiler).
constexpr int MICRO_ROWS = 4;
constexpr int MICRO_PACKS = 2;

// out[r * ostride + n * LN + l] = <x_r, y_(j + n * LN + l)> finished by Fin (the term's kind),
// for r < MR, n < NR.
template <class P, int KIND, int D, int MR, int NR>
KMR_INLINE void micro(const typename P::value_type* const* xr, const typename P::value_type* xn,
                      const typename P::value_type* yt, int64_t ystride, const typename P::value_type* yn, int64_t j,
                      typename P::value_type* out, int64_t ostride) {
  using T = typename P::value_type;
  constexpr int LN = P::size;
  P acc[MR][NR];
  for (int r = 0; r < MR; ++r)
    for (int n = 0; n < NR; ++n) acc[r][n] = P(T(0));
  const T* yc = yt + j;
  for (int c = 0; c < D; ++c, yc += ystride) {
    P yv[NR];
    for (int n = 0; n < NR; ++n) yv[n] = P::load(yc + n * LN);
    for (int r = 0; r < MR; ++r) {
      const P xb(xr[r][c]);
      for (int n = 0; n < NR; ++n) acc[r][n] = simd::fmadd(xb, yv[n], acc[r][n]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int n = 0; n < NR; ++n) {
      P v = acc[r][n];
      if constexpr (KIND == TILE_SQDIST) {
        const P z(T(0));
        v = P(xn[r]) + P::load(yn + j + n * LN) - P(T(2)) * v;
        v = simd::select(v < z, z, v);
      }
      v.store(out + r * ostride + n * LN);
    }
}

// The rows of one register block, MR of them (MR < MICRO_ROWS for the last block).
template <class P, int KIND, int D, int MR>
KMR_INLINE void column_blocks(const typename P::value_type* const* xr, const typename P::value_type* xn,
                              const typename P::value_type* yt, int64_t ystride, const typename P::value_type* yn,
                              int64_t j, int packs, typename P::value_type* out, int64_t ostride) {
  int n = 0;
  for (; n + MICRO_PACKS <= packs; n += MICRO_PACKS)
    micro<P, KIND, D, MR, MICRO_PACKS>(xr, xn, yt, ystride, yn, j + n * P::size, out + n * P::size, ostride);
  for (; n < packs; ++n) micro<P, KIND, D, MR, 1>(xr, xn, yt, ystride, yn, j + n * P::size, out + n * P::size, ostride);
}

// out[r * ostride + (j - j0)] for r < nrows and j in [j0, j1) rounded up to whole packs:
// the term Tm of rows xr[r] (D values each; xn[r] = |x_r|^2 for SqDist) and of the j-values
// in yt (component c of j at yt[c * ystride + j], readable up to j1 rounded up; yn[j] = |y_j|^2).
template <class P, class Tm>
void fill(const typename P::value_type* const* xr, const typename P::value_type* xn, int64_t nrows,
          const typename P::value_type* yt, int64_t ystride, const typename P::value_type* yn, int64_t j0, int64_t j1,
          typename P::value_type* out, int64_t ostride) {
  constexpr int LN = P::size, MR = MICRO_ROWS, CB = MICRO_PACKS;
  constexpr int K = Tm::kind, D = Tm::D;
  const int64_t packs = (j1 - j0 + LN - 1) / LN;
  for (int64_t q = 0; q < packs; q += CB) {  // columns outer: their y packs stay in L1 over all rows
    const int np = packs - q < CB ? int(packs - q) : CB;
    const int64_t j = j0 + q * LN;
    int64_t r = 0;
    for (; r + MR <= nrows; r += MR)
      column_blocks<P, K, D, MR>(xr + r, xn + r, yt, ystride, yn, j, np, out + r * ostride + q * LN, ostride);
    switch (nrows - r) {
      case 3:
        column_blocks<P, K, D, 3>(xr + r, xn + r, yt, ystride, yn, j, np, out + r * ostride + q * LN, ostride);
        break;
      case 2:
        column_blocks<P, K, D, 2>(xr + r, xn + r, yt, ystride, yn, j, np, out + r * ostride + q * LN, ostride);
        break;
      case 1:
        column_blocks<P, K, D, 1>(xr + r, xn + r, yt, ystride, yn, j, np, out + r * ostride + q * LN, ostride);
        break;
      default:
        break;
    }
  }
}

// |v|^2 of D contiguous values.
template <class T, int D>
inline T sqnorm(const T* v) {
  T s = T(0);
  for (int c = 0; c < D; ++c) s += v[c] * v[c];
  return s;
}

}  // namespace tile
}  // namespace kmr
