// The reductions fed with packs of j values (host only, used by cpu_driver.hpp).
//
// A pack reducer keeps per-lane partial results (its State) and merges the
// lanes into the reduction's scalar accumulator with `flush`; the scalar
// accumulators (reduction/) stay the one definition of what is computed and
// how partial results merge. Lane l of a pack holds j = jabs + l; within a
// lane, j only grows, so "ties go to the smaller index" is decided per lane
// by a strict comparison and across lanes by the reduction's own order.
//
// The driver calls init and flush once per super-block of j (LEVEL
// FLUSH_SUPER), or once per range of j (FLUSH_RANGE: KMin, which writes into
// the row's accumulator directly, and the sum-like reducers under
// SCHEME_DIRECT). Sum-like reducers (Sum, LogSumExp...) keep two lane-wise
// levels, a block sum and a super-block sum, and under SCHEME_BLOCK the
// driver calls block_end after each block of j: the block scheme of
// cpu_driver.hpp, lane by lane.
//
// Reductions without a vectorised reducer, and accumulators of another type
// than the data, use PackFallback: lanes unpacked, accumulated in j order.
#pragma once
#include <cstdint>
#include <type_traits>

#include "../reduction/reduction.hpp"
#include "../simd/pack.hpp"

namespace kmr {
namespace cpu_detail {

// TA and DIMF of an instantiated reduction Red<TA, DIMF>.
template <class R>
struct RedTraits;
template <template <class, int> class R, class TA, int D>
struct RedTraits<R<TA, D>> {
  using acc_type = TA;
  static constexpr int DIMF = D;
};

enum PackFlush : int { FLUSH_SUPER = 0, FLUSH_RANGE = 1 };

// Scalar accumulators of one row (acc_dim, idx_dim each): the row's own, and two scratch ones.
template <class TA>
struct RowSlots {
  TA* acc;
  long long* idx;
  TA* sup_acc;
  long long* sup_idx;
  TA* blk_acc;
  long long* blk_idx;
};

// Any reduction: lanes unpacked into the scalar accumulate, in j order, into
// a block accumulator merged into a super-block one (the scalar block scheme).
template <class Red, class P>
struct PackFallback {
  using T = typename P::value_type;
  using TA = typename RedTraits<Red>::acc_type;
  static constexpr int L = P::size;
  static constexpr int DIMF = RedTraits<Red>::DIMF;
  static constexpr bool SUM_LIKE = true;
  static constexpr int LEVEL = FLUSH_SUPER;
  struct State {
    TA *acc, *sup;
    long long *idx, *sup_idx;
  };
  const Red& rd;
  KMR_INLINE void init(State& s, const RowSlots<TA>& r) const {
    s = {r.blk_acc, r.sup_acc, r.blk_idx, r.sup_idx};
    rd.init(s.acc, s.idx);
    rd.init(s.sup, s.sup_idx);
  }
  template <bool MASKED>
  KMR_INLINE void add(State& s, const P* f, P, long long jabs, int nvalid) const {
    alignas(64) T lanes[DIMF][L];
    for (int d = 0; d < DIMF; ++d) f[d].store(lanes[d]);
    const int n = MASKED ? nvalid : L;
    for (int l = 0; l < n; ++l) {
      T fl[DIMF];
      for (int d = 0; d < DIMF; ++d) fl[d] = lanes[d][l];
      rd.template accumulate<T>(s.acc, s.idx, fl, jabs + l);
    }
  }
  KMR_INLINE void block_end(State& s) const {
    rd.merge(s.sup, s.sup_idx, s.acc, s.idx);
    rd.init(s.acc, s.idx);
  }
  KMR_INLINE void flush(State& s, TA* acc, long long* idx, long long) const {
    rd.merge(s.sup, s.sup_idx, s.acc, s.idx);
    rd.merge(acc, idx, s.sup, s.sup_idx);
  }
};

// Sum, per lane: plain sums r over runs of RUN_PACKS packs (the driver calls run_end), each run added
// to the lane's sum s with its rounding error gathered in c (cascaded summation: u = s + r,
// c += (s - u) + r, exact when |s| >= |r|), and every DRAIN_BLOCKS block ends (and at the flush) s and
// c added in double to the lane's sum t over the whole range of j, rounded once at the flush. In float32
// the sum of 2e4 x 0.1 is then correctly rounded (plain lane sums over a block: 3e-7 off) for 1 add per
// pack plus 4 per run (a cascaded add of every pack cost the Gaussian 20-30% of its speed; draining to
// double at every block of 256 j cost its 3-dim x-gradient 10%, every 64 blocks 4%). Infinities make c
// NaN while s holds the right value: a NaN c is dropped at the drain. float64 keeps plain lane sums (its
// block sums are far below float32's output rounding already).
template <class Red, class P>
struct PackSum {
  using T = typename P::value_type;
  static constexpr int L = P::size;
  static constexpr int DIMF = RedTraits<Red>::DIMF;
  static constexpr bool SUM_LIKE = true;
  static constexpr int LEVEL = FLUSH_RANGE;
  static constexpr bool COMP = sizeof(T) < sizeof(double);
  static constexpr int RUN_PACKS = COMP ? 4 : 0;  // runs of 4: exact for 4 x 0.1, 8 would be 7e-8 off
  static constexpr int DRAIN_BLOCKS = 64;         // block ends between two drains of (s, c) into t
  struct State {
    P r[COMP ? DIMF : 1], s[DIMF], c[COMP ? DIMF : 1];
    double t[DIMF][L];
    int nb;  // block ends since the last drain
  };
  const Red& rd;
  KMR_INLINE void init(State& st, const RowSlots<T>&) const {
    for (int d = 0; d < DIMF; ++d) {
      st.s[d] = P(T(0));
      if constexpr (COMP) st.r[d] = st.c[d] = P(T(0));
      for (int l = 0; l < L; ++l) st.t[d][l] = 0.0;
    }
    st.nb = 0;
  }
  template <bool MASKED>
  KMR_INLINE void add(State& st, const P* f, P, long long, int nvalid) const {
    for (int d = 0; d < DIMF; ++d) {
      P x = f[d];
      if constexpr (MASKED) x = select(P::first_lanes(nvalid), x, P(T(0)));
      if constexpr (COMP) {
        st.r[d] += x;
      } else {
        st.s[d] += x;
      }
    }
  }
  KMR_INLINE void run_end(State& st) const {
    if constexpr (COMP)
      for (int d = 0; d < DIMF; ++d) {
        const P u = st.s[d] + st.r[d];
        st.c[d] += (st.s[d] - u) + st.r[d];
        st.s[d] = u;
        st.r[d] = P(T(0));
      }
  }
  KMR_INLINE void block_end(State& st) const {
    run_end(st);
    if (++st.nb < DRAIN_BLOCKS) return;
    drain(st);
  }
  KMR_INLINE void drain(State& st) const {
    st.nb = 0;
    for (int d = 0; d < DIMF; ++d) {
      alignas(64) T s[L], c[L];
      st.s[d].store(s);
      st.s[d] = P(T(0));
      if constexpr (COMP) {
        st.c[d].store(c);
        st.c[d] = P(T(0));
      }
      for (int l = 0; l < L; ++l) {
        st.t[d][l] += double(s[l]);
        if constexpr (COMP)
          if (c[l] == c[l]) st.t[d][l] += double(c[l]);
      }
    }
  }
  KMR_INLINE void flush(State& st, T* acc, long long*, long long) const {
    run_end(st);
    drain(st);
    for (int d = 0; d < DIMF; ++d) {
      double v = 0.0;
      for (int l = 0; l < L; ++l) v += st.t[d][l];
      acc[d] += T(v);
    }
  }
};

// Packs per run of a reducer with run_end (PackSum), else 0.
template <class PR, class = void>
struct RunPacks {
  static constexpr int value = 0;
};
template <class PR>
struct RunPacks<PR, std::void_t<decltype(PR::RUN_PACKS)>> {
  static constexpr int value = PR::RUN_PACKS;
};

// Kahan sum, lane-wise; a flush merges each lane's (s, c) with the reduction's merge.
template <class Red, class P>
struct PackKahan {
  using T = typename P::value_type;
  static constexpr int L = P::size;
  static constexpr int DIMF = RedTraits<Red>::DIMF;
  static constexpr bool SUM_LIKE = true;
  static constexpr int LEVEL = FLUSH_SUPER;
  struct State {
    P s[DIMF], c[DIMF];
  };
  const Red& rd;
  KMR_INLINE void init(State& st, const RowSlots<T>&) const {
    for (int d = 0; d < DIMF; ++d) st.s[d] = st.c[d] = P(T(0));
  }
  template <bool MASKED>
  KMR_INLINE void add(State& st, const P* f, P, long long, int nvalid) const {
    for (int d = 0; d < DIMF; ++d) {
      P x = f[d];
      if constexpr (MASKED) x = select(P::first_lanes(nvalid), x, P(T(0)));
      const P y = x - st.c[d];
      const P t = st.s[d] + y;
      const P c = (t - st.s[d]) - y;
      st.c[d] = select(simd::isnan(c), P(T(0)), c);
      st.s[d] = t;
    }
  }
  KMR_INLINE void block_end(State&) const {}
  KMR_INLINE void flush(State& st, T* acc, long long* idx, long long) const {
    alignas(64) T s[DIMF][L], c[DIMF][L];
    for (int d = 0; d < DIMF; ++d) st.s[d].store(s[d]), st.c[d].store(c[d]);
    for (int l = 0; l < L; ++l) {
      T lane[2 * DIMF];
      for (int d = 0; d < DIMF; ++d) lane[d] = s[d][l], lane[DIMF + d] = c[d][l];
      rd.merge(acc, idx, lane, nullptr);
    }
  }
};

// Min, Max and their arg versions: best value per lane, and its index
// relative to the super-block (exact in T) when the reduction keeps indices.
template <class Red, class P, bool IS_MAX, bool HAS_IDX>
struct PackMinMax {
  using T = typename P::value_type;
  static constexpr int L = P::size;
  static constexpr int DIMF = RedTraits<Red>::DIMF;
  static constexpr bool SUM_LIKE = false;
  static constexpr int LEVEL = FLUSH_SUPER;
  struct State {
    P best[DIMF];
    P arg[HAS_IDX ? DIMF : 1];  // -1: no element yet
  };
  const Red& rd;
  KMR_INLINE void init(State& st, const RowSlots<T>&) const {
    for (int d = 0; d < DIMF; ++d) st.best[d] = P(IS_MAX ? -red::inf<T>() : red::inf<T>());
    if constexpr (HAS_IDX)
      for (int d = 0; d < DIMF; ++d) st.arg[d] = P(T(-1));
  }
  template <bool MASKED>
  KMR_INLINE void add(State& st, const P* f, P jrel, long long, int nvalid) const {
    for (int d = 0; d < DIMF; ++d) {
      const P x = f[d], b = st.best[d];
      // Strictly better (later j loses ties), or NaN over a number, or the first element.
      auto win = (IS_MAX ? x > b : x < b);
      if constexpr (HAS_IDX) {
        win = win || (simd::isnan(x) && !simd::isnan(b)) || (st.arg[d] < P(T(0)));
      } else {
        win = win || simd::isnan(x);
      }
      if constexpr (MASKED) win = win && P::first_lanes(nvalid);
      st.best[d] = select(win, x, b);
      if constexpr (HAS_IDX) st.arg[d] = select(win, jrel, st.arg[d]);
    }
  }
  KMR_INLINE void block_end(State&) const {}
  KMR_INLINE void flush(State& st, T* acc, long long* idx, long long jbase) const {
    alignas(64) T b[L], a[L];
    for (int d = 0; d < DIMF; ++d) {
      st.best[d].store(b);
      if constexpr (HAS_IDX) {
        st.arg[d].store(a);
        for (int l = 0; l < L; ++l) {
          if (a[l] < T(0)) continue;
          const long long j = jbase + static_cast<long long>(a[l]);
          if (Red::before(b[l], j, acc[d], idx[d])) acc[d] = b[l], idx[d] = j;
        }
      } else {
        for (int l = 0; l < L; ++l)
          if (Red::better_value(b[l], acc[d])) acc[d] = b[l];
      }
    }
  }
};

// KMin family: a pack is compared with the row's current K-th value; only
// lanes that may enter the list (x <= K-th, or NaN) are inserted, in j order.
template <class Red, class P>
struct PackKMin {
  using T = typename P::value_type;
  static constexpr int L = P::size;
  static constexpr int DIMF = RedTraits<Red>::DIMF;
  static constexpr bool SUM_LIKE = false;
  static constexpr int LEVEL = FLUSH_RANGE;
  struct State {
    T* acc;
    long long* idx;
  };
  const Red& rd;
  KMR_INLINE void init(State& st, const RowSlots<T>& r) const {
    st.acc = r.acc;
    st.idx = r.idx;
  }
  template <bool MASKED>
  KMR_INLINE void add(State& st, const P* f, P, long long jabs, int nvalid) const {
    const int K = rd.kk();
    if (K == 0) return;
    for (int d = 0; d < DIMF; ++d) {
      auto cand = !(f[d] > P(st.acc[(K - 1) * DIMF + d]));
      if constexpr (MASKED) cand = cand && P::first_lanes(nvalid);
      if (simd::any(cand)) insert_lanes(rd, st, K, d, f[d], jabs, MASKED ? nvalid : L);
    }
  }
  // The lanes l < n of x that may enter the list, in j order (out of the hot loop: rare once the
  // list holds good values).
  KMR_COLD static void insert_lanes(const Red& rd, State& st, int K, int d, P xp, long long jabs, int n) {
    alignas(64) T x[L];
    xp.store(x);
    const T* kth = st.acc + (K - 1) * DIMF + d;  // drops as lanes enter
    const T t0 = *kth;
    unsigned long long cand = 0;  // lanes that pass the first test, found without a branch per lane
    for (int l = 0; l < n; ++l) cand |= static_cast<unsigned long long>(!(x[l] > t0)) << l;
    for (; cand; cand &= cand - 1) {
      const int l = __builtin_ctzll(cand);
      if (x[l] > *kth) continue;
      if (x[l] == x[l]) {
        insert_number(st, K, d, x[l], jabs + l);
      } else {
        rd.insert(st.acc, st.idx, d, x[l], jabs + l);  // NaN: the reduction's own order
      }
    }
  }
  // Inserts a number x (not NaN) of index j, larger than every index in the list (the row's
  // accumulator only sees its j in increasing order), if it is among the K best: the list is
  // numbers ascending, then NaNs, then empty slots, so x goes before the first entry that is
  // not <= x or is empty. Same result as red::kmin_before, with one comparison per slot.
  KMR_INLINE static void insert_number(State& st, int K, int d, T x, long long j) {
    T* a = st.acc + d;
    long long* ix = st.idx + d;
    int pos = 0;
    while (pos < K && a[pos * DIMF] <= x && ix[pos * DIMF] != red::NO_INDEX) ++pos;
    if (pos == K) return;
    for (int r = K - 1; r > pos; --r) {
      a[r * DIMF] = a[(r - 1) * DIMF];
      ix[r * DIMF] = ix[(r - 1) * DIMF];
    }
    a[pos * DIMF] = x;
    ix[pos * DIMF] = j;
  }
  KMR_INLINE void block_end(State&) const {}
  KMR_INLINE void flush(State&, T*, long long*, long long) const {}
};

// LogSumExp family: per lane a running max m, and sums shifted by it (block
// sums s, super-block sums t). NS sums; weight q of an element: 1
// (LogSumExp), f[1 + q] (weighted) or 1 then f[1 + q] (SumSoftMaxWeight:
// denominator, then numerators).
template <class Red, class P, int NS, int WSHIFT>
struct PackLse {
  using T = typename P::value_type;
  static constexpr int L = P::size;
  static constexpr int DIMF = RedTraits<Red>::DIMF;
  static constexpr bool SUM_LIKE = true;
  static constexpr int LEVEL = FLUSH_SUPER;
  struct State {
    P m;
    P s[NS], t[NS];
  };
  const Red& rd;
  KMR_INLINE void init(State& st, const RowSlots<T>&) const {
    st.m = P(-red::inf<T>());
    for (int q = 0; q < NS; ++q) st.s[q] = st.t[q] = P(T(0));
  }
  // weight q: 1 when q < WSHIFT, else f[1 + q - WSHIFT]
  KMR_INLINE static P weight(const P* f, int q) { return q < WSHIFT ? P(T(1)) : f[1 + q - WSHIFT]; }
  template <bool MASKED>
  KMR_INLINE void add(State& st, const P* f, P, long long, int nvalid) const {
    const P ninf(-red::inf<T>()), zero(T(0));
    P x = f[0];
    P w[NS];
    for (int q = 0; q < NS; ++q) w[q] = weight(f, q);
    if constexpr (MASKED) {
      const auto m = P::first_lanes(nvalid);
      x = select(m, x, ninf);
      for (int q = 0; q < NS; ++q) w[q] = select(m, w[q], zero);
    }
    push(st.m, st.s, st.t, x, w);
  }
  // Adds exp(x) w[q] lane-wise to the block sums s (new maxima rescale s and t); x = -inf adds nothing.
  KMR_INLINE static void push(P& m, P* s, P* t, P x, const P* w) {
    const P ninf(-red::inf<T>()), one(T(1)), zero(T(0));
    const auto gt = x > m;
    if (simd::any(gt)) {  // new max in some lanes: rescale their sums (exp(-inf) = 0 when empty)
      const P mn = select(gt, x, m);
      const P c = select(gt, vexp(m - mn), one);
      for (int q = 0; q < NS; ++q) s[q] *= c, t[q] *= c;
      m = mn;
    }
    // exp(x - m): 1 when x == m (also +inf), 0 for x = -inf, NaN for NaN x
    const P e = select(x == ninf, zero, select(x == m, one, vexp(x - m)));
    for (int q = 0; q < NS; ++q) s[q] += e * w[q];
  }
  KMR_INLINE void block_end(State& st) const {
    for (int q = 0; q < NS; ++q) st.t[q] += st.s[q], st.s[q] = P(T(0));
  }
  // The lanes combined around their largest max: part = [M, sums[NS]], one partial result.
  KMR_INLINE static void combine(const P& m, const P* s, const P* t, T* part) {
    const T M = simd::hmax(m);
    const P Mp(M);
    const P c = select(m == Mp, P(T(1)), vexp(m - Mp));
    part[0] = M;
    for (int q = 0; q < NS; ++q) part[1 + q] = simd::hsum((t[q] + s[q]) * c);
  }
  KMR_INLINE void flush(State& st, T* acc, long long* idx, long long) const {
    T part[1 + NS];
    combine(st.m, st.s, st.t, part);
    rd.merge(acc, idx, part, nullptr);
  }
};

// Coordinate-wise LogSumExp family (vector LogSumExp, LogSumExpWeightVec, SumSoftMaxWeightVec): NC
// coordinates, each a PackLse lane state of NS sums on f[c]; weight q of coordinate c: 1 for the first
// NS - WEIGHTED sums, then f[NC + c]. The accumulator holds one [m, sums[NS]] block per coordinate.
template <class Red, class P, int NC, int NS, int WEIGHTED>
struct PackLseVec {
  using T = typename P::value_type;
  using One = PackLse<Red, P, NS, NS - WEIGHTED>;
  static constexpr int L = P::size;
  static constexpr int DIMF = RedTraits<Red>::DIMF;
  static constexpr bool SUM_LIKE = true;
  static constexpr int LEVEL = FLUSH_SUPER;
  struct State {
    P m[NC];
    P s[NC][NS], t[NC][NS];
  };
  const Red& rd;
  KMR_INLINE void init(State& st, const RowSlots<T>&) const {
    for (int c = 0; c < NC; ++c) {
      st.m[c] = P(-red::inf<T>());
      for (int q = 0; q < NS; ++q) st.s[c][q] = st.t[c][q] = P(T(0));
    }
  }
  template <bool MASKED>
  KMR_INLINE void add(State& st, const P* f, P, long long, int nvalid) const {
    const P ninf(-red::inf<T>()), zero(T(0));
    for (int c = 0; c < NC; ++c) {
      P x = f[c];
      P w[NS];
      for (int q = 0; q < NS; ++q) w[q] = q < NS - WEIGHTED ? P(T(1)) : f[NC + c];
      if constexpr (MASKED) {
        const auto m = P::first_lanes(nvalid);
        x = select(m, x, ninf);
        for (int q = 0; q < NS; ++q) w[q] = select(m, w[q], zero);
      }
      One::push(st.m[c], st.s[c], st.t[c], x, w);
    }
  }
  KMR_INLINE void block_end(State& st) const {
    for (int c = 0; c < NC; ++c)
      for (int q = 0; q < NS; ++q) st.t[c][q] += st.s[c][q], st.s[c][q] = P(T(0));
  }
  KMR_INLINE void flush(State& st, T* acc, long long*, long long) const {
    for (int c = 0; c < NC; ++c) {
      T part[1 + NS];
      One::combine(st.m[c], st.s[c], st.t[c], part);
      red::lse_merge(acc + c * (1 + NS), NS, part);
    }
  }
};

// The pack reducer of a reduction for packs P (of its accumulator type, else the fallback).
template <class Red, class P>
struct PackReducerOf {
  using type = PackFallback<Red, P>;
};

#define KMR_PACK_REDUCER(RED, ...)                    \
  template <class T, int D, class A>                  \
  struct PackReducerOf<RED<T, D>, simd::Pack<T, A>> { \
    using P = simd::Pack<T, A>;                       \
    using type = __VA_ARGS__;                         \
  };
KMR_PACK_REDUCER(SumReduction, PackSum<SumReduction<T, D>, P>)
KMR_PACK_REDUCER(SumKahanReduction, PackKahan<SumKahanReduction<T, D>, P>)
KMR_PACK_REDUCER(MinReduction, PackMinMax<MinReduction<T, D>, P, false, false>)
KMR_PACK_REDUCER(MaxReduction, PackMinMax<MaxReduction<T, D>, P, true, false>)
KMR_PACK_REDUCER(ArgMinReduction, PackMinMax<ArgMinReduction<T, D>, P, false, true>)
KMR_PACK_REDUCER(ArgMaxReduction, PackMinMax<ArgMaxReduction<T, D>, P, true, true>)
KMR_PACK_REDUCER(Min_ArgMinReduction, PackMinMax<Min_ArgMinReduction<T, D>, P, false, true>)
KMR_PACK_REDUCER(Max_ArgMaxReduction, PackMinMax<Max_ArgMaxReduction<T, D>, P, true, true>)
KMR_PACK_REDUCER(KMinReduction, PackKMin<KMinReduction<T, D>, P>)
KMR_PACK_REDUCER(ArgKMinReduction, PackKMin<ArgKMinReduction<T, D>, P>)
KMR_PACK_REDUCER(KMin_ArgKMinReduction, PackKMin<KMin_ArgKMinReduction<T, D>, P>)
// (a vector LogSumExp, and the coordinate-wise *Vec reductions, use PackLseVec)
KMR_PACK_REDUCER(LogSumExpReduction, std::conditional_t<D == 1, PackLse<LogSumExpReduction<T, D>, P, 1, 1>,
                                                        PackLseVec<LogSumExpReduction<T, D>, P, D, 1, 0>>)
KMR_PACK_REDUCER(LogSumExpWeightVecReduction, PackLseVec<LogSumExpWeightVecReduction<T, D>, P, D / 2, 1, 1>)
KMR_PACK_REDUCER(SumSoftMaxWeightVecReduction, PackLseVec<SumSoftMaxWeightVecReduction<T, D>, P, D / 2, 2, 1>)
KMR_PACK_REDUCER(LogSumExpWeightReduction, PackLse<LogSumExpWeightReduction<T, D>, P, D - 1, 0>)
KMR_PACK_REDUCER(SumSoftMaxWeightReduction, PackLse<SumSoftMaxWeightReduction<T, D>, P, D, 1>)
#undef KMR_PACK_REDUCER

}  // namespace cpu_detail
}  // namespace kmr
