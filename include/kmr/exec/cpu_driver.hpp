// CPU map-reduce driver (host only): a_i = Red_j F(x_i, y_j, p) for one
// compiled (F, Red, T). The formula is evaluated on packs of j values
// (simd::Pack<T>, the widest vector registers this translation unit is
// compiled for), G rows at a time (register blocking: each loaded pack of j
// serves G rows), and the pack reducers (pack_reduce.hpp) keep lane-wise
// partial results that merge into the reduction's scalar accumulators.
//
// Per call: the j-variables are transposed once (per batch) into one
// zero-padded row per component (vector loads). The rows are cut into
// segments, each with its list of intervals of j: one segment [0, nx) x
// [0, ny) per batch, or one per block of KeOps's ranges (rows in no block are
// finalized empty, blocks of j in no list are never visited). Tasks of
// call->parallel_for are tiles of a segment's rows, times chunks of j when
// there are too few rows to feed the threads (dense calls only; the chunks'
// accumulators are then merged in chunk order). A task walks its rows
// in chunks of up to 64 rows; for each super-block of j, each tile of j (a few
// tens of KB of transposed data, kept in cache while the chunk's rows pass
// over it), each group of G rows, each block of 256 j: packs. Memory: O(1)
// per row of a task, plus the transposed copy of the j-variables (linear).
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <utility>
#include <vector>

#include "../formula/fwd.hpp"
#include "../formula/meta.hpp"
#include "../simd/pack.hpp"
#include "kernel_abi.h"
#include "pack_reduce.hpp"
#include "tile_gemm.hpp"
#include "tile_terms.hpp"

namespace kmr {

// SCHEME_BLOCK: each block of 256 values of j is reduced into a fresh
// accumulator, merged into a super-block accumulator (64 blocks), itself merged
// into the row's one: three short sums instead of one long one. The Sum's pack
// reducer goes further (pack_reduce.hpp, PackSum): each lane gathers the rounding
// error of its additions and drains its sums into double every 64 blocks, so that a float32 Sum
// is rounded about once: 2e4 x 0.1 is correctly rounded, 1e6 values within 2e-7.
// SCHEME_DIRECT keeps the lane sums over the whole range of j (with their error
// terms: 1e6 x 0.1 within 1e-5) and adds them to the row's accumulator at the end.
// Kahan summation of the other reductions is its own reduction (SumKahanReduction).
enum SumScheme : int { SCHEME_DIRECT = 0, SCHEME_BLOCK = 1 };

// Return codes of run_cpu (kernel_abi.h).
enum CpuKernelStatus : int {
  KERNEL_OK = KMR_KERNEL_OK,
  KERNEL_BAD_CALL = KMR_KERNEL_BAD_CALL,
  KERNEL_FAILED = KMR_KERNEL_FAILED,
  KERNEL_INTERRUPTED = KMR_KERNEL_INTERRUPTED,
};

namespace cpu_detail {

constexpr int64_t BLOCK_J = 256;                 // j per block accumulator
constexpr int64_t SUPER_J = 64 * BLOCK_J;        // j per super-block accumulator (SCHEME_BLOCK)
constexpr int64_t MAX_CHUNK_ROWS = 64;           // i rows that share one pass over a tile of j
constexpr std::size_t CHUNK_ACC_BYTES = 262144;  // scalar accumulators of one row chunk at most (unless 1 row is more)
constexpr std::size_t TILE_J_BYTES = 32768;      // transposed j data of one tile (stays in L1/L2 while the rows pass)
constexpr int64_t TASKS_PER_THREAD = 4;
constexpr int64_t MIN_J_PER_CHUNK = 4 * BLOCK_J;               // j is split only into chunks of at least this
constexpr std::size_t PARTIALS_BYTES = std::size_t(16) << 20;  // and only if the chunks' accumulators fit
// From this dimension on, a SqDist or scalar product of an i- and a j-variable is computed by
// inner-product tiles (tile_gemm.hpp) rather than pair by pair. Measured crossover (AVX2, float32,
// benchmarks/bench_highdim.py): the tiles are 1.2-2x faster for the Gaussian from D = 8 on.
#ifndef KMR_TILE_MIN_DIM
#define KMR_TILE_MIN_DIM 8
#endif
constexpr int TILE_MIN_DIM = KMR_TILE_MIN_DIM;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Positions of F's variables, by category, at compile time; off[p] is the
// first component of variable p among the components of its category.
template <class F>
struct Layout {
  static constexpr VarTable tab = var_table<F>();
  static constexpr int NV = tab.n;
  static constexpr int NV1 = NV > 0 ? NV : 1;  // array size
  struct List {
    int n = 0;
    int pos[NV1] = {};
    int off[NV1] = {};  // by position
    int ncomp = 0;
  };
  static constexpr List list(int cat) {
    List l;
    for (int p = 0; p < NV; ++p)
      if (tab.dim[p] > 0 && tab.cat[p] == cat) {
        l.pos[l.n++] = p;
        l.off[p] = l.ncomp;
        l.ncomp += tab.dim[p];
      }
    return l;
  }
  static constexpr List I = list(CAT_I);
  static constexpr List J = list(CAT_J);
  static constexpr List P = list(CAT_PARAM);
  static constexpr int NIC1 = I.ncomp > 0 ? I.ncomp : 1;
  static constexpr int NJC1 = J.ncomp > 0 ? J.ncomp : 1;
  static constexpr int NPC1 = P.ncomp > 0 ? P.ncomp : 1;
};

// Rows evaluated together on each pack of j (register blocking): each loaded
// j value is used G times. Fewer for formulas with many outputs.
// (4 measured as fast as 8 on AVX-512 for the Gaussian; 2 halves the code of big gradients.)
template <class F>
constexpr int rows_per_group() {
  return F::DIM > 4 ? 2 : 4;
}

template <int... R, class Fn>
KMR_INLINE void unroll(std::integer_sequence<int, R...>, Fn&& fn) {
  (fn(std::integral_constant<int, R>()), ...);
}

// A is the instruction set of the packs (simd::Arch of the translation unit): part of
// every symbol name, so that kernels compiled for different ones never share code.
template <class F, class Red, class T, int SCHEME, class A>
struct CpuRun {
  using L = Layout<F>;
  // The formula evaluated per pair: F, or F with its tileable term read from the tile (position L::NV).
  using TP = tile::Plan<F, L::NV, (L::NV < VarTable::MAX_VARS ? TILE_MIN_DIM : 1 << 30)>;
  using FE = typename TP::FE;
  using Tm = typename TP::Tm;
  static constexpr bool TILED = TP::TILED;
  static constexpr VarTable TE = var_table<FE>();  // the variables FE still reads
  using TA = typename RedTraits<Red>::acc_type;
  using P = simd::Pack<T, A>;
  using PR = typename PackReducerOf<Red, P>::type;
  using State = typename PR::State;
  static constexpr int LN = P::size;
  static constexpr int G = rows_per_group<F>();
  static constexpr bool BLOCK = SCHEME == SCHEME_BLOCK;
  // Sum-like states see block_end after each block of j under SCHEME_BLOCK.
  static constexpr bool BLOCK_ENDS = PR::SUM_LIKE && BLOCK;
  // Reducers that sum short runs of packs first (PackSum) see run_end after each run.
  static constexpr int RUN_PACKS = RunPacks<PR>::value;
  // States live over the task's whole range of j (else: one super-block).
  static constexpr bool RANGE_STATES = PR::LEVEL == FLUSH_RANGE || (PR::SUM_LIKE && !BLOCK);

  // Rows [r0, r1) of batch b reduce over the intervals [ivals[2 s], ivals[2 s + 1]) for s in [s0, s1).
  struct Segment {
    int64_t b, r0, r1, s0, s1;
  };
  struct Task {
    int64_t seg, i0, i1;
  };

  Red red;
  const T* args[L::NV1];
  int64_t bstride[L::NV1];  // elements from one batch to the next (0: broadcast)
  T* out;                   // FINAL: [nbatch * nx, out_dim]; STATE: the accumulators, [nbatch * nx, acc_dim] of TA
  long long* out_idx;       // FINAL: [nbatch * nx, out_idx_dim]; STATE: [nbatch * nx, idx_dim]
  long long idx_offset;
  bool state_mode;
  int64_t nx, ny;
  std::vector<Segment> segs;
  std::vector<Task> tasks;
  const int64_t* ivals;
  int64_t ytbatch;  // values of yt per batch (0: the j-variables do not depend on the batch)
  int64_t acc_dim, idx_dim, out_dim, out_idx_dim;
  int64_t rows_per_tile, jchunks, j_per_chunk, chunk_rows, tile_j;
  const T* yt;                    // j-variables transposed: component c of row j at yt[c * ystride + j], zero padded
  const T* yn;                    // TILED SqDist: |y_j - cen|^2 at yn[j] (per batch: + b * ystride when ytbatch > 0)
  const T* cen;                   // TILED SqDist: the mean of the y_j, subtracted from x and y (per batch: + b * Tm::D)
  int64_t ystride;                // a multiple of LN
  TA* part_acc;                   // [jchunks][nx][acc_dim] when jchunks > 1
  long long* part_idx;            // [jchunks][nx][idx_dim]
  const volatile int* interrupt;  // call->interrupt: read once per tile of j (a load per tens of thousands of pairs)
  std::atomic<int> failed{0};     // a CpuKernelStatus: the first task to fail stops the others
  struct Interrupted {};

  // Row i's accumulator is complete: writes it finalized, or as a state (indices made global either way).
  void emit(int64_t i, TA* a, long long* ix) const {
    red::shift_indices(ix, int(idx_dim), idx_offset);
    if (state_mode) {
      TA* sa = reinterpret_cast<TA*>(out) + i * acc_dim;
      for (int64_t s = 0; s < acc_dim; ++s) sa[s] = a[s];
      for (int64_t s = 0; s < idx_dim; ++s) out_idx[i * idx_dim + s] = ix[s];
    } else {
      red.template finalize<T>(out + i * out_dim, out_idx + i * out_idx_dim, a, ix);
    }
  }

  // One pack of j (from j; lanes l < nvalid hold real j, the last pack of the range may have fewer)
  // against the GG rows of iv: evaluates F on it and feeds each row's state. The formula is
  // instantiated once; only the reducers' add has a masked version.
  // TILED: tl is the tile's row of the group's first row (one row per tile_j values), j0 its first j.
  template <int GG>
  KMR_INLINE void step(const PR& pr, const T* ytb, State* st, const P (*iv)[L::NIC1], const P* pv, int64_t j, P jrel,
                       int nvalid, const T* tl, int64_t j0) const {
    P jv[L::NJC1];
    for (int q = 0; q < L::J.n; ++q) {
      const int p = L::J.pos[q];
      if (TE.dim[p] == 0) continue;  // read by the tile only
      for (int c = 0; c < L::tab.dim[p]; ++c) jv[L::J.off[p] + c] = P::load(ytb + (L::J.off[p] + c) * ystride + j);
    }
    unroll(std::make_integer_sequence<int, GG>(), [&](auto r) {
      const P* v[L::NV + 1];
      for (int p = 0; p < L::NV; ++p)
        v[p] = L::tab.cat[p] == CAT_I   ? iv[r] + L::I.off[p]
               : L::tab.cat[p] == CAT_J ? jv + L::J.off[p]
                                        : pv + L::P.off[p];
      P pair;
      if constexpr (TILED) {
        pair = P::load(tl + r * tile_j + (j - j0));
        v[L::NV] = &pair;
      }
      P f[F::DIM];
      FE::template eval<P>(f, v);
      if (nvalid == LN) {
        pr.template add<false>(st[r], f, jrel, static_cast<long long>(j), LN);
      } else {
        pr.template add<true>(st[r], f, jrel, static_cast<long long>(j), nvalid);
      }
    });
  }

  // Rows past ilast (the last row of the chunk) repeat it, with states of their own that are never read.
  template <int GG>
  KMR_FLATTEN void group(const PR& pr, const T* const* a, const T* ytb, int64_t i, int64_t ilast, int64_t t0,
                         int64_t t1, int64_t sb, State* st_mem, const P* pv, const T* tl) const {
    P iv[GG][L::NIC1];
    for (int r = 0; r < GG; ++r) {
      const int64_t ir = i + r < ilast ? i + r : ilast;
      for (int q = 0; q < L::I.n; ++q) {
        const int p = L::I.pos[q];
        if (TE.dim[p] == 0) continue;  // read by the tile only
        for (int c = 0; c < L::tab.dim[p]; ++c) iv[r][L::I.off[p] + c] = P(a[p][ir * L::tab.dim[p] + c]);
      }
    }
    State st[GG];
    for (int r = 0; r < GG; ++r) st[r] = st_mem[r];
    for (int64_t jb = t0; jb < t1; jb += BLOCK_J) {
      const int64_t jb1 = jb + BLOCK_J < t1 ? jb + BLOCK_J : t1;
      P jrel = P::iota(T(jb - sb));
      int run = 0;
      for (int64_t j = jb; j < jb1; j += LN) {
        step<GG>(pr, ytb, st, iv, pv, j, jrel, jb1 - j < LN ? int(jb1 - j) : LN, tl, t0);
        jrel += P(T(LN));
        if constexpr (RUN_PACKS > 0)
          if (++run == RUN_PACKS) {
            run = 0;
            for (int r = 0; r < GG; ++r) pr.run_end(st[r]);
          }
      }
      if constexpr (BLOCK_ENDS)
        for (int r = 0; r < GG; ++r) pr.block_end(st[r]);
    }
    for (int r = 0; r < GG; ++r) st_mem[r] = st[r];
  }

  // Reduces the rows [c0, c0 + nr) (states st, ng of them in groups) over j in [j0, j1).
  // TILED: the rows' scratch for the tiles (tile_gemm.hpp), filled per chunk by run_task.
  struct TileScratch {
    std::vector<T> buf;        // [rows][tile_j]: the term for each row of the chunk and j of the tile
    std::vector<const T*> xr;  // each row's i-variable of the term (rows past the chunk repeat its last)
    std::vector<T> xn;         // |x_r|^2 (SqDist)
    std::vector<T> panel;      // one column block of the term's j-variable (tile_gemm.hpp)
    std::vector<T> xc;         // the rows' x - cen (SqDist), D values per row
    const T* yn = nullptr;     // |y_j - cen|^2 of this batch (SqDist)
    const T* cen = nullptr;    // this batch's center (SqDist)
  };

  void reduce_interval(const PR& pr, const T* const* a, const T* ytb, const P* pv, int64_t c0, int64_t nr, int64_t ng,
                       int64_t j0, int64_t j1, State* states, RowSlots<TA>* rows, TileScratch* ts) const {
    if (j1 <= j0) return;
    if constexpr (RANGE_STATES)
      for (int64_t r = 0; r < ng; ++r) pr.init(states[r], rows[r]);
    for (int64_t sb = j0; sb < j1; sb += SUPER_J) {
      const int64_t sb1 = sb + SUPER_J < j1 ? sb + SUPER_J : j1;
      if constexpr (!RANGE_STATES)
        for (int64_t r = 0; r < ng; ++r) pr.init(states[r], rows[r]);
      for (int64_t t0 = sb; t0 < sb1; t0 += tile_j) {
        if (interrupt && *interrupt) throw Interrupted{};
        const int64_t t1 = t0 + tile_j < sb1 ? t0 + tile_j : sb1;
        const T* tl = nullptr;
        if constexpr (TILED) {
          tile::fill<P, Tm>(ts->xr.data(), ts->xn.data(), ng, ytb + L::J.off[Tm::pj] * ystride, ystride, ts->yn,
                            ts->cen, t0, t1, ts->buf.data(), tile_j, ts->panel.data());
          tl = ts->buf.data();
        }
        for (int64_t r = 0; r < nr; r += G)
          group<G>(pr, a, ytb, c0 + r, c0 + nr - 1, t0, t1, sb, &states[r], pv, TILED ? tl + r * tile_j : nullptr);
      }
      if constexpr (!RANGE_STATES)
        for (int64_t r = 0; r < nr; ++r) pr.flush(states[r], rows[r].acc, rows[r].idx, sb);
    }
    if constexpr (RANGE_STATES)
      for (int64_t r = 0; r < nr; ++r) pr.flush(states[r], rows[r].acc, rows[r].idx, j0);
  }

  void run_task(int64_t t) {
    const Task& task = tasks[std::size_t(t / jchunks)];
    const Segment& seg = segs[std::size_t(task.seg)];
    const int64_t chunk = t % jchunks;
    const int64_t i0 = task.i0, i1 = task.i1;
    const int64_t R = chunk_rows;
    const PR pr{red};
    // This batch's arguments and transposed j-variables.
    const T* a[L::NV1];
    for (int p = 0; p < L::NV; ++p) a[p] = args[p] ? args[p] + seg.b * bstride[p] : nullptr;
    const T* ytb = yt ? yt + seg.b * ytbatch : nullptr;
    // Per row of a chunk (and up to G - 1 rows more, that fill the last group): its accumulator,
    // two scratch ones for the reducer, its state.
    const int64_t RG = R + G - 1;
    std::vector<TA> acc(std::size_t(3 * RG * acc_dim));
    std::vector<long long> idx(std::size_t(3 * RG * idx_dim));
    std::vector<State> states(static_cast<std::size_t>(RG));
    std::vector<RowSlots<TA>> rows(static_cast<std::size_t>(RG));
    for (int64_t r = 0; r < RG; ++r) {
      TA* ac = acc.data() + 3 * r * acc_dim;
      long long* x = idx.data() + 3 * r * idx_dim;
      rows[r] = {ac, x, ac + acc_dim, x + idx_dim, ac + 2 * acc_dim, x + 2 * idx_dim};
    }
    TileScratch ts;
    if constexpr (TILED) {
      ts.buf.resize(std::size_t(RG * tile_j));
      ts.xr.resize(std::size_t(RG));
      ts.xn.resize(std::size_t(RG));
      ts.panel.resize(std::size_t(Tm::D < tile::TILE_KC ? Tm::D : tile::TILE_KC) * tile::MICRO_PACKS * LN);
      ts.yn = yn ? yn + (ytbatch > 0 ? seg.b * ystride : 0) : nullptr;
      ts.cen = cen ? cen + (ytbatch > 0 ? seg.b * Tm::D : 0) : nullptr;
      if (ts.cen) ts.xc.resize(std::size_t(RG * Tm::D));
    }
    P pv[L::NPC1];
    for (int q = 0; q < L::P.n; ++q) {
      const int p = L::P.pos[q];
      for (int c = 0; c < L::tab.dim[p]; ++c) pv[L::P.off[p] + c] = P(a[p][c]);
    }

    for (int64_t c0 = i0; c0 < i1; c0 += R) {
      const int64_t nr = c0 + R < i1 ? R : i1 - c0;
      const int64_t ng = ceil_div(nr, G) * G;  // rows in groups, the last one filled up
      for (int64_t r = 0; r < ng; ++r) red.init(rows[r].acc, rows[r].idx);
      if constexpr (TILED)
        for (int64_t r = 0; r < ng; ++r) {
          const int64_t ir = c0 + (r < nr ? r : nr - 1);
          ts.xr[r] = a[Tm::pi] + ir * Tm::D;
          if (ts.cen) {  // SqDist: x - cen
            T* xc = ts.xc.data() + r * Tm::D;
            for (int c = 0; c < Tm::D; ++c) xc[c] = ts.xr[r][c] - ts.cen[c];
            ts.xr[r] = xc;
          }
          ts.xn[r] = Tm::kind == tile::TILE_SQDIST ? tile::sqnorm<T, Tm::D>(ts.xr[r]) : T(0);
        }
      for (int64_t s = seg.s0; s < seg.s1; ++s) {
        int64_t j0 = ivals[2 * s], j1 = ivals[2 * s + 1];
        if (jchunks > 1) {  // dense: this task's chunk of [0, ny)
          j0 = chunk * j_per_chunk;
          j1 = j0 + j_per_chunk < ny ? j0 + j_per_chunk : ny;
        }
        reduce_interval(pr, a, ytb, pv, c0, nr, ng, j0, j1, states.data(), rows.data(), &ts);
      }
      for (int64_t r = 0; r < nr; ++r) {
        TA* ac = rows[r].acc;
        long long* ix = rows[r].idx;
        const int64_t i = c0 + r;
        if (jchunks == 1) {
          emit(seg.b * nx + i, ac, ix);
        } else {
          const int64_t slot = chunk * nx + i;
          for (int64_t s = 0; s < acc_dim; ++s) part_acc[slot * acc_dim + s] = ac[s];
          for (int64_t s = 0; s < idx_dim; ++s) part_idx[slot * idx_dim + s] = ix[s];
        }
      }
    }
  }

  static void task(void* ctx, int64_t t) {
    auto* self = static_cast<CpuRun*>(ctx);
    if (self->failed.load(std::memory_order_relaxed)) return;
    try {
      self->run_task(t);
    } catch (const Interrupted&) {
      self->failed.store(KERNEL_INTERRUPTED);
    } catch (...) {
      self->failed.store(KERNEL_FAILED);
    }
  }
};

// Checks KeOps's ranges of a call against nx rows and ny reduced rows.
inline bool ranges_ok(const kmr_kernel_call* call, int64_t nx, int64_t ny) {
  if (call->nranges == 0) return true;
  if (call->nranges < 0 || !call->ranges || !call->slices) return false;
  int64_t prev_end = 0, prev_slice = 0;
  for (int64_t k = 0; k < call->nranges; ++k) {
    const int64_t a = call->ranges[2 * k], b = call->ranges[2 * k + 1], s = call->slices[k];
    if (a < prev_end || b < a || b > nx || s < prev_slice) return false;
    if (s > prev_slice && !call->redranges) return false;
    for (int64_t l = prev_slice; l < s; ++l) {
      const int64_t ja = call->redranges[2 * l], jb = call->redranges[2 * l + 1];
      if (ja < 0 || jb < ja || jb > ny) return false;
    }
    prev_end = b;
    prev_slice = s;
  }
  return true;
}

// KMR_MODE_MERGE / MERGE_FINAL: per row, state 0 merged with states 1, 2... in order by the
// reduction's own merge (the one the threads use), then written as a state or finalized.
template <class Red, class T>
int merge_states(const kmr_kernel_call* call, const Red& red) {
  using TA = typename RedTraits<Red>::acc_type;
  const int64_t ad = red.acc_dim(), id = red.idx_dim();
  const bool final = call->mode == KMR_MODE_MERGE_FINAL;
  const int64_t nvals = final ? red.out_dim() : ad, nidx = final ? red.out_idx_dim() : id;
  if (call->nstates < 1 || !call->state_acc || (id > 0 && !call->state_idx)) return KERNEL_BAD_CALL;
  if ((nvals > 0 && !call->out) || (nidx > 0 && !call->out_idx)) return KERNEL_BAD_CALL;
  for (int64_t s = 0; s < call->nstates; ++s)
    if ((ad > 0 && !call->state_acc[s]) || (id > 0 && !call->state_idx[s])) return KERNEL_BAD_CALL;
  try {
    std::vector<TA> acc(std::size_t(ad > 0 ? ad : 1));
    std::vector<long long> idx(std::size_t(id > 0 ? id : 1));
    T* out = static_cast<T*>(call->out);
    long long* out_idx = reinterpret_cast<long long*>(call->out_idx);
    for (int64_t i = 0; i < call->nx; ++i) {
      for (int64_t s = 0; s < call->nstates; ++s) {
        const TA* sa = static_cast<const TA*>(call->state_acc[s]) + i * ad;
        const long long* si = id > 0 ? reinterpret_cast<const long long*>(call->state_idx[s]) + i * id : nullptr;
        if (s == 0) {
          for (int64_t q = 0; q < ad; ++q) acc[q] = sa[q];
          for (int64_t q = 0; q < id; ++q) idx[q] = si[q];
        } else {
          red.merge(acc.data(), idx.data(), sa, si);
        }
      }
      if (final) {
        red.template finalize<T>(out + i * nvals, out_idx + i * nidx, acc.data(), idx.data());
      } else {
        TA* oa = reinterpret_cast<TA*>(out) + i * ad;
        for (int64_t q = 0; q < ad; ++q) oa[q] = acc[q];
        for (int64_t q = 0; q < id; ++q) out_idx[i * id + q] = idx[q];
      }
    }
  } catch (...) {
    return KERNEL_FAILED;
  }
  return KERNEL_OK;
}

template <class F, class Red, class T, int SCHEME, class A>
int run_cpu_impl(const kmr_kernel_call* call) {
  using L = Layout<F>;
  using Run = CpuRun<F, Red, T, SCHEME, A>;
  using TA = typename Run::TA;
  using Segment = typename Run::Segment;
  static_assert(RedTraits<Red>::DIMF == F::DIM, "kmr: reduction instantiated with another dim than the formula's");

  if (!call || call->abi_version != KMR_KERNEL_ABI_VERSION) return KERNEL_BAD_CALL;
  if (call->nx < 0 || call->ny < 0 || call->k < 0 || call->k > 0x7fffffff) return KERNEL_BAD_CALL;
  if (call->mode < KMR_MODE_FINAL || call->mode > KMR_MODE_DIMS) return KERNEL_BAD_CALL;
  Red red{};
  red.k = static_cast<int>(call->k);
  if (call->mode == KMR_MODE_DIMS) {
    if (!call->out_idx) return KERNEL_BAD_CALL;
    const int64_t dims[5] = {red.acc_dim(), red.idx_dim(), red.out_dim(), red.out_idx_dim(), int64_t(sizeof(TA))};
    for (int q = 0; q < 5; ++q) call->out_idx[q] = dims[q];
    return KERNEL_OK;
  }
  const int64_t nbatch = call->nbatch > 1 ? call->nbatch : 1;
  if (nbatch > 1 && !call->batch_stride) return KERNEL_BAD_CALL;
  if (nbatch > 1 && call->nranges != 0) return KERNEL_BAD_CALL;  // ranges index the rows of one batch
  if (!ranges_ok(call, call->nx, call->ny)) return KERNEL_BAD_CALL;
  if (call->nx == 0) return KERNEL_OK;
  if (call->mode == KMR_MODE_MERGE || call->mode == KMR_MODE_MERGE_FINAL) return merge_states<Red, T>(call, red);

  Run run;
  run.red = red;
  run.nx = call->nx;
  run.ny = call->ny;
  run.acc_dim = run.red.acc_dim();
  run.idx_dim = run.red.idx_dim();
  run.out_dim = run.red.out_dim();
  run.out_idx_dim = run.red.out_idx_dim();
  run.state_mode = call->mode == KMR_MODE_STATE;
  run.idx_offset = call->idx_offset;
  run.out = static_cast<T*>(call->out);
  run.out_idx = reinterpret_cast<long long*>(call->out_idx);
  run.interrupt = call->interrupt;
  const int64_t nvals = run.state_mode ? run.acc_dim : run.out_dim;
  const int64_t nidx = run.state_mode ? run.idx_dim : run.out_idx_dim;
  if ((nvals > 0 && !run.out) || (nidx > 0 && !run.out_idx)) return KERNEL_BAD_CALL;
  if (L::NV > 0 && !call->args) return KERNEL_BAD_CALL;
  bool j_batched = false;
  for (int p = 0; p < L::NV; ++p) {
    run.args[p] = static_cast<const T*>(call->args[p]);
    run.bstride[p] = nbatch > 1 ? call->batch_stride[p] : 0;
    if (run.bstride[p] < 0) return KERNEL_BAD_CALL;
    const bool needed = L::tab.dim[p] > 0 && (L::tab.cat[p] != CAT_J || run.ny > 0);
    if (needed && !run.args[p]) return KERNEL_BAD_CALL;
    if (L::tab.cat[p] == CAT_J && L::tab.dim[p] > 0 && run.bstride[p] != 0) j_batched = true;
  }

  // Tiling: a few tasks per thread; rows first, j chunks when there are fewer rows than tasks.
  const bool threaded = call->parallel_for && call->num_threads > 1;
  const int64_t target = threaded ? int64_t(call->num_threads) * TASKS_PER_THREAD : 1;
  const int64_t total_rows = nbatch * run.nx;
  const int64_t row_tiles0 = total_rows < target ? total_rows : target;
  run.rows_per_tile = ceil_div(total_rows, row_tiles0);
  const std::size_t row_bytes = std::size_t(run.acc_dim) * sizeof(TA) + std::size_t(run.idx_dim) * sizeof(long long);
  run.jchunks = 1;
  run.j_per_chunk = run.ny;
  if (nbatch == 1 && call->nranges == 0 && run.nx < target && run.ny >= 2 * MIN_J_PER_CHUNK) {
    const int64_t row_tiles = ceil_div(run.nx, run.rows_per_tile);
    int64_t chunks = ceil_div(target, row_tiles);
    if (chunks > run.ny / MIN_J_PER_CHUNK) chunks = run.ny / MIN_J_PER_CHUNK;
    const int64_t by_mem = int64_t(PARTIALS_BYTES / (std::size_t(run.nx) * row_bytes + 1));
    if (chunks > by_mem) chunks = by_mem;
    if (chunks > 1) {
      run.j_per_chunk = ceil_div(ceil_div(run.ny, chunks), BLOCK_J) * BLOCK_J;  // block-aligned
      run.jchunks = ceil_div(run.ny, run.j_per_chunk);
    }
  }
  // Rows of a chunk (a multiple of the register group when it can), j of a tile (a power-of-two number of blocks).
  int64_t R = int64_t(CHUNK_ACC_BYTES / (3 * row_bytes + sizeof(typename Run::State)));
  R = R > MAX_CHUNK_ROWS ? MAX_CHUNK_ROWS : R;
  // Tiled: a multiple of the tiles' register block too (lcm(6, 4) = 12: 60 rows, no ragged row block).
  constexpr int64_t RM = Run::TILED ? int64_t(tile::MICRO_ROWS) * Run::G / std::gcd(tile::MICRO_ROWS, Run::G) : Run::G;
  R -= R % (R >= RM ? RM : Run::G);
  run.chunk_rows = R < Run::G ? Run::G : R;
  run.tile_j = BLOCK_J;
  const std::size_t j_bytes = std::size_t(L::J.ncomp > 0 ? L::J.ncomp : 1) * sizeof(T);
  while (run.tile_j < SUPER_J && std::size_t(2 * run.tile_j) * j_bytes <= TILE_J_BYTES) run.tile_j *= 2;

  try {
    // Segments of rows with their intervals of j; rows of no segment (ranges only) are finalized empty.
    const int64_t dense[2] = {0, run.ny};
    if (call->nranges == 0) {
      run.ivals = dense;
      for (int64_t b = 0; b < nbatch; ++b) run.segs.push_back(Segment{b, 0, run.nx, 0, 1});
    } else {
      run.ivals = call->redranges;
      int64_t covered = 0;
      std::vector<TA> acc0(std::size_t(run.acc_dim));
      std::vector<long long> idx0(std::size_t(run.idx_dim));
      run.red.init(acc0.data(), idx0.data());
      std::vector<TA> acc1(acc0.size());
      std::vector<long long> idx1(idx0.size());
      auto empty_rows = [&](int64_t r0, int64_t r1) {
        for (int64_t i = r0; i < r1; ++i) {
          acc1 = acc0;  // emit shifts the indices in place
          idx1 = idx0;
          run.emit(i, acc1.data(), idx1.data());
        }
      };
      for (int64_t k = 0; k < call->nranges; ++k) {
        const int64_t a = call->ranges[2 * k], b = call->ranges[2 * k + 1];
        const int64_t s0 = k == 0 ? 0 : call->slices[k - 1], s1 = call->slices[k];
        empty_rows(covered, a);
        covered = b;
        if (b > a) run.segs.push_back(Segment{0, a, b, s0, s1});
      }
      empty_rows(covered, run.nx);
    }
    for (int64_t g = 0; g < int64_t(run.segs.size()); ++g) {
      const Segment& sg = run.segs[std::size_t(g)];
      for (int64_t i = sg.r0; i < sg.r1; i += run.rows_per_tile)
        run.tasks.push_back({g, i, i + run.rows_per_tile < sg.r1 ? i + run.rows_per_tile : sg.r1});
    }

    std::vector<TA> part_acc;
    std::vector<long long> part_idx;
    if (run.jchunks > 1) {
      part_acc.resize(std::size_t(run.jchunks * run.nx * run.acc_dim));
      part_idx.resize(std::size_t(run.jchunks * run.nx * run.idx_dim));
    }
    run.part_acc = part_acc.data();
    run.part_idx = part_idx.data();

    // The j-variables, transposed once (per batch when they depend on it): one zero-padded row of ny
    // values per component.
    constexpr int64_t PAD = Run::LN > 16 ? Run::LN : 16;
    run.ystride = ceil_div(run.ny, PAD) * PAD;
    const int64_t nyt = j_batched ? nbatch : 1;
    run.ytbatch = j_batched ? L::J.ncomp * run.ystride : 0;
    std::vector<T> ytbuf;
    if (L::J.ncomp > 0 && run.ny > 0) {
      // + PAD to align, + PAD after the last row: a pack that starts at an unaligned j (ranges) may read up
      // to LN - 1 values past ystride (lanes that are masked or never read).
      ytbuf.assign(std::size_t(nyt * L::J.ncomp * run.ystride + 2 * PAD), T(0));
      T* yt = ytbuf.data();
      yt += (PAD - (reinterpret_cast<std::uintptr_t>(yt) / sizeof(T)) % PAD) % PAD;  // 64-byte aligned
      for (int64_t b = 0; b < nyt; ++b)
        for (int q = 0; q < L::J.n; ++q) {
          const int p = L::J.pos[q], d = L::tab.dim[p];
          for (int c = 0; c < d; ++c) {
            T* dst = yt + b * run.ytbatch + (L::J.off[p] + c) * run.ystride;
            const T* src = run.args[p] + b * run.bstride[p] + c;
            for (int64_t j = 0; j < run.ny; ++j) dst[j] = src[j * d];
          }
        }
      run.yt = yt;
    } else {
      run.yt = nullptr;
    }
    // TILED SqDist: the center (mean of the y_j, in double) and |y_j - cen|^2, one padded row per batch of yt.
    // SqDist(x, y) = |x - cen|^2 + |y - cen|^2 - 2 <x - cen, y - cen> for any cen: around the mean, the
    // norms, and so the rounding error of the expansion, are those of the data's spread, not of its offset.
    std::vector<T> ynbuf, cenbuf;
    run.yn = nullptr;
    run.cen = nullptr;
    if constexpr (Run::TILED && Run::Tm::kind == tile::TILE_SQDIST) {
      if (run.yt) {
        constexpr int D = Run::Tm::D;
        ynbuf.assign(std::size_t(nyt * run.ystride + PAD), T(0));  // + PAD: as yt's
        cenbuf.assign(std::size_t(nyt * D), T(0));
        std::vector<double> yn2(std::size_t(run.ny));  // |y_j - cen|^2 summed in double, rounded once
        for (int64_t b = 0; b < nyt; ++b) {
          const T* y0 = run.yt + b * run.ytbatch + L::J.off[Run::Tm::pj] * run.ystride;
          T* cen = cenbuf.data() + b * D;
          T* dst = ynbuf.data() + b * run.ystride;
          std::fill(yn2.begin(), yn2.end(), 0.0);
          for (int c = 0; c < D; ++c) {
            const T* yc = y0 + c * run.ystride;
            double m = 0.0;
            for (int64_t j = 0; j < run.ny; ++j) m += double(yc[j]);
            cen[c] = T(m / double(run.ny));
            if (!(cen[c] - cen[c] == T(0))) cen[c] = T(0);  // inf or NaN data: no centering
            for (int64_t j = 0; j < run.ny; ++j) {
              const double d = double(yc[j] - cen[c]);
              yn2[std::size_t(j)] += d * d;
            }
          }
          for (int64_t j = 0; j < run.ny; ++j) dst[j] = T(yn2[std::size_t(j)]);
        }
        run.yn = ynbuf.data();
        run.cen = cenbuf.data();
      }
    }

    const int64_t ntasks = int64_t(run.tasks.size()) * run.jchunks;
    if (threaded && ntasks > 1) {
      call->parallel_for(call->pool, ntasks, &Run::task, &run);
    } else {
      for (int64_t t = 0; t < ntasks; ++t) Run::task(&run, t);
    }
    if (const int status = run.failed.load()) return status;

    if (run.jchunks > 1) {  // merge the chunks of each row in chunk order (deterministic)
      for (int64_t i = 0; i < run.nx; ++i) {
        TA* a = run.part_acc + i * run.acc_dim;
        long long* ix = run.part_idx + i * run.idx_dim;
        for (int64_t c = 1; c < run.jchunks; ++c) {
          const int64_t slot = c * run.nx + i;
          run.red.merge(a, ix, run.part_acc + slot * run.acc_dim, run.part_idx + slot * run.idx_dim);
        }
        run.emit(i, a, ix);
      }
    }
  } catch (...) {
    return KERNEL_FAILED;
  }
  return KERNEL_OK;
}

}  // namespace cpu_detail

// Runs Red (instantiated with its TA and F::DIM) of formula F over j, value type T,
// for each batch and block of ranges of the call (kernel_abi.h).
// Returns 0 (KERNEL_OK) or a CpuKernelStatus; never throws. ny = 0 gives the
// finalized empty accumulator: Sum 0, Min +inf, Max -inf, Arg* -1, KMin +inf
// with index -1, LogSumExp -inf, SumSoftMaxWeight NaN. A: the instruction set
// of the packs, by default the widest this translation unit is compiled for
// (part of the symbol name: see CpuRun).
template <class F, class Red, class T, int SCHEME = SCHEME_BLOCK, class A = simd::Arch>
int run_cpu(const kmr_kernel_call* call) {
  return cpu_detail::run_cpu_impl<F, Red, T, SCHEME, A>(call);
}

// The kernel as a kmr_kernel_fn, for tables of precompiled kernels.
template <class F, class Red, class T, int SCHEME = SCHEME_BLOCK, class A = simd::Arch>
inline constexpr kmr_kernel_fn kernel_entry = &run_cpu<F, Red, T, SCHEME, A>;

}  // namespace kmr
