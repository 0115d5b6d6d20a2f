// CPU map-reduce driver (host only): a_i = Red_j F(x_i, y_j, p) for one
// compiled (F, Red, T). Tiles of i rows run as tasks of call->parallel_for;
// each task streams over all j (or one chunk of j when there are too few rows
// to feed the threads) with accumulators of a fixed size: memory O(1) per row.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "../formula/fwd.hpp"
#include "../formula/meta.hpp"
#include "kernel_abi.h"

namespace kmr {

// SCHEME_BLOCK: each block of 256 values of j is reduced into a fresh
// accumulator, merged into a super-block accumulator (64 blocks), itself merged
// into the row's one: three short sums instead of one long one. A float32 Sum
// of 1e6 random values stays within ~3e-7 relative (two levels: ~2e-6, direct:
// ~3e-5); of 1e6 times 0.1, within ~4e-6 (direct: 1e-2). Beyond that, use
// SumKahanReduction or a float64 accumulator.
// SCHEME_DIRECT accumulates into the row's accumulator. Kahan summation is
// its own reduction (SumKahanReduction).
enum SumScheme : int { SCHEME_DIRECT = 0, SCHEME_BLOCK = 1 };

// Return codes of run_cpu.
enum CpuKernelStatus : int {
  KERNEL_OK = 0,
  KERNEL_BAD_CALL = 1,  // null pointers, ABI version, negative sizes, bad k
  KERNEL_FAILED = 2,    // out of memory or an exception inside a task
};

namespace cpu_detail {

constexpr int64_t BLOCK_J = 256;                // j per block accumulator
constexpr int64_t SUPER_J = 64 * BLOCK_J;       // j per super-block accumulator (SCHEME_BLOCK)
constexpr int64_t MAX_GROUP_ROWS = 16;          // i rows that share one pass over a j block
constexpr std::size_t GROUP_ACC_BYTES = 16384;  // accumulators of one row group at most (unless 1 row is more)
constexpr int64_t TASKS_PER_THREAD = 4;
constexpr int64_t MIN_J_PER_CHUNK = 4 * BLOCK_J;               // j is split only into chunks of at least this
constexpr std::size_t PARTIALS_BYTES = std::size_t(16) << 20;  // and only if the chunks' accumulators fit

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// TA and DIMF of an instantiated reduction Red<TA, DIMF>.
template <class R>
struct RedTraits;
template <template <class, int> class R, class TA, int D>
struct RedTraits<R<TA, D>> {
  using acc_type = TA;
  static constexpr int DIMF = D;
};

// Positions of F's variables, by category, at compile time.
template <class F>
struct Layout {
  static constexpr VarTable tab = var_table<F>();
  static constexpr int NV = tab.n;
  static constexpr int NV1 = NV > 0 ? NV : 1;  // array size
  struct List {
    int n = 0;
    int pos[NV1] = {};
  };
  static constexpr List list(int cat) {
    List l;
    for (int p = 0; p < NV; ++p)
      if (tab.dim[p] > 0 && tab.cat[p] == cat) l.pos[l.n++] = p;
    return l;
  }
  static constexpr List I = list(CAT_I);
  static constexpr List J = list(CAT_J);
  static constexpr List P = list(CAT_PARAM);
};

// n values on the stack when n <= N, else on the heap.
template <class X, std::size_t N>
class SmallBuf {
 public:
  explicit SmallBuf(std::size_t n) : p_(local_) {
    if (n > N) {
      heap_.resize(n);
      p_ = heap_.data();
    }
  }
  SmallBuf(const SmallBuf&) = delete;
  SmallBuf& operator=(const SmallBuf&) = delete;
  X* data() { return p_; }

 private:
  X local_[N];
  std::vector<X> heap_;
  X* p_;
};

template <class F, class Red, class T, int SCHEME>
struct CpuRun {
  using L = Layout<F>;
  using TA = typename RedTraits<Red>::acc_type;

  Red red;
  const T* args[L::NV1];
  T* out;
  int64_t nx, ny;
  int64_t acc_dim, idx_dim, out_dim;
  int64_t rows_per_tile, jchunks, j_per_chunk, group_rows;
  TA* part_acc;         // [jchunks][nx][acc_dim] when jchunks > 1
  long long* part_idx;  // [jchunks][nx][idx_dim]
  std::atomic<int> failed{0};

  // a (+)= Red_{j in [j0, j1)} F(v with the j-variables at row j)
  void reduce_range(TA* a, long long* ix, const T** v, int64_t j0, int64_t j1) const {
    T f[F::DIM];
    for (int64_t j = j0; j < j1; ++j) {
      for (int q = 0; q < L::J.n; ++q) {
        const int p = L::J.pos[q];
        v[p] = args[p] + j * L::tab.dim[p];
      }
      F::template eval<T>(f, v);
      red.template accumulate<T>(a, ix, f, static_cast<long long>(j));
    }
  }

  void run_task(int64_t t) {
    const int64_t tile = t / jchunks, chunk = t % jchunks;
    const int64_t i0 = tile * rows_per_tile, i1 = i0 + rows_per_tile < nx ? i0 + rows_per_tile : nx;
    const int64_t j0 = chunk * j_per_chunk, j1 = j0 + j_per_chunk < ny ? j0 + j_per_chunk : ny;
    const int64_t G = group_rows;
    constexpr bool BLOCK = SCHEME == SCHEME_BLOCK;
    SmallBuf<TA, 256> acc(G * acc_dim), sacc(BLOCK ? G * acc_dim : 0), bacc(acc_dim);
    SmallBuf<long long, 128> idx(G * idx_dim), sidx(BLOCK ? G * idx_dim : 0), bidx(idx_dim);
    const T* v[L::NV1] = {};
    for (int q = 0; q < L::P.n; ++q) v[L::P.pos[q]] = args[L::P.pos[q]];

    for (int64_t g0 = i0; g0 < i1; g0 += G) {
      const int64_t ng = g0 + G < i1 ? G : i1 - g0;
      for (int64_t r = 0; r < ng; ++r) red.init(acc.data() + r * acc_dim, idx.data() + r * idx_dim);
      const int64_t super = BLOCK ? SUPER_J : j1 - j0;  // DIRECT: one pass over [j0, j1)
      for (int64_t sb = j0; sb < j1; sb += super) {
        const int64_t sb1 = sb + super < j1 ? sb + super : j1;
        if constexpr (BLOCK)
          for (int64_t r = 0; r < ng; ++r) red.init(sacc.data() + r * acc_dim, sidx.data() + r * idx_dim);
        for (int64_t jb = sb; jb < sb1; jb += BLOCK_J) {
          const int64_t jb1 = jb + BLOCK_J < sb1 ? jb + BLOCK_J : sb1;
          for (int64_t r = 0; r < ng; ++r) {
            for (int q = 0; q < L::I.n; ++q) {
              const int p = L::I.pos[q];
              v[p] = args[p] + (g0 + r) * L::tab.dim[p];
            }
            if constexpr (BLOCK) {
              red.init(bacc.data(), bidx.data());
              reduce_range(bacc.data(), bidx.data(), v, jb, jb1);
              red.merge(sacc.data() + r * acc_dim, sidx.data() + r * idx_dim, bacc.data(), bidx.data());
            } else {
              reduce_range(acc.data() + r * acc_dim, idx.data() + r * idx_dim, v, jb, jb1);
            }
          }
        }
        if constexpr (BLOCK)
          for (int64_t r = 0; r < ng; ++r)
            red.merge(acc.data() + r * acc_dim, idx.data() + r * idx_dim, sacc.data() + r * acc_dim,
                      sidx.data() + r * idx_dim);
      }
      for (int64_t r = 0; r < ng; ++r) {
        const TA* a = acc.data() + r * acc_dim;
        const long long* ix = idx.data() + r * idx_dim;
        const int64_t i = g0 + r;
        if (jchunks == 1) {
          red.template finalize<T>(out + i * out_dim, a, ix);
        } else {
          const int64_t slot = chunk * nx + i;
          for (int64_t s = 0; s < acc_dim; ++s) part_acc[slot * acc_dim + s] = a[s];
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
    } catch (...) {
      self->failed.store(1);
    }
  }
};

template <class F, class Red, class T, int SCHEME>
int run_cpu_impl(const kmr_kernel_call* call) {
  using L = Layout<F>;
  using Run = CpuRun<F, Red, T, SCHEME>;
  using TA = typename Run::TA;
  static_assert(RedTraits<Red>::DIMF == F::DIM, "kmr: reduction instantiated with another dim than the formula's");

  if (!call || call->abi_version != KMR_KERNEL_ABI_VERSION) return KERNEL_BAD_CALL;
  if (call->nx < 0 || call->ny < 0 || call->k < 0 || call->k > 0x7fffffff) return KERNEL_BAD_CALL;
  if (call->nx == 0) return KERNEL_OK;

  Run run;
  run.red = Red{};
  run.red.k = static_cast<int>(call->k);
  run.nx = call->nx;
  run.ny = call->ny;
  run.acc_dim = run.red.acc_dim();
  run.idx_dim = run.red.idx_dim();
  run.out_dim = run.red.out_dim();
  run.out = static_cast<T*>(call->out);
  if (run.out_dim > 0 && !run.out) return KERNEL_BAD_CALL;
  if (L::NV > 0 && !call->args) return KERNEL_BAD_CALL;
  for (int p = 0; p < L::NV; ++p) {
    run.args[p] = static_cast<const T*>(call->args[p]);
    const bool needed = L::tab.dim[p] > 0 && (L::tab.cat[p] != CAT_J || run.ny > 0);
    if (needed && !run.args[p]) return KERNEL_BAD_CALL;
  }

  // Tiling: a few tasks per thread; rows first, j chunks when there are fewer rows than tasks.
  const bool threaded = call->parallel_for && call->num_threads > 1;
  const int64_t target = threaded ? int64_t(call->num_threads) * TASKS_PER_THREAD : 1;
  const int64_t row_tiles0 = run.nx < target ? run.nx : target;
  run.rows_per_tile = ceil_div(run.nx, row_tiles0);
  const int64_t row_tiles = ceil_div(run.nx, run.rows_per_tile);
  const std::size_t row_bytes = std::size_t(run.acc_dim) * sizeof(TA) + std::size_t(run.idx_dim) * sizeof(long long);
  run.jchunks = 1;
  run.j_per_chunk = run.ny;
  if (run.nx < target && run.ny >= 2 * MIN_J_PER_CHUNK) {
    int64_t chunks = ceil_div(target, row_tiles);
    if (chunks > run.ny / MIN_J_PER_CHUNK) chunks = run.ny / MIN_J_PER_CHUNK;
    const int64_t by_mem = int64_t(PARTIALS_BYTES / (std::size_t(run.nx) * row_bytes + 1));
    if (chunks > by_mem) chunks = by_mem;
    if (chunks > 1) {
      run.j_per_chunk = ceil_div(ceil_div(run.ny, chunks), BLOCK_J) * BLOCK_J;  // block-aligned
      run.jchunks = ceil_div(run.ny, run.j_per_chunk);
    }
  }
  const int64_t by_bytes = row_bytes ? int64_t(GROUP_ACC_BYTES / row_bytes) : MAX_GROUP_ROWS;
  run.group_rows = by_bytes < 1 ? 1 : (by_bytes > MAX_GROUP_ROWS ? MAX_GROUP_ROWS : by_bytes);

  try {
    std::vector<TA> part_acc;
    std::vector<long long> part_idx;
    if (run.jchunks > 1) {
      part_acc.resize(std::size_t(run.jchunks * run.nx * run.acc_dim));
      part_idx.resize(std::size_t(run.jchunks * run.nx * run.idx_dim));
    }
    run.part_acc = part_acc.data();
    run.part_idx = part_idx.data();

    const int64_t ntasks = row_tiles * run.jchunks;
    if (threaded && ntasks > 1) {
      call->parallel_for(call->pool, ntasks, &Run::task, &run);
    } else {
      for (int64_t t = 0; t < ntasks; ++t) Run::task(&run, t);
    }
    if (run.failed.load()) return KERNEL_FAILED;

    if (run.jchunks > 1) {  // merge the chunks of each row in chunk order (deterministic)
      for (int64_t i = 0; i < run.nx; ++i) {
        TA* a = run.part_acc + i * run.acc_dim;
        long long* ix = run.part_idx + i * run.idx_dim;
        for (int64_t c = 1; c < run.jchunks; ++c) {
          const int64_t slot = c * run.nx + i;
          run.red.merge(a, ix, run.part_acc + slot * run.acc_dim, run.part_idx + slot * run.idx_dim);
        }
        run.red.template finalize<T>(run.out + i * run.out_dim, a, ix);
      }
    }
  } catch (...) {
    return KERNEL_FAILED;
  }
  return KERNEL_OK;
}

}  // namespace cpu_detail

// Runs Red (instantiated with its TA and F::DIM) of formula F over j, value type T.
// Returns 0 (KERNEL_OK) or a CpuKernelStatus; never throws. ny = 0 gives the
// finalized empty accumulator: Sum 0, Min +inf, Max -inf, Arg* -1, KMin +inf
// with index -1, LogSumExp -inf, SumSoftMaxWeight NaN.
template <class F, class Red, class T, int SCHEME = SCHEME_BLOCK>
int run_cpu(const kmr_kernel_call* call) {
  return cpu_detail::run_cpu_impl<F, Red, T, SCHEME>(call);
}

// The kernel as a kmr_kernel_fn, for tables of precompiled kernels.
template <class F, class Red, class T, int SCHEME = SCHEME_BLOCK>
inline constexpr kmr_kernel_fn kernel_entry = &run_cpu<F, Red, T, SCHEME>;

}  // namespace kmr
