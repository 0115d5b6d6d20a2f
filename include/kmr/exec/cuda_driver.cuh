// CUDA map-reduce driver (device code for nvcc and NVRTC): a_i = Red_j F(x_i, y_j, p)
// for one compiled (F, Red, T, SCHEME), from the same formula and reduction
// headers as the CPU driver. Host side: src/cuda/launch.cpp.
//
// One thread per output row i. A block stages tile_rows rows of every
// j-variable in shared memory (one packed row per j, padded to 16 bytes so a
// row is read with vector loads; every thread reads the same row: broadcast),
// then each thread evaluates F on its row against them and accumulates.
// blockIdx.y picks a chunk of j (split-j, when there are too few rows to fill
// the GPU): chunks store their accumulators in part_acc, and merge_rows
// combines them in chunk order with the reduction's merge (deterministic)
// before finalizing.
//
// SCHEME_BLOCK on summing reductions: each tile is reduced into a fresh
// accumulator, merged into a super-block one every SUPER_TILES tiles, itself
// merged into the row's, like the CPU driver's three levels. A float32 Sum
// goes further, as the CPU's PackSum (pack_reduce.hpp) does per lane: runs of
// RUN_VALUES values summed plainly, each run added to the tile's sum with its
// rounding error gathered (cascaded summation), the tile's sum and error added
// in double over the whole range of j, rounded once. Min/Max/KMin are exact in
// any order and accumulate directly.
#pragma once
#include "../formula/formula.hpp"
#include "../reduction/reduction.hpp"
#include "cuda_abi.h"

namespace kmr {
namespace cuda_detail {

constexpr int SCHEME_BLOCK_ = 1;  // = kmr::SCHEME_BLOCK (cpu_driver.hpp is host-only)
constexpr int SUPER_TILES = 64;
constexpr int RUN_VALUES = 4;  // runs of 4 as on the CPU: 4 x 0.1 is exact in float32

// A plain Sum (not SumKahan, not the LogSumExp family): the compensated float32 scheme applies.
template <class R>
struct IsPlainSum {
  static constexpr bool value = false;
};
template <class TA, int D>
struct IsPlainSum<SumReduction<TA, D>> {
  static constexpr bool value = true;
};

// ---- compile-time loops ------------------------------------------------------
template <int I>
struct IntC {
  static constexpr int value = I;
};
template <int... Is>
struct ISeq {};
template <int N, int... Is>
struct MakeSeq {
  using type = typename MakeSeq<N - 1, N - 1, Is...>::type;
};
template <int... Is>
struct MakeSeq<0, Is...> {
  using type = ISeq<Is...>;
};
template <class Fn, int... Is>
__device__ KMR_INLINE void static_for_impl(Fn& fn, ISeq<Is...>) {
  (fn(IntC<Is>{}), ...);
}
// fn(IntC<0>{}), ..., fn(IntC<N-1>{})
template <int N, class Fn>
__device__ KMR_INLINE void static_for(Fn&& fn) {
  static_for_impl(fn, typename MakeSeq<N>::type{});
}

// ---- the variables of F, as compile-time scalars ------------------------------
constexpr int offset_in_cat(const VarTable& t, int p) {  // dims of the earlier variables of p's category
  int off = 0;
  for (int q = 0; q < p; ++q)
    if (t.cat[q] == t.cat[p]) off += t.dim[q];
  return off;
}
constexpr int cat_dims(const VarTable& t, int cat) {
  int d = 0;
  for (int q = 0; q < t.n; ++q)
    if (t.cat[q] == cat) d += t.dim[q];
  return d;
}

template <class F>
struct Vars {
  static constexpr VarTable tab = var_table<F>();
  static constexpr int NV = tab.n;
  static constexpr int DI = cat_dims(tab, CAT_I);
  static constexpr int DJ = cat_dims(tab, CAT_J);
  static constexpr int DP = cat_dims(tab, CAT_PARAM);
};
template <class F, int P>
struct VarAt {
  static constexpr int dim = Vars<F>::tab.dim[P];
  static constexpr int cat = Vars<F>::tab.cat[P];
  static constexpr int off = offset_in_cat(Vars<F>::tab, P);
};
// Row stride of the j-tile in values of T (the host computes the same from cuda_abi.h).
template <class F, class T>
struct TileRow {
  static constexpr int stride = KMR_CUDA_TILE_STRIDE(Vars<F>::DJ, int(sizeof(T)));
};

// ---- what the driver must know of a reduction ----------------------------------
// Kind by base class: 2 = K smallest (runtime K), 1 = min/max (exact), 0 = summing.
template <class TA, int D, int OUT>
KMR_HOST_DEVICE constexpr int reduction_kind(const red::KMinBase<TA, D, OUT>*) {
  return 2;
}
template <class TA, int D, bool IS_MAX, int OUT>
KMR_HOST_DEVICE constexpr int reduction_kind(const red::MinMax<TA, D, IS_MAX, OUT>*) {
  return 1;
}
KMR_HOST_DEVICE constexpr int reduction_kind(const void*) { return 0; }

template <class R>
struct RedInfo;
template <template <class, int> class R, class TA_, int D>
struct RedInfo<R<TA_, D>> {
  using TA = TA_;
  static constexpr int DIMF = D;
  static constexpr int KIND = reduction_kind(static_cast<const R<TA_, D>*>(nullptr));
  static constexpr bool RUNTIME_K = KIND == 2;
  static constexpr bool EXACT = KIND != 0;  // the result does not depend on the order: no blocking
  // Slots of a per-thread accumulator: every fixed-size reduction uses at most
  // 2 D + 2 (Kahan: 2 D, SumSoftMaxWeight: D + 1); KMin-like: K D for K <= KMIN_LOCAL.
  static constexpr int ACC_CAP = RUNTIME_K ? KMR_CUDA_KMIN_LOCAL * D : 2 * D + 2;
  static constexpr int IDX_CAP = RUNTIME_K ? KMR_CUDA_KMIN_LOCAL * D : D;
};

// ---- the kernels -------------------------------------------------------------
// Stages j rows [jt, jt + rows) of every j-variable of batch b into tile (coalesced reads).
template <class F, class T>
__device__ KMR_INLINE void load_tile(T* tile, const kmr_cuda_params& prm, long long b, long long jt, int rows) {
  constexpr int S = TileRow<F, T>::stride;
  static_for<Vars<F>::NV>([&](auto pc) {
    constexpr int P = decltype(pc)::value;
    using A = VarAt<F, P>;
    if constexpr (A::cat == CAT_J && A::dim > 0) {
      const T* src = static_cast<const T*>(prm.args[P]) + b * prm.batch_stride[P] + jt * A::dim;
      const int n = rows * A::dim;
      for (int e = threadIdx.x; e < n; e += blockDim.x) {
        const int r = e / A::dim, c = e - r * A::dim;
        tile[r * S + A::off + c] = src[e];
      }
    }
  });
}

// Row i's accumulator is complete: writes it finalized, or as a state (indices made global either way).
template <class Red, class T, class TA>
__device__ KMR_INLINE void emit_row(const kmr_cuda_params& prm, const Red& red, long long i, TA* acc, long long* idx) {
  red::shift_indices(idx, red.idx_dim(), prm.idx_offset);
  if (prm.state_mode) {
    TA* sa = static_cast<TA*>(prm.out) + i * red.acc_dim();
    for (int s = 0; s < red.acc_dim(); ++s) sa[s] = acc[s];
    for (int s = 0; s < red.idx_dim(); ++s) prm.out_idx[i * red.idx_dim() + s] = idx[s];
  } else {
    red.template finalize<T>(static_cast<T*>(prm.out) + i * red.out_dim(), prm.out_idx + i * red.out_idx_dim(), acc,
                             idx);
  }
}

// The map-reduce. Shared memory: tile_rows * TileRow<F, T>::stride values of T.
template <class F, class Red, class T, int SCHEME>
__device__ KMR_INLINE void map_reduce(const kmr_cuda_params& prm) {
  using RI = RedInfo<Red>;
  using TA = typename RI::TA;
  using VS = Vars<F>;
  static_assert(RI::DIMF == F::DIM, "kmr: reduction instantiated with another dim than the formula's");
  constexpr int NV1 = VS::NV > 0 ? VS::NV : 1;
  constexpr int S = TileRow<F, T>::stride;
  constexpr bool BLOCK = SCHEME == SCHEME_BLOCK_ && !RI::EXACT;
  extern __shared__ __align__(16) unsigned char kmr_shared[];
  T* tile = reinterpret_cast<T*>(kmr_shared);

  Red red;
  red.k = static_cast<int>(prm.k);
  // Rows: dense, blockDim.x rows of batch blockIdx.z; sparse, the rows of block table entry blockIdx.x.
  const long long* blk = prm.blocks ? prm.blocks + 4 * static_cast<long long>(blockIdx.x) : nullptr;
  const long long b = blk ? 0 : static_cast<long long>(blockIdx.z);
  const long long i = blk ? blk[0] + threadIdx.x : static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  const bool active = i < (blk ? blk[1] : prm.nx);
  const long long j0 = static_cast<long long>(blockIdx.y) * prm.j_per_chunk;
  const long long j1 = j0 + prm.j_per_chunk < prm.ny ? j0 + prm.j_per_chunk : prm.ny;

  // This row's i-variables and the parameters, in registers.
  T xi[VS::DI > 0 ? VS::DI : 1];
  T pm[VS::DP > 0 ? VS::DP : 1];
  const T* v[NV1];
  static_for<VS::NV>([&](auto pc) {
    constexpr int P = decltype(pc)::value;
    using A = VarAt<F, P>;
    if constexpr (A::dim > 0 && A::cat == CAT_I) {
      const T* src = static_cast<const T*>(prm.args[P]) + b * prm.batch_stride[P] + (active ? i : 0) * A::dim;
      for (int c = 0; c < A::dim; ++c) xi[A::off + c] = active ? src[c] : T(0);
      v[P] = xi + A::off;
    } else if constexpr (A::dim > 0 && A::cat == CAT_PARAM) {
      const T* src = static_cast<const T*>(prm.args[P]) + b * prm.batch_stride[P];
      for (int c = 0; c < A::dim; ++c) pm[A::off + c] = src[c];
      v[P] = pm + A::off;
    } else {
      v[P] = nullptr;  // j-variables: set per row of the tile
    }
  });

  const long long row = b * prm.nx + i;  // in the output and the partials
  const long long slot = static_cast<long long>(blockIdx.y) * prm.nbatch * prm.nx + row;
  TA acc_local[RI::ACC_CAP];
  long long idx_local[RI::IDX_CAP > 0 ? RI::IDX_CAP : 1];
  TA* acc = acc_local;
  long long* idx = idx_local;
  if constexpr (RI::RUNTIME_K) {
    if (prm.acc_in_partials && active) {
      acc = static_cast<TA*>(prm.part_acc) + slot * red.acc_dim();
      idx = prm.part_idx + slot * red.idx_dim();
    }
  }
  TA bacc[BLOCK ? RI::ACC_CAP : 1], sacc[BLOCK ? RI::ACC_CAP : 1];
  long long bidx[BLOCK && RI::IDX_CAP > 0 ? RI::IDX_CAP : 1], sidx[BLOCK && RI::IDX_CAP > 0 ? RI::IDX_CAP : 1];
  if (active) {
    red.init(acc, idx);
    if constexpr (BLOCK) red.init(sacc, sidx);
  }

  // The compensated float32 Sum (see the file's comment): run sums, the tile's sum and error, the range's sum.
  constexpr bool COMP = BLOCK && IsPlainSum<Red>::value && sizeof(TA) < sizeof(double);
  TA cr[COMP ? F::DIM : 1], cs[COMP ? F::DIM : 1], cc[COMP ? F::DIM : 1];
  double ct[COMP ? F::DIM : 1];
  if constexpr (COMP)
    for (int d = 0; d < F::DIM; ++d) {
      cr[d] = cs[d] = cc[d] = TA(0);
      ct[d] = 0.0;
    }
  // Points the j-variables at row r of the tile.
  auto set_j_row = [&](int r) {
    static_for<VS::NV>([&](auto pc) {
      constexpr int P = decltype(pc)::value;
      using A = VarAt<F, P>;
      if constexpr (A::dim > 0 && A::cat == CAT_J) v[P] = tile + r * S + A::off;
    });
  };
  int tiles_in_super = 0;
  // The intervals of j: this chunk of [0, ny), or the block's list (the same for every thread of the block:
  // the loops and their __syncthreads stay uniform).
  const long long s0 = blk ? blk[2] : 0, s1 = blk ? blk[3] : 1;
  for (long long s = s0; s < s1; ++s) {
    const long long ja = blk ? prm.redranges[2 * s] : j0, jb = blk ? prm.redranges[2 * s + 1] : j1;
    for (long long jt = ja; jt < jb; jt += prm.tile_rows) {
      const int rows = static_cast<int>(jb - jt < prm.tile_rows ? jb - jt : prm.tile_rows);
      __syncthreads();  // the previous tile is consumed
      load_tile<F, T>(tile, prm, b, jt, rows);
      __syncthreads();
      if (!active) continue;
      if constexpr (COMP) {
        for (int r = 0; r < rows; ++r) {
          set_j_row(r);
          T f[F::DIM];
          F::template eval<T>(f, v);
          for (int d = 0; d < F::DIM; ++d) cr[d] += f[d];
          if ((r & (RUN_VALUES - 1)) == RUN_VALUES - 1 || r == rows - 1)
            for (int d = 0; d < F::DIM; ++d) {  // u = s + r exactly when the error c += (s - u) + r is added
              const TA u = cs[d] + cr[d];
              cc[d] += (cs[d] - u) + cr[d];
              cs[d] = u;
              cr[d] = TA(0);
            }
        }
        for (int d = 0; d < F::DIM; ++d) {  // infinities make c NaN while s is right: a NaN c is dropped
          ct[d] += static_cast<double>(cs[d]);
          if (cc[d] == cc[d]) ct[d] += static_cast<double>(cc[d]);
          cs[d] = cc[d] = TA(0);
        }
        continue;
      }
      TA* a = acc;
      long long* ix = idx;
      if constexpr (BLOCK) {
        red.init(bacc, bidx);
        a = bacc;
        ix = bidx;
      }
      for (int r = 0; r < rows; ++r) {
        set_j_row(r);
        T f[F::DIM];
        F::template eval<T>(f, v);
        red.template accumulate<T>(a, ix, f, jt + r);
      }
      if constexpr (BLOCK) {
        red.merge(sacc, sidx, bacc, bidx);
        if (++tiles_in_super == SUPER_TILES) {
          red.merge(acc, idx, sacc, sidx);
          red.init(sacc, sidx);
          tiles_in_super = 0;
        }
      }
    }
  }
  if (!active) return;
  if constexpr (COMP) {
    for (int d = 0; d < F::DIM; ++d) acc[d] += static_cast<TA>(ct[d]);
  } else if constexpr (BLOCK) {
    red.merge(acc, idx, sacc, sidx);
  }

  if (!prm.use_partials) {
    emit_row<Red, T>(prm, red, row, acc, idx);
  } else if (!prm.acc_in_partials) {
    TA* pa = static_cast<TA*>(prm.part_acc) + slot * red.acc_dim();
    for (int s = 0; s < red.acc_dim(); ++s) pa[s] = acc[s];
    if (red.idx_dim() > 0) {
      long long* pi = prm.part_idx + slot * red.idx_dim();
      for (int s = 0; s < red.idx_dim(); ++s) pi[s] = idx[s];
    }
  }
}

// Merges the prm.chunks partial accumulators of each row (chunk order) and finalizes.
template <class F, class Red, class T>
__device__ KMR_INLINE void merge_rows(const kmr_cuda_params& prm) {
  using TA = typename RedInfo<Red>::TA;
  const long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;  // row of all batches
  const long long nrows = prm.nbatch * prm.nx;
  if (i >= nrows) return;
  Red red;
  red.k = static_cast<int>(prm.k);
  const int ad = red.acc_dim(), id = red.idx_dim();
  TA* part = static_cast<TA*>(prm.part_acc);
  TA* a = part + i * ad;
  long long* ix = id > 0 ? prm.part_idx + i * id : prm.part_idx;
  if constexpr (IsPlainSum<Red>::value && sizeof(TA) < sizeof(double)) {
    // The chunks' sums (each rounded once) added in double, rounded once more: hundreds of chunks
    // (split j) summed in float32 would lose what the compensated tiles kept.
    constexpr int D = RedInfo<Red>::DIMF;
    double t[D];
    for (int d = 0; d < D; ++d) t[d] = static_cast<double>(a[d]);
    for (int c = 1; c < prm.chunks; ++c)
      for (int d = 0; d < D; ++d) t[d] += static_cast<double>(part[(static_cast<long long>(c) * nrows + i) * ad + d]);
    for (int d = 0; d < D; ++d) a[d] = static_cast<TA>(t[d]);
  } else {
    for (int c = 1; c < prm.chunks; ++c) {
      const long long s = static_cast<long long>(c) * nrows + i;
      red.merge(a, ix, part + s * ad, id > 0 ? prm.part_idx + s * id : prm.part_idx);
    }
  }
  emit_row<Red, T>(prm, red, i, a, ix);
}

}  // namespace cuda_detail

}  // namespace kmr
