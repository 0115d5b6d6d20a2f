// The CUDA device code without a GPU: include/kmr/exec/cuda_driver.cuh compiled
// as host C++ (CUDA keywords defined away), each block's threads run as
// std::threads with a barrier for __syncthreads, with the launch plans of
// src/cuda/plan.hpp. Checks the tiling, the split-j chunks, the partials and
// their merge, KMin above the local capacity, empty sides, against the CPU
// driver on the same formulas (the oracle).
#include <gtest/gtest.h>

#include <cmath>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

// ---- CUDA as host C++ ------------------------------------------------------------
struct KmrDim3 {
  unsigned x = 0, y = 0, z = 0;
};
thread_local KmrDim3 threadIdx, blockIdx;
KmrDim3 blockDim, gridDim;
namespace kmr {
namespace cuda_detail {  // where the driver's block-scope `extern __shared__` declaration lives
alignas(16) unsigned char kmr_shared[1 << 16];  // one block runs at a time
}  // namespace cuda_detail
}  // namespace kmr

class Barrier {
 public:
  void reset(int n) {
    n_ = n;
    waiting_ = 0;
  }
  void wait() {
    std::unique_lock<std::mutex> lock(mu_);
    const unsigned long gen = gen_;
    if (++waiting_ == n_) {
      waiting_ = 0;
      ++gen_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return gen_ != gen; });
    }
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int n_ = 0, waiting_ = 0;
  unsigned long gen_ = 0;
};
Barrier kmr_barrier;

inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }

#define __CUDACC__ 1
#define __host__
#define __device__
#define __global__
#define __shared__
#define __forceinline__ inline
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(n)
#define __syncthreads() kmr_barrier.wait()

#include "kmr/exec/cuda_driver.cuh"
#undef __CUDACC__

#include "cuda/plan.hpp"
#include "kmr/exec/cpu_driver.hpp"

namespace {

using kmr::Var;
using kmr::cuda::LaunchPlan;
using kmr::cuda::LaunchShape;

using Kernel = void (*)(kmr_cuda_params);

// Runs grid (gx, gy, gz) of `block` threads, one block at a time.
void emulate(Kernel k, kmr_cuda_params prm, long long gx, long long gy, int block, long long gz = 1) {
  blockDim = {unsigned(block), 1, 1};
  gridDim = {unsigned(gx), unsigned(gy), unsigned(gz)};
  for (long long bz = 0; bz < gz; ++bz)
    for (long long by = 0; by < gy; ++by)
      for (long long bx = 0; bx < gx; ++bx) {
        kmr_barrier.reset(block);
        std::vector<std::thread> threads;
        for (int t = 0; t < block; ++t)
          threads.emplace_back([=] {
            threadIdx = {unsigned(t), 0, 0};
            blockIdx = {unsigned(bx), unsigned(by), unsigned(bz)};
            k(prm);
          });
        for (auto& th : threads) th.join();
      }
}

template <class F, class R, class T, int S>
void map_reduce_entry(kmr_cuda_params prm) {
  kmr::cuda_detail::map_reduce<F, R, T, S>(prm);
}
template <class F, class R, class T>
void merge_entry(kmr_cuda_params prm) {
  kmr::cuda_detail::merge_rows<F, R, T>(prm);
}

struct Case {
  long long nx, ny;
  int max_threads;  // block size the plan picks (small: many blocks, short tiles)
  int sms;          // fewer SMs: fewer chunks
  long long k;
};

// Runs F/R on the emulated GPU with the plan of `c`, and with the CPU driver; compares. The CPU driver
// evaluates packs with xsimd's vector math (an ulp from std::sin), hence kSelect for Min/Max/KMin values.
template <class F, template <class, int> class Red, class T>
// state: both write the unfinalized accumulators (KMR_MODE_STATE / state_mode), indices + offset.
// fill: one value per variable for all its entries (empty: uniform in [-1, 1]). exact: the expected
// value of every output entry instead of the CPU driver's.
void check(const Case& c, const char* what, double tol, bool state = false, long long offset = 0,
           const std::vector<double>& fill = {}, const double* exact = nullptr) {
  using R = Red<T, F::DIM>;
  constexpr kmr::VarTable tab = kmr::var_table<F>();
  std::mt19937 gen(42);
  std::uniform_real_distribution<double> unif(-1, 1);
  std::vector<std::vector<T>> data(tab.n);
  std::vector<const void*> args(tab.n);
  int dj = 0;
  for (int p = 0; p < tab.n; ++p) {
    const long long rows = tab.cat[p] == 0 ? c.nx : tab.cat[p] == 1 ? c.ny : 1;
    data[p].resize(std::size_t(rows * tab.dim[p]));
    for (auto& v : data[p]) v = fill.empty() ? T(unif(gen)) : T(fill[std::size_t(p)]);
    args[p] = data[p].data();
    if (tab.cat[p] == 1) dj += tab.dim[p];
  }
  R red{};
  red.k = int(c.k);
  const int out_dim = state ? red.acc_dim() : red.out_dim();  // R accumulates in T here
  const int out_idx_dim = state ? red.idx_dim() : red.out_idx_dim();

  // CPU oracle
  std::vector<T> want(std::size_t(c.nx * out_dim) + 1);
  std::vector<long long> want_idx(std::size_t(c.nx * out_idx_dim) + 1, -777);
  kmr_kernel_call call{};
  call.out_idx = reinterpret_cast<int64_t*>(want_idx.data());
  call.abi_version = KMR_KERNEL_ABI_VERSION;
  call.nx = c.nx;
  call.ny = c.ny;
  call.k = c.k;
  call.args = args.data();
  call.out = want.data();
  call.mode = state ? KMR_MODE_STATE : KMR_MODE_FINAL;
  call.idx_offset = offset;
  ASSERT_EQ((kmr::run_cpu<F, R, T>(&call)), 0);

  // emulated GPU
  LaunchShape s;
  s.nx = c.nx;
  s.ny = c.ny;
  s.dj = dj;
  s.dimf = F::DIM;
  s.runtime_k = kmr::cuda_detail::RedInfo<R>::RUNTIME_K;
  s.k = c.k;
  s.value_bytes = s.acc_bytes = sizeof(T);
  s.max_threads = c.max_threads;
  s.sms = c.sms;
  s.blocks_per_sm = 1;
  s.max_tile_bytes = sizeof(kmr::cuda_detail::kmr_shared);
  const LaunchPlan p = kmr::cuda::plan_launch(s);
  ASSERT_TRUE(p.error.empty()) << p.error;
  kmr_cuda_params prm = kmr::cuda::plan_params(s, p);
  for (int q = 0; q < tab.n; ++q) prm.args[q] = args[q];
  std::vector<T> got(std::size_t(c.nx * out_dim) + 1, T(-12345));
  std::vector<long long> got_idx(std::size_t(c.nx * out_idx_dim) + 1, -777);  // the canary of want_idx
  prm.out = got.data();
  prm.out_idx = got_idx.data();
  prm.state_mode = state ? 1 : 0;
  prm.idx_offset = offset;
  const std::size_t rows = p.use_partials ? std::size_t(p.chunks * c.nx) : 0;
  std::vector<T> part_acc(rows * std::size_t(p.acc_slots));
  std::vector<long long> part_idx(rows * std::size_t(p.idx_slots));
  prm.part_acc = part_acc.data();
  prm.part_idx = part_idx.data();
  emulate(&map_reduce_entry<F, R, T, 1>, prm, p.blocks_x, p.chunks, p.block);
  if (p.use_partials) emulate(&merge_entry<F, R, T>, prm, p.blocks_x, 1, p.block);

  SCOPED_TRACE(::testing::Message() << what << " nx=" << c.nx << " ny=" << c.ny << " block=" << p.block
                                    << " tile=" << p.tile_rows << " chunks=" << p.chunks << " k=" << c.k
                                    << " partials=" << p.use_partials << " acc_in_partials=" << p.acc_in_partials);
  EXPECT_EQ(got_idx, want_idx);  // indices: exact, int64
  for (std::size_t e = 0; e + 1 < want.size(); ++e) {
    if (exact && std::isinf(*exact)) {
      EXPECT_EQ(double(got[e]), *exact) << "emulated GPU at " << e;
      EXPECT_EQ(double(want[e]), *exact) << "CPU at " << e;
    } else if (exact) {
      EXPECT_NEAR(double(got[e]), *exact, tol * std::fabs(*exact)) << "emulated GPU at " << e;
      EXPECT_NEAR(double(want[e]), *exact, tol * std::fabs(*exact)) << "CPU at " << e;
    } else if (std::isnan(double(want[e]))) {
      EXPECT_TRUE(std::isnan(double(got[e]))) << "at " << e;
    } else if (std::isinf(double(want[e]))) {
      EXPECT_EQ(got[e], want[e]) << "at " << e;
    } else {
      EXPECT_NEAR(double(got[e]), double(want[e]), tol * (1 + std::fabs(double(want[e])))) << "at " << e;
    }
  }
}

// Gaussian D=3 times b (dim 2), a vector formula (dim 2), a scalar one.
using X3 = Var<1, 3, 0>;
using Y3 = Var<2, 3, 1>;
using Gauss = kmr::Mult<kmr::Exp<kmr::Minus<kmr::Mult<Var<0, 1, 2>, kmr::SqDist<X3, Y3>>>>, Var<3, 2, 1>>;
using Vec = kmr::Sin<kmr::Subtract<Var<0, 2, 0>, kmr::Mult<kmr::IntCst<2>, Var<1, 2, 1>>>>;
using Scal = kmr::Minus<kmr::SqDist<Var<0, 2, 0>, Var<1, 2, 1>>>;
using SqD = kmr::SqDist<Var<0, 3, 0>, Var<1, 3, 1>>;

constexpr double kSelect = 1e-14;

const Case kCases[] = {
    {7, 5, 32, 4, 3},       // one block, one short tile
    {70, 300, 32, 4, 3},    // several blocks, tiles, 2 chunks per block row
    {5, 2000, 16, 8, 3},    // few rows: many chunks (split j), merged
    {100, 1, 16, 2, 1},     // one j
    {40, 0, 16, 2, 0},      // no j: the finalized empty accumulator
    {33, 257, 64, 1, 3},    // a partial last block, 257 = 4 tiles + 1
};

}  // namespace

TEST(CudaEmulated, SumGaussian) {
  for (const Case& c : kCases) check<Gauss, kmr::SumReduction, double>(c, "Sum Gauss", 1e-12);
  for (const Case& c : kCases) check<Gauss, kmr::SumReduction, float>(c, "Sum Gauss float", 2e-5);
}

// float32 Sum of 2e4 x 0.1 (issue 10 section 6): compensated like the CPU driver's, within an ulp of
// the exact sum (1999.99996...) on both, whatever the split in chunks and tiles; plain tile sums were
// 1e-6 off. And a row of 1e5 values holding +inf stays +inf (the NaN error term is dropped).
TEST(CudaEmulated, SumFloat32IsCompensated) {
  using One = kmr::Mult<Var<0, 1, 0>, Var<1, 1, 1>>;
  const double exact = 20000 * double(0.1f);
  const std::vector<double> fill = {1.0, 0.1};
  constexpr double kUlp = 6e-8;  // float32: half an ulp is 2^-24 = 6e-8 relative, at most
  for (const Case& c : {Case{3, 20000, 64, 4, 0}, Case{2, 20000, 32, 80, 0}, Case{1, 20000, 256, 1, 0}})
    check<One, kmr::SumReduction, float>(c, "Sum 2e4 x 0.1", kUlp, false, 0, fill, &exact);
  const double inf = INFINITY;
  check<One, kmr::SumReduction, float>({2, 1000, 32, 2, 0}, "Sum of +inf", 0, false, 0, {1.0, inf}, &inf);
}

TEST(CudaEmulated, SumKahan) {
  for (const Case& c : kCases) check<Vec, kmr::SumKahanReduction, float>(c, "SumKahan", 2e-6);
}

TEST(CudaEmulated, MinMaxAndArgs) {
  for (const Case& c : kCases) {
    check<Vec, kmr::MinReduction, double>(c, "Min", kSelect);
    check<Vec, kmr::MaxReduction, double>(c, "Max", kSelect);
    check<Vec, kmr::ArgMinReduction, double>(c, "ArgMin", kSelect);
    check<Vec, kmr::Max_ArgMaxReduction, double>(c, "Max_ArgMax", kSelect);
  }
}

TEST(CudaEmulated, KMinFamilyBelowAndAboveTheLocalCapacity) {
  for (Case c : kCases) {
    if (c.k > c.ny) c.k = c.ny;
    if (c.k < 1) c.k = 1;
    check<SqD, kmr::ArgKMinReduction, double>(c, "ArgKMin", kSelect);
    check<Vec, kmr::KMin_ArgKMinReduction, double>(c, "KMin_ArgKMin", kSelect);
  }
  // K > KMR_CUDA_KMIN_LOCAL: accumulators in the partials (global memory)
  const Case big[] = {{20, 300, 32, 4, KMR_CUDA_KMIN_LOCAL + 8}, {9, 3000, 16, 8, 50}};
  for (const Case& c : big) {
    check<SqD, kmr::ArgKMinReduction, double>(c, "ArgKMin big K", kSelect);
    check<SqD, kmr::KMinReduction, float>(c, "KMin big K", kSelect);
  }
}

TEST(CudaEmulated, LogSumExpFamily) {
  for (const Case& c : kCases) {
    check<Scal, kmr::LogSumExpReduction, double>(c, "LogSumExp", 1e-12);
    check<kmr::Concat<Scal, Vec>, kmr::LogSumExpWeightReduction, double>(c, "LogSumExp weights", 1e-12);
    check<kmr::Concat<Scal, Vec>, kmr::SumSoftMaxWeightReduction, double>(c, "SumSoftMaxWeight", 1e-12);
    // a vector formula, coordinate by coordinate
    check<Vec, kmr::LogSumExpReduction, double>(c, "LogSumExp vector", 1e-12);
    check<kmr::Concat<Vec, kmr::Exp<Vec>>, kmr::LogSumExpWeightVecReduction, double>(c, "LogSumExp weights vector",
                                                                                     1e-12);
    check<kmr::Concat<Vec, Vec>, kmr::SumSoftMaxWeightVecReduction, double>(c, "SumSoftMaxWeight vector", 1e-12);
  }
}

// Partial states with global indices (issue 14): the GPU's unfinalized accumulators equal the CPU's.
TEST(CudaEmulated, StatesWithOffsets) {
  const long long off = (1LL << 40) + 5;  // past float and double index exactness of a value type
  for (const Case& c : kCases) {
    check<Gauss, kmr::SumReduction, double>(c, "Sum state", 1e-12, true, off);
    check<Vec, kmr::Min_ArgMinReduction, double>(c, "Min_ArgMin state", kSelect, true, off);
    check<Scal, kmr::LogSumExpReduction, double>(c, "LogSumExp state", 1e-12, true, off);
    check<Vec, kmr::LogSumExpReduction, double>(c, "LogSumExp vector state", 1e-12, true, off);
    check<kmr::Concat<Scal, Vec>, kmr::SumSoftMaxWeightReduction, double>(c, "SumSoftMaxWeight state", 1e-12, true,
                                                                          off);
    if (c.k >= 1 && c.k <= c.ny) check<SqD, kmr::KMin_ArgKMinReduction, double>(c, "KMin_ArgKMin state", kSelect, true, off);
  }
  check<SqD, kmr::ArgKMinReduction, double>({9, 3000, 16, 8, 50}, "ArgKMin big K state", kSelect, true, off);
}

TEST(CudaEmulated, PlanShapes) {
  LaunchShape s;
  s.nx = 10000;
  s.ny = 10000;
  s.dj = 4;
  s.sms = 132;
  s.blocks_per_sm = 8;
  LaunchPlan p = kmr::cuda::plan_launch(s);
  EXPECT_EQ(p.block, 256);
  EXPECT_EQ(p.blocks_x, 40);
  EXPECT_GT(p.chunks, 1);  // 40 blocks do not fill 132 SMs: j is split
  EXPECT_EQ(p.j_per_chunk % p.tile_rows, 0);
  EXPECT_GE(p.chunks * p.j_per_chunk, s.ny);
  EXPECT_LT((p.chunks - 1) * p.j_per_chunk, s.ny);
  s.nx = s.ny = 1000000;
  p = kmr::cuda::plan_launch(s);
  EXPECT_EQ(p.chunks, 1);  // enough rows
  EXPECT_FALSE(p.use_partials);
  s.dj = 20000;  // too wide for shared memory
  EXPECT_FALSE(kmr::cuda::plan_launch(s).error.empty());
  s.dj = 3;
  s.max_threads = 200;  // register-limited kernel: a multiple of 32
  EXPECT_EQ(kmr::cuda::plan_launch(s).block, 192);
}

// ---- batches and block-sparse ranges: both drivers against a scalar loop ----------------------------------
namespace {

// A call with batches (arg p of batch b at args[p] + b * strides[p]) and/or KeOps's ranges for the kernel's rows.
struct SparseCase {
  long long nx, ny, nbatch;
  int max_threads;
  std::vector<std::int64_t> ranges, slices, redranges;  // empty: dense
  long long k = 1;
};

// The finalized output of a call: values [nbatch, nx, out_dim] and int64 indices [nbatch, nx, out_idx_dim]
// (kernel ABI: indices never travel through the value type).
template <class T>
struct Outputs {
  std::vector<T> val;
  std::vector<long long> idx;
};

// Scalar reference: each row of each batch, init, accumulate over its allowed j in increasing order, finalize.
template <class F, class R, class T>
Outputs<T> reference(const SparseCase& c, const std::vector<const T*>& args, const std::vector<std::int64_t>& st) {
  constexpr kmr::VarTable tab = kmr::var_table<F>();
  R red{};
  red.k = int(c.k);
  Outputs<T> out;
  out.val.resize(std::size_t(c.nbatch * c.nx * red.out_dim()));
  out.idx.resize(std::size_t(c.nbatch * c.nx * red.out_idx_dim()));
  std::vector<char> allowed(std::size_t(c.nx * c.ny), c.slices.empty() ? 1 : 0);
  for (std::size_t k = 0; k < c.slices.size(); ++k)
    for (long long s = k == 0 ? 0 : c.slices[k - 1]; s < c.slices[k]; ++s)
      for (long long i = c.ranges[2 * k]; i < c.ranges[2 * k + 1]; ++i)
        for (long long j = c.redranges[2 * s]; j < c.redranges[2 * s + 1]; ++j) allowed[std::size_t(i * c.ny + j)] = 1;
  std::vector<typename kmr::cpu_detail::RedTraits<R>::acc_type> acc(std::size_t(red.acc_dim()));
  std::vector<long long> idx(std::size_t(red.idx_dim() > 0 ? red.idx_dim() : 1));
  std::vector<T> no_val(1);
  std::vector<long long> no_idx(1);
  for (long long b = 0; b < c.nbatch; ++b)
    for (long long i = 0; i < c.nx; ++i) {
      red.init(acc.data(), idx.data());
      for (long long j = 0; j < c.ny; ++j) {
        if (!allowed[std::size_t(i * c.ny + j)]) continue;
        const T* v[tab.n > 0 ? tab.n : 1];
        for (int p = 0; p < tab.n; ++p) {
          const long long row = tab.cat[p] == 0 ? i : tab.cat[p] == 1 ? j : 0;
          v[p] = args[p] + b * st[p] + row * tab.dim[p];
        }
        T f[F::DIM];
        F::template eval<T>(f, v);
        red.template accumulate<T>(acc.data(), idx.data(), f, j);
      }
      const long long r = b * c.nx + i;
      T* val = red.out_dim() > 0 ? out.val.data() + r * red.out_dim() : no_val.data();
      long long* oi = red.out_idx_dim() > 0 ? out.idx.data() + r * red.out_idx_dim() : no_idx.data();
      red.template finalize<T>(val, oi, acc.data(), idx.data());
    }
  return out;
}

template <class T>
void expect_close(const std::vector<T>& got, const std::vector<T>& want, double tol, const char* what) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t e = 0; e < want.size(); ++e) {
    if (std::isnan(double(want[e]))) {
      EXPECT_TRUE(std::isnan(double(got[e]))) << what << " at " << e;
    } else if (std::isinf(double(want[e]))) {
      EXPECT_EQ(got[e], want[e]) << what << " at " << e;
    } else {
      EXPECT_NEAR(double(got[e]), double(want[e]), tol * (1 + std::fabs(double(want[e])))) << what << " at " << e;
    }
  }
}

template <class F, template <class, int> class Red, class T>
void check_sparse(const SparseCase& c, const char* what, double tol) {
  using R = Red<T, F::DIM>;
  constexpr kmr::VarTable tab = kmr::var_table<F>();
  std::mt19937 gen(7);
  std::uniform_real_distribution<double> unif(-1, 1);
  std::vector<std::vector<T>> data(tab.n);
  std::vector<const T*> targs(tab.n);
  std::vector<const void*> args(tab.n);
  std::vector<std::int64_t> strides(tab.n);
  int dj = 0;
  for (int p = 0; p < tab.n; ++p) {
    const long long rows = tab.cat[p] == 0 ? c.nx : tab.cat[p] == 1 ? c.ny : 1;
    // the last variable is shared by every batch (broadcast), the others have one copy per batch
    const bool shared = p == tab.n - 1;
    strides[p] = shared || c.nbatch == 1 ? 0 : rows * tab.dim[p];
    data[p].resize(std::size_t((shared ? 1 : c.nbatch) * rows * tab.dim[p]));
    for (auto& v : data[p]) v = T(unif(gen));
    targs[p] = data[p].data();
    args[p] = data[p].data();
    if (tab.cat[p] == 1) dj += tab.dim[p];
  }
  const Outputs<T> want = reference<F, R, T>(c, targs, strides);
  R red{};
  red.k = int(c.k);
  const std::size_t nout = std::size_t(c.nbatch * c.nx * red.out_dim());
  const std::size_t nidx = std::size_t(c.nbatch * c.nx * red.out_idx_dim());
  SCOPED_TRACE(::testing::Message() << what << " nx=" << c.nx << " ny=" << c.ny << " nbatch=" << c.nbatch
                                    << " blocks=" << c.slices.size());

  // CPU driver, one thread and several (the thread pool is libkmr's: here a serial parallel_for)
  std::vector<T> cpu(nout, T(-12345));
  std::vector<long long> cpu_idx(nidx, -777);
  kmr_kernel_call call{};
  call.abi_version = KMR_KERNEL_ABI_VERSION;
  call.nx = c.nx;
  call.ny = c.ny;
  call.k = c.k;
  call.args = args.data();
  call.out = cpu.data();
  call.out_idx = nidx ? reinterpret_cast<int64_t*>(cpu_idx.data()) : nullptr;
  call.nbatch = c.nbatch;
  call.batch_stride = strides.data();
  call.nranges = std::int64_t(c.slices.size());
  call.ranges = c.ranges.data();
  call.slices = c.slices.data();
  call.redranges = c.redranges.data();
  call.parallel_for = [](void*, int64_t n, void (*task)(void*, int64_t), void* ctx) {
    for (int64_t t = n - 1; t >= 0; --t) task(ctx, t);  // any order
  };
  call.num_threads = 3;
  ASSERT_EQ((kmr::run_cpu<F, R, T>(&call)), 0);
  expect_close(cpu, want.val, tol, "cpu");
  EXPECT_EQ(cpu_idx, want.idx) << "cpu indices";

  // emulated GPU
  LaunchShape s;
  s.nx = c.nx;
  s.ny = c.ny;
  s.nbatch = c.nbatch;
  s.dj = dj;
  s.dimf = F::DIM;
  s.runtime_k = kmr::cuda_detail::RedInfo<R>::RUNTIME_K;
  s.k = c.k;
  s.value_bytes = s.acc_bytes = sizeof(T);
  s.max_threads = c.max_threads;
  s.sms = 8;
  s.max_tile_bytes = sizeof(kmr::cuda_detail::kmr_shared);
  std::vector<long long> blocks;
  if (!c.slices.empty()) {
    blocks = kmr::cuda::sparse_blocks(c.ranges, c.slices, c.nx, kmr::cuda::plan_block(s).block);
    s.sparse_blocks = static_cast<long long>(blocks.size() / 4);
  }
  const LaunchPlan p = kmr::cuda::plan_launch(s);
  ASSERT_TRUE(p.error.empty()) << p.error;
  ASSERT_EQ(p.chunks, 1);
  kmr_cuda_params prm = kmr::cuda::plan_params(s, p);
  for (int q = 0; q < tab.n; ++q) {
    prm.args[q] = args[q];
    prm.batch_stride[q] = strides[q];
  }
  std::vector<long long> red_ll(c.redranges.begin(), c.redranges.end());
  prm.blocks = blocks.empty() ? nullptr : blocks.data();
  prm.redranges = red_ll.data();
  std::vector<T> gpu(nout, T(-12345));
  std::vector<long long> gpu_idx(nidx, -777);
  prm.out = gpu.data();
  prm.out_idx = nidx ? gpu_idx.data() : nullptr;
  const std::size_t rows = p.use_partials ? std::size_t(c.nbatch * c.nx) : 0;
  std::vector<T> part_acc(rows * std::size_t(p.acc_slots));
  std::vector<long long> part_idx(rows * std::size_t(p.idx_slots));
  prm.part_acc = part_acc.data();
  prm.part_idx = part_idx.data();
  emulate(&map_reduce_entry<F, R, T, 1>, prm, p.blocks_x, 1, p.block,
          blocks.empty() ? c.nbatch : 1);
  if (p.use_partials) emulate(&merge_entry<F, R, T>, prm, (c.nbatch * c.nx + p.block - 1) / p.block, 1, p.block);
  expect_close(gpu, want.val, tol, "emulated gpu");
  EXPECT_EQ(gpu_idx, want.idx) << "emulated gpu indices";
}

// Blocks: rows [0,3) none, [3,10) two intervals, [10,12) an empty list, [12,20) an empty interval and one
// reaching the end, rows [20,25) in no block.
SparseCase sparse_case() {
  return {25, 40, 1, 8, {3, 10, 10, 12, 12, 20}, {2, 2, 4}, {0, 5, 17, 30, 8, 8, 33, 40}, 3};
}

}  // namespace

TEST(RangesAndBatches, CpuAndEmulatedGpuAgainstAScalarLoop) {
  const SparseCase dense_batches{9, 30, 4, 8, {}, {}, {}, 3};
  const SparseCase sparse = sparse_case();
  SparseCase no_block = sparse;  // an empty pattern: one empty block, every row empty
  no_block.ranges = {0, 0};
  no_block.slices = {0};
  no_block.redranges = {};
  for (const SparseCase& c : {dense_batches, sparse, no_block}) {
    check_sparse<Gauss, kmr::SumReduction, double>(c, "Sum Gauss", 1e-12);
    check_sparse<Gauss, kmr::SumReduction, float>(c, "Sum Gauss float", 2e-5);
    check_sparse<Vec, kmr::Min_ArgMinReduction, double>(c, "Min_ArgMin", kSelect);
    check_sparse<SqD, kmr::ArgKMinReduction, double>(c, "ArgKMin", kSelect);
    check_sparse<Scal, kmr::LogSumExpReduction, double>(c, "LogSumExp", 1e-12);
    check_sparse<kmr::Concat<Scal, Vec>, kmr::SumSoftMaxWeightReduction, double>(c, "SumSoftMaxWeight", 1e-12);
  }
  SparseCase big_k = sparse;  // K above the GPU's local capacity: accumulators in the partials
  big_k.k = KMR_CUDA_KMIN_LOCAL + 2;
  big_k.ny = 80;
  check_sparse<SqD, kmr::KMinReduction, double>(big_k, "KMin big K", kSelect);
  SparseCase big_k_batches = dense_batches;
  big_k_batches.k = KMR_CUDA_KMIN_LOCAL + 2;
  big_k_batches.ny = 60;
  check_sparse<SqD, kmr::ArgKMinReduction, double>(big_k_batches, "ArgKMin big K batches", kSelect);
}

TEST(RangesAndBatches, CpuDriverRejectsBadRanges) {
  using R = kmr::SumReduction<double, 1>;
  std::vector<double> x(10 * 3), y(8 * 3), out(10);
  const void* args[2] = {x.data(), y.data()};
  kmr_kernel_call call{};
  call.abi_version = KMR_KERNEL_ABI_VERSION;
  call.nx = 10;
  call.ny = 8;
  call.args = args;
  call.out = out.data();
  const std::int64_t ranges[] = {0, 11}, slices[] = {1}, red[] = {0, 8}, red_bad[] = {0, 9};
  call.nranges = 1;
  call.ranges = ranges;  // past nx
  call.slices = slices;
  call.redranges = red;
  EXPECT_EQ((kmr::run_cpu<SqD, R, double>(&call)), kmr::KERNEL_BAD_CALL);
  const std::int64_t ok[] = {0, 10};
  call.ranges = ok;
  EXPECT_EQ((kmr::run_cpu<SqD, R, double>(&call)), kmr::KERNEL_OK);
  call.redranges = red_bad;  // past ny
  EXPECT_EQ((kmr::run_cpu<SqD, R, double>(&call)), kmr::KERNEL_BAD_CALL);
  call.redranges = red;
  call.nbatch = 2;  // ranges with batches: refused
  const std::int64_t st[] = {30, 24};
  call.batch_stride = st;
  EXPECT_EQ((kmr::run_cpu<SqD, R, double>(&call)), kmr::KERNEL_BAD_CALL);
}
