// The CPU driver's inner-product tiles (host only): for a block of rows and a
// block of j, the values of one tileable term (tile_terms.hpp) as a small
// matrix product, so that the formula evaluated per pair reads one scalar.
//
// A register block of MR rows x NR packs of j keeps MR * NR accumulators; per
// coordinate c it loads NR packs of y (the j-variables are already transposed
// component by component, zero padded) and broadcasts MR values of x: MR * NR
// FMAs for MR + NR loads. Column blocks are the outer loop: each one's y is
// copied to a contiguous panel, TILE_KC coordinates at a time, that stays in L1
// while all the rows pass.
//
// SqDist uses the expansion |x|^2 + |y|^2 - 2 <x, y> of x - c and y - c (the
// driver subtracts the mean c of the y_j from the rows and, through `cen`, from
// each panel), with the norms computed once per row and per j. Its rounding
// error is about eps (|x - c|^2 + |y - c|^2), not eps |x - y|^2: for points much
// closer than the cloud's spread, the relative error of SqDist grows
// (docs/internals.md, "Inner-product tiles"). A negative result of the
// cancellation is set to 0 (a SqDist is never negative); NaN stays NaN.
#pragma once
#include <cstdint>

#include "../simd/pack.hpp"
#include "tile_terms.hpp"

namespace kmr {
namespace tile {

// Rows and column packs of the register block: MR * NR accumulators + NR y packs + 1 broadcast
// within the 16 vector registers of AVX2 (AVX-512's 32 leave room to the compiler). Measured on
// AVX2, one thread, float32, share of the FMA peak at D = 256 (Gaussian / 10-NN): 4x2 51% / 45%,
// 4x3 58% / 53%, 3x4 63% / 68%, 8x1 75% / 75%, 6x2 80% / 72%.
#ifndef KMR_TILE_MICRO_ROWS
#define KMR_TILE_MICRO_ROWS 6
#endif
#ifndef KMR_TILE_MICRO_PACKS
#define KMR_TILE_MICRO_PACKS 2
#endif
constexpr int MICRO_ROWS = KMR_TILE_MICRO_ROWS;
constexpr int MICRO_PACKS = KMR_TILE_MICRO_PACKS;

// Coordinates per pass over a column block (k-blocking): the panel (KC x NR packs, 16 KB in float32 on
// AVX2) stays in L1 at any D. Without it, D = 1024 ran at 19% of the FMA peak.
constexpr int TILE_KC = 256;

// For r < MR, n < NR: the partial inner product over coordinates [c0, c0 + nc) of x_r and of column
// n * LN + l of the panel yp (coordinate c0 + c of column k at yp[c * ys + k]) is added to out[r * ostride +
// n * LN + l] (set when first); when last, the term is finished there (ynj[k] = |y|^2 of column k).
template <class P, int KIND, int NC, bool FIRST, bool LAST, int MR, int NR>
KMR_INLINE void micro(const typename P::value_type* const* xr, const typename P::value_type* xn, int c0,
                      const typename P::value_type* yp, int64_t ys, const typename P::value_type* ynj,
                      typename P::value_type* out, int64_t ostride) {
  using T = typename P::value_type;
  constexpr int LN = P::size;
  P acc[MR][NR];
  for (int r = 0; r < MR; ++r)
    for (int n = 0; n < NR; ++n) acc[r][n] = FIRST ? P(T(0)) : P::load(out + r * ostride + n * LN);
  const T* yc = yp;
  const T* x[MR];
  for (int r = 0; r < MR; ++r) x[r] = xr[r] + c0;
  for (int c = 0; c < NC; ++c, yc += ys) {
    P yv[NR];
    for (int n = 0; n < NR; ++n) yv[n] = P::load(yc + n * LN);
    for (int r = 0; r < MR; ++r) {
      const P xb(x[r][c]);
      for (int n = 0; n < NR; ++n) acc[r][n] = simd::fmadd(xb, yv[n], acc[r][n]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int n = 0; n < NR; ++n) {
      P v = acc[r][n];
      if constexpr (KIND == TILE_SQDIST && LAST) {
        const P z(T(0));
        v = P(xn[r]) + P::load(ynj + n * LN) - P(T(2)) * v;
        v = simd::select(v < z, z, v);
      }
      v.store(out + r * ostride + n * LN);
    }
}

// Rows [0, nrows) of one column block of NR packs: blocks of MR rows, then one of the rest.
template <class P, int KIND, int NC, bool FIRST, bool LAST, int NR, int MR = MICRO_ROWS>
KMR_INLINE void row_blocks(const typename P::value_type* const* xr, const typename P::value_type* xn, int64_t nrows,
                           int c0, const typename P::value_type* yp, int64_t ys, const typename P::value_type* ynj,
                           typename P::value_type* out, int64_t ostride) {
  int64_t r = 0;
  for (; r + MR <= nrows; r += MR)
    micro<P, KIND, NC, FIRST, LAST, MR, NR>(xr + r, xn + r, c0, yp, ys, ynj, out + r * ostride, ostride);
  if constexpr (MR > 1)
    if (r < nrows)
      row_blocks<P, KIND, NC, FIRST, LAST, NR, MR - 1>(xr + r, xn + r, nrows - r, c0, yp, ys, ynj, out + r * ostride,
                                                       ostride);
}

// One pass of NC coordinates from c0 over the column block at j (np packs): packs the panel, then the rows.
template <class P, int KIND, int NC, bool FIRST, bool LAST>
KMR_INLINE void pass(const typename P::value_type* const* xr, const typename P::value_type* xn, int64_t nrows, int c0,
                     const typename P::value_type* yt, int64_t ystride, int64_t j, int np,
                     const typename P::value_type* ynj, const typename P::value_type* cen, typename P::value_type* o,
                     int64_t ostride, typename P::value_type* panel) {
  constexpr int LN = P::size, CB = MICRO_PACKS;
  const int64_t w = int64_t(np) * LN;
  for (int c = 0; c < NC; ++c) {
    const typename P::value_type* src = yt + (c0 + c) * ystride + j;
    typename P::value_type* dst = panel + c * w;
    if (cen) {
      const typename P::value_type m = cen[c0 + c];
      for (int64_t k = 0; k < w; ++k) dst[k] = src[k] - m;
    } else {
      for (int64_t k = 0; k < w; ++k) dst[k] = src[k];
    }
  }
  if (np == CB) {
    row_blocks<P, KIND, NC, FIRST, LAST, CB>(xr, xn, nrows, c0, panel, w, ynj, o, ostride);
  } else {
    for (int n = 0; n < np; ++n)
      row_blocks<P, KIND, NC, FIRST, LAST, 1>(xr, xn, nrows, c0, panel + n * LN, w, ynj ? ynj + n * LN : nullptr,
                                              o + n * LN, ostride);
  }
}

// out[r * ostride + (j - j0)] for r < nrows and j in [j0, j1) rounded up to whole packs:
// the term Tm of rows xr[r] (D values each; xn[r] = |x_r|^2 for SqDist) and of the j-values
// in yt (component c of j at yt[c * ystride + j], readable up to j1 rounded up; yn[j] = |y_j|^2),
// where cen (null for a scalar product) is subtracted from yt's values, as the caller did from the rows.
// panel: scratch of min(D, TILE_KC) * MICRO_PACKS * LN values, where each column block's y is copied
// contiguously, TILE_KC coordinates at a time (read in order by every register block of rows: one stream
// instead of rows ystride apart; it costs 1/nrows of the FMAs and measured the same or faster). Pass
// sizes are compile-time constants: a runtime trip count cost a quarter of the speed at D <= 256.
template <class P, class Tm>
void fill(const typename P::value_type* const* xr, const typename P::value_type* xn, int64_t nrows,
          const typename P::value_type* yt, int64_t ystride, const typename P::value_type* yn,
          const typename P::value_type* cen, int64_t j0, int64_t j1, typename P::value_type* out, int64_t ostride,
          typename P::value_type* panel) {
  constexpr int LN = P::size, CB = MICRO_PACKS, KC = TILE_KC;
  constexpr int K = Tm::kind, D = Tm::D;
  constexpr int FULL = D / KC, REST = D % KC;  // passes of KC coordinates, then one of REST
  const int64_t packs = (j1 - j0 + LN - 1) / LN;
  for (int64_t q = 0; q < packs; q += CB) {  // columns outer: their panel stays in L1 over all rows
    const int np = packs - q < CB ? int(packs - q) : CB;
    const int64_t j = j0 + q * LN;
    const typename P::value_type* ynj = K == TILE_SQDIST ? yn + j : nullptr;
    typename P::value_type* o = out + q * LN;
    if constexpr (D <= KC) {
      pass<P, K, D, true, true>(xr, xn, nrows, 0, yt, ystride, j, np, ynj, cen, o, ostride, panel);
    } else {
      pass<P, K, KC, true, FULL == 1 && REST == 0>(xr, xn, nrows, 0, yt, ystride, j, np, ynj, cen, o, ostride, panel);
      for (int b = 1; b + 1 < FULL; ++b)
        pass<P, K, KC, false, false>(xr, xn, nrows, b * KC, yt, ystride, j, np, ynj, cen, o, ostride, panel);
      if constexpr (FULL > 1)
        pass<P, K, KC, false, REST == 0>(xr, xn, nrows, (FULL - 1) * KC, yt, ystride, j, np, ynj, cen, o, ostride,
                                         panel);
      if constexpr (REST > 0)
        pass<P, K, (REST > 0 ? REST : 1), false, true>(xr, xn, nrows, FULL * KC, yt, ystride, j, np, ynj, cen, o,
                                                       ostride, panel);
    }
  }
}

// |v|^2 of D contiguous values.
template <class T, int D>
inline T sqnorm(const T* v) {  // in double: a float32 sum of D squares would add ~sqrt(D) ulp to SqDist
  double s = 0.0;
  for (int c = 0; c < D; ++c) s += double(v[c]) * double(v[c]);
  return T(s);
}

}  // namespace tile
}  // namespace kmr
