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

// Runs grid (gx, gy) of `block` threads, one block at a time.
void emulate(Kernel k, kmr_cuda_params prm, long long gx, long long gy, int block) {
  blockDim = {unsigned(block), 1, 1};
  gridDim = {unsigned(gx), unsigned(gy), 1};
  for (long long by = 0; by < gy; ++by)
    for (long long bx = 0; bx < gx; ++bx) {
      kmr_barrier.reset(block);
      std::vector<std::thread> threads;
      for (int t = 0; t < block; ++t)
        threads.emplace_back([=] {
          threadIdx = {unsigned(t), 0, 0};
          blockIdx = {unsigned(bx), unsigned(by), 0};
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
void check(const Case& c, const char* what, double tol, bool state = false, long long offset = 0) {
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
    for (auto& v : data[p]) v = T(unif(gen));
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
    if (std::isnan(double(want[e]))) {
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
  }
}

// Partial states with global indices (issue 14): the GPU's unfinalized accumulators equal the CPU's.
TEST(CudaEmulated, StatesWithOffsets) {
  const long long off = (1LL << 40) + 5;  // past float and double index exactness of a value type
  for (const Case& c : kCases) {
    check<Gauss, kmr::SumReduction, double>(c, "Sum state", 1e-12, true, off);
    check<Vec, kmr::Min_ArgMinReduction, double>(c, "Min_ArgMin state", kSelect, true, off);
    check<Scal, kmr::LogSumExpReduction, double>(c, "LogSumExp state", 1e-12, true, off);
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
