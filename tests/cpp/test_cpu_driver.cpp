// CPU driver (run_cpu) on real formulas against naive double loops, its
// tiling paths (row tiles, j chunks), sizes 0, bad calls, float32 block-sum
// accuracy; and the thread pool (concurrency, nesting, exceptions, fork).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <mutex>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#if defined(__unix__)
#include <sys/wait.h>
#include <unistd.h>
#endif

#include "cpu/thread_pool.hpp"
#include "driver_call.hpp"
#include "kmr/exec/cpu_driver.hpp"
#include "kmr/formula/formula.hpp"
#include "kmr/reduction/reduction.hpp"
#include "kmr/simd/pack.hpp"
#include "reduction_reference.hpp"

using namespace kmr_test;

namespace {

using X = kmr::Var<0, 3, kmr::CAT_I>;
using Y = kmr::Var<1, 3, kmr::CAT_J>;
using G = kmr::Var<2, 1, kmr::CAT_PARAM>;
using B = kmr::Var<3, 1, kmr::CAT_J>;
using W = kmr::Var<4, 2, kmr::CAT_J>;
// -g |x_i - y_j|^2 + b_j  (dim 1)
using F1 = kmr::Add<kmr::Minus<kmr::Mult<G, kmr::SqDist<X, Y>>>, B>;
// g exp(-(x_i - y_j)^2) elementwise  (dim 3)
using F3 = kmr::Mult<kmr::Exp<kmr::Minus<kmr::Square<kmr::Subtract<X, Y>>>>, G>;
// [F1, exp(w_j)]  (dim 3: weighted LogSumExp / SumSoftMaxWeight with D = 2, positive weights)
using FW = kmr::Concat<F1, kmr::Exp<W>>;
// [F1 w_j, exp(w_j)]  (dim 4: coordinate-wise weighted LogSumExp / SumSoftMaxWeight with D = 2)
using FWV = kmr::Concat<kmr::Mult<F1, W>, kmr::Exp<W>>;
// exp(-g |x_i - y_j|^2) b_j  (dim 1)
using Gauss = kmr::Mult<kmr::Exp<kmr::Minus<kmr::Mult<G, kmr::SqDist<X, Y>>>>, B>;

// Random arguments of F in canonical positions (i-vars nx rows, j-vars ny rows, params 1 row).
template <class F, class T>
struct Args {
  static constexpr kmr::VarTable tab = kmr::var_table<F>();
  std::vector<std::vector<T>> data;
  std::vector<std::vector<double>> data64;
  std::vector<const void*> ptrs;
  Args(uint64_t seed, int64_t nx, int64_t ny) {
    std::mt19937_64 g(seed);
    std::uniform_real_distribution<double> u(-1, 1), pos(0.5, 2);
    for (int p = 0; p < tab.n; ++p) {
      const int64_t rows = tab.cat[p] == kmr::CAT_I ? nx : tab.cat[p] == kmr::CAT_J ? ny : 1;
      std::vector<T> v(size_t(rows * tab.dim[p]));
      for (auto& x : v) x = T(tab.cat[p] == kmr::CAT_PARAM ? pos(g) : u(g));
      data.push_back(v);
      data64.emplace_back(v.begin(), v.end());
    }
    for (auto& v : data) ptrs.push_back(v.data());
  }
  // F's values for row i, all j: [ny][F::DIM], evaluated as the driver does, on packs of T
  // (vector math may round differently from std::exp...), so that Min/KMin values and
  // indices must match exactly; returned as double.
  std::vector<double> row(int64_t i, int64_t ny) const {
    using P = kmr::simd::Pack<T>;
    std::vector<double> f(size_t(ny * F::DIM));
    std::vector<std::vector<P>> packs(size_t(tab.n));
    std::vector<const P*> v(size_t(tab.n));
    P fj[F::DIM];
    T lane0[P::size];
    for (int64_t j = 0; j < ny; ++j) {
      for (int p = 0; p < tab.n; ++p) {
        const int64_t r = tab.cat[p] == kmr::CAT_I ? i : tab.cat[p] == kmr::CAT_J ? j : 0;
        packs[p].clear();
        for (int k = 0; k < tab.dim[p]; ++k) packs[p].push_back(P(data[p][size_t(r * tab.dim[p] + k)]));
        v[p] = packs[p].data();
      }
      F::template eval<P>(fj, v.data());
      for (int d = 0; d < F::DIM; ++d) {
        fj[d].store(lane0);
        f[size_t(j * F::DIM + d)] = double(lane0[0]);
      }
    }
    return f;
  }
};

std::string trace(const char* what, uint64_t seed, int64_t nx, int64_t ny, int K, int threads) {
  return std::string(what) + " seed=" + std::to_string(seed) + " nx=" + std::to_string(nx) +
         " ny=" + std::to_string(ny) + " K=" + std::to_string(K) + " threads=" + std::to_string(threads);
}

template <class F, template <class, int> class R, class TA, class T, int SCHEME = kmr::SCHEME_BLOCK>
void check_driver(uint64_t seed, int64_t nx, int64_t ny, int K, int threads) {
  using Red = R<TA, F::DIM>;
  SCOPED_TRACE(trace(Red::NAME, seed, nx, ny, K, threads) + " DIMF=" + std::to_string(F::DIM) +
               " TA=" + (sizeof(TA) == 4 ? "f32" : "f64") + " T=" + (sizeof(T) == 4 ? "f32" : "f64") +
               " scheme=" + std::to_string(SCHEME));
  Args<F, T> a(seed, nx, ny);
  const int64_t od = Red{K}.out_dim(), oid = Red{K}.out_idx_dim();
  std::vector<T> out(size_t(nx * od), T(12345));
  std::vector<int64_t> oidx(size_t(nx * oid), 12345);
  auto call = make_call(nx, ny, K, a.ptrs.data(), out.data(), threads);
  call.out_idx = oidx.data();
  ASSERT_EQ((kmr::run_cpu<F, Red, T, SCHEME>(&call)), kmr::KERNEL_OK);
  for (int64_t i = 0; i < nx && !::testing::Test::HasFailure(); ++i) {
    const Expected e = naive_reduce(Red::NAME, a.row(i, ny), ny, F::DIM, K);
    std::vector<double> row(out.begin() + i * od, out.begin() + (i + 1) * od);  // values, then indices
    for (int64_t s = 0; s < oid; ++s) row.push_back(double(oidx[size_t(i * oid + s)]));
    expect_matches(row.data(), e, tol_for<TA, T>(), "row " + std::to_string(i));
  }
}

template <class TA, class T>
void check_all_driver(uint64_t seed, int64_t nx, int64_t ny, int threads) {
  using namespace kmr;
  const int K = 3;
  check_driver<F1, SumReduction, TA, T>(seed, nx, ny, K, threads);
  check_driver<F3, SumReduction, TA, T>(seed, nx, ny, K, threads);
  check_driver<F3, SumReduction, TA, T, SCHEME_DIRECT>(seed, nx, ny, K, threads);
  check_driver<F3, SumKahanReduction, TA, T>(seed, nx, ny, K, threads);
  check_driver<F1, MinReduction, TA, T>(seed, nx, ny, K, threads);
  check_driver<F3, MaxReduction, TA, T>(seed, nx, ny, K, threads);
  check_driver<F1, ArgMinReduction, TA, T>(seed, nx, ny, K, threads);
  check_driver<F3, ArgMaxReduction, TA, T, SCHEME_DIRECT>(seed, nx, ny, K, threads);
  check_driver<F3, Min_ArgMinReduction, TA, T>(seed, nx, ny, K, threads);
  check_driver<F1, Max_ArgMaxReduction, TA, T>(seed, nx, ny, K, threads);
  check_driver<F1, KMinReduction, TA, T>(seed, nx, ny, K, threads);
  check_driver<F3, ArgKMinReduction, TA, T>(seed, nx, ny, K, threads);
  check_driver<F3, KMin_ArgKMinReduction, TA, T>(seed, nx, ny, K, threads);
  check_driver<F1, LogSumExpReduction, TA, T>(seed, nx, ny, K, threads);
  check_driver<FW, LogSumExpWeightReduction, TA, T>(seed, nx, ny, K, threads);
  check_driver<FW, SumSoftMaxWeightReduction, TA, T>(seed, nx, ny, K, threads);
  check_driver<F3, LogSumExpReduction, TA, T>(seed, nx, ny, K, threads);  // coordinate by coordinate
  check_driver<FWV, LogSumExpWeightVecReduction, TA, T>(seed, nx, ny, K, threads);
  check_driver<FWV, SumSoftMaxWeightVecReduction, TA, T, SCHEME_DIRECT>(seed, nx, ny, K, threads);
}

struct Size {
  int64_t nx, ny;
};
// Row tiles with a ragged last tile; fewer rows than tasks (j split into chunks); one row; ny = 0.
#if defined(__SANITIZE_ADDRESS__)
// Under ASan (-O0, the CI's sanitizer build) the same cases with fewer pairs (5 min -> about 1): still
// several row chunks of MAX_CHUNK_ROWS with a ragged last one, a full and a partial block of j, and
// j split into 2 chunks for the 5 rows.
const Size kSizes[] = {{203, 300}, {5, 2100}, {1, 3000}, {7, 0}};
#else
const Size kSizes[] = {{1003, 300}, {5, 5000}, {1, 3000}, {7, 0}};
#endif

template <class TA, class T>
void check_all_sizes(uint64_t seed) {
  for (const Size& s : kSizes)
    for (int threads : {1, 4})
      if (!::testing::Test::HasFailure()) check_all_driver<TA, T>(seed + uint64_t(s.nx), s.nx, s.ny, threads);
}

}  // namespace

TEST(CpuDriver, AllReductionsFloat) { check_all_sizes<float, float>(base_seed()); }
TEST(CpuDriver, AllReductionsDouble) { check_all_sizes<double, double>(base_seed() + 10); }
TEST(CpuDriver, AllReductionsFloatDataDoubleAcc) { check_all_sizes<double, float>(base_seed() + 20); }

// The Gaussian kernel sum written out by hand (checks the argument plumbing
// independently of F::eval): a_i = sum_j exp(-g |x_i - y_j|^2) b_j.
TEST(CpuDriver, GaussianSumByHand) {
  const uint64_t seed = base_seed() + 30;
  const int64_t nx = 1003, ny = 517;
  Args<Gauss, float> a(seed, nx, ny);
  const auto &x = a.data64[0], &y = a.data64[1], &b = a.data64[3];
  const double g = a.data64[2][0];
  for (int threads : {1, 3, 4}) {
    SCOPED_TRACE(trace("Gauss", seed, nx, ny, 0, threads));
    std::vector<float> out(nx);
    auto call = make_call(nx, ny, 0, a.ptrs.data(), out.data(), threads);
    ASSERT_EQ((kmr::run_cpu<Gauss, kmr::SumReduction<float, 1>, float>(&call)), 0);
    for (int64_t i = 0; i < nx; ++i) {
      double s = 0, sa = 0;
      for (int64_t j = 0; j < ny; ++j) {
        double d2 = 0;
        for (int k = 0; k < 3; ++k) d2 += (x[i * 3 + k] - y[j * 3 + k]) * (x[i * 3 + k] - y[j * 3 + k]);
        s += std::exp(-g * d2) * b[j];
        sa += std::exp(-g * d2) * std::fabs(b[j]);
      }
      ASSERT_LE(std::fabs(out[i] - s), kTolF32 * sa) << "row " << i;
    }
  }
}

// Sum of 1e6 float32 values (float32 accumulator). The lanes gather each addition's rounding error and
// add their block sums in double (pack_reduce.hpp, PackSum): the block scheme stays within a few float32
// roundings of the double sum, for random values around 1 and for a constant 0.1 (rounding errors all
// of one sign: plain float32 block sums were 4e-6 off). The direct scheme gathers the errors of its whole
// stream of 125000 values per lane in float32: 4e-6 for 0.1 (plain float adds: 1%).
TEST(CpuDriver, Float32SumAtOneMillion) {
  using Yj = kmr::Var<0, 1, kmr::CAT_J>;
  using Red = kmr::SumReduction<float, 1>;
  const uint64_t seed = base_seed() + 40;
  const int64_t ny = 1000000;
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<float> u(0.5f, 1.5f);
  std::vector<float> random(ny), tenth(ny, 0.1f);
  for (auto& v : random) v = u(g);
  constexpr double kTol = 2.5e-7;  // 4 float32 roundings (eps / 2 = 6e-8 each): the j-chunks' partial sums
  constexpr double kTolDirect = 1e-5;
  for (const std::vector<float>* y : {&random, &tenth}) {
    double exact = 0;
    for (float v : *y) exact += v;
    const void* args[] = {y->data()};
    auto rel = [&](float v) { return std::fabs(double(v) - exact) / exact; };
    for (int threads : {1, 4}) {
      SCOPED_TRACE(trace(y == &random ? "float32 sum, random" : "float32 sum, 0.1", seed, 2, ny, 0, threads));
      float blk[2], dir[2];
      auto c1 = make_call(2, ny, 0, args, blk, threads);
      ASSERT_EQ((kmr::run_cpu<Yj, Red, float, kmr::SCHEME_BLOCK>(&c1)), 0);
      auto c2 = make_call(2, ny, 0, args, dir, threads);
      ASSERT_EQ((kmr::run_cpu<Yj, Red, float, kmr::SCHEME_DIRECT>(&c2)), 0);
      std::printf("  float32 sum of 1e6 %s, %d thread(s): block rel err %.2e, direct %.2e\n",
                  y == &random ? "U(0.5,1.5)" : "x 0.1", threads, rel(blk[0]), rel(dir[0]));
      EXPECT_LT(rel(blk[0]), kTol);
      EXPECT_LT(rel(dir[0]), kTolDirect);
      EXPECT_EQ(blk[0], blk[1]);
      if (threads == 1) EXPECT_EQ(double(blk[0]), double(float(exact)));  // one row, one chunk: correctly rounded
    }
  }
}

// Infinities in a float32 sum: the compensation term becomes NaN (inf - inf) and must not poison the
// sum; NaN stays NaN.
TEST(CpuDriver, Float32SumWithInfinities) {
  using Yj = kmr::Var<0, 1, kmr::CAT_J>;
  using Red = kmr::SumReduction<float, 1>;
  const int64_t ny = 1000;
  const float inf = std::numeric_limits<float>::infinity();
  for (int64_t at : {int64_t(0), int64_t(5), int64_t(999)}) {
    std::vector<float> y(ny, 0.25f);
    y[size_t(at)] = inf;
    const void* args[] = {y.data()};
    float out[1];
    auto c = make_call(1, ny, 0, args, out, 1);
    ASSERT_EQ((kmr::run_cpu<Yj, Red, float>(&c)), 0);
    EXPECT_EQ(out[0], inf) << "inf at " << at;
    y[size_t((at + 1) % ny)] = -inf;
    ASSERT_EQ((kmr::run_cpu<Yj, Red, float>(&c)), 0);
    EXPECT_TRUE(std::isnan(out[0])) << "inf - inf at " << at;
  }
}

// kmr_kernel_call::interrupt: a set flag stops the run with KERNEL_INTERRUPTED, before it starts or while the
// threads run (a flag set 20 ms into a run of 2e9 pairs); a clear flag changes nothing.
TEST(CpuDriver, InterruptStopsTheRun) {
  const uint64_t seed = base_seed() + 45;
  const int64_t nx = 4000, ny = 500000;
  Args<Gauss, float> a(seed, nx, ny);
  std::vector<float> out(nx);
  for (int threads : {1, 4}) {
    SCOPED_TRACE(trace("interrupt", seed, nx, ny, 0, threads));
    volatile int flag = 1;
    auto c = make_call(nx, ny, 0, a.ptrs.data(), out.data(), threads);
    c.interrupt = &flag;
    EXPECT_EQ((kmr::run_cpu<Gauss, kmr::SumReduction<float, 1>, float>(&c)), kmr::KERNEL_INTERRUPTED);
    flag = 0;
    std::thread setter([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      flag = 1;
    });
    const auto t0 = std::chrono::steady_clock::now();
    const int rc = kmr::run_cpu<Gauss, kmr::SumReduction<float, 1>, float>(&c);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    setter.join();
    EXPECT_EQ(rc, kmr::KERNEL_INTERRUPTED);
    std::printf("  interrupted after %.3f s (%d thread(s))\n", s, threads);
    flag = 0;
    auto small = make_call(7, 300, 0, a.ptrs.data(), out.data(), threads);
    small.interrupt = &flag;
    EXPECT_EQ((kmr::run_cpu<Gauss, kmr::SumReduction<float, 1>, float>(&small)), kmr::KERNEL_OK);
  }
}

TEST(CpuDriver, EmptySizes) {
  // nx = 0: nothing is read or written (null pointers are fine).
  auto c0 = make_call(0, 10, 0, nullptr, nullptr, 4);
  EXPECT_EQ((kmr::run_cpu<F1, kmr::SumReduction<float, 1>, float>(&c0)), 0);
  // ny = 0: the empty reduction (j-variables may be null).
  Args<F1, float> a(1, 3, 0);
  std::vector<const void*> ptrs = a.ptrs;
  ptrs[1] = ptrs[3] = nullptr;
  // od values then oid indices (as floats) per row, rows one after the other.
  auto run = [&](auto kernel, int K, int od, int oid = 0) {
    std::vector<float> out(size_t(3 * od) + 1, 7.0f);
    std::vector<int64_t> oidx(size_t(3 * oid) + 1, 7);
    auto c = make_call(3, 0, K, ptrs.data(), out.data(), 2);
    c.out_idx = oidx.data();
    EXPECT_EQ(kernel(&c), 0);
    std::vector<float> joined;
    for (int i = 0; i < 3; ++i) {
      for (int s = 0; s < od; ++s) joined.push_back(out[size_t(i * od + s)]);
      for (int s = 0; s < oid; ++s) joined.push_back(float(oidx[size_t(i * oid + s)]));
    }
    return joined;
  };
  const float finf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(run(kmr::run_cpu<F1, kmr::SumReduction<float, 1>, float>, 0, 1), (std::vector<float>(3, 0.0f)));
  EXPECT_EQ(run(kmr::run_cpu<F1, kmr::MinReduction<float, 1>, float>, 0, 1), (std::vector<float>(3, finf)));
  EXPECT_EQ(run(kmr::run_cpu<F1, kmr::ArgMaxReduction<float, 1>, float>, 0, 0, 1), (std::vector<float>(3, -1.0f)));
  EXPECT_EQ(run(kmr::run_cpu<F1, kmr::LogSumExpReduction<float, 1>, float>, 0, 1), (std::vector<float>(3, -finf)));
  EXPECT_EQ(run(kmr::run_cpu<F1, kmr::KMin_ArgKMinReduction<float, 1>, float>, 1, 1, 1),
            (std::vector<float>{finf, -1, finf, -1, finf, -1}));
}

TEST(CpuDriver, KBeyondNyAndBadCalls) {
  const int64_t nx = 4, ny = 3;
  Args<F1, double> a(2, nx, ny);
  // k > ny: K slots per row, the extra ones +inf / -1, nothing written past the end.
  const int K = 5;
  std::vector<double> out(size_t(nx * K) + 8, 99.0);
  std::vector<int64_t> oidx(size_t(nx * K) + 8, 99);
  auto c = make_call(nx, ny, K, a.ptrs.data(), out.data(), 4);
  c.out_idx = oidx.data();
  ASSERT_EQ((kmr::run_cpu<F1, kmr::KMin_ArgKMinReduction<double, 1>, double>(&c)), 0);
  for (int64_t i = 0; i < nx; ++i) {
    const Expected e = naive_reduce("KMin_ArgKMin", a.row(i, ny), ny, 1, K);
    std::vector<double> row(out.begin() + i * K, out.begin() + (i + 1) * K);
    for (int s = 0; s < K; ++s) row.push_back(double(oidx[size_t(i * K + s)]));
    expect_matches(row.data(), e, 0, "row " + std::to_string(i));
  }
  for (size_t s = size_t(nx * K); s < out.size(); ++s) EXPECT_EQ(out[s], 99.0) << "canary " << s;
  for (size_t s = size_t(nx * K); s < oidx.size(); ++s) EXPECT_EQ(oidx[s], 99) << "index canary " << s;

  using Kern = int (*)(const kmr_kernel_call*);
  Kern kern = kmr::run_cpu<F1, kmr::ArgKMinReduction<double, 1>, double>;
  auto bad = c;
  bad.k = -1;
  EXPECT_EQ(kern(&bad), kmr::KERNEL_BAD_CALL);
  bad = c;
  bad.abi_version = KMR_KERNEL_ABI_VERSION + 1;
  EXPECT_EQ(kern(&bad), kmr::KERNEL_BAD_CALL);
  bad = c;
  bad.out = nullptr;  // ArgKMin writes no values: no value output needed
  EXPECT_EQ(kern(&bad), kmr::KERNEL_OK);
  bad = c;
  bad.out_idx = nullptr;
  EXPECT_EQ(kern(&bad), kmr::KERNEL_BAD_CALL);
  bad = c;
  bad.mode = 7;
  EXPECT_EQ(kern(&bad), kmr::KERNEL_BAD_CALL);
  bad = c;
  bad.nx = -3;
  EXPECT_EQ(kern(&bad), kmr::KERNEL_BAD_CALL);
  std::vector<const void*> ptrs = a.ptrs;
  ptrs[2] = nullptr;  // the parameter
  bad = c;
  bad.args = ptrs.data();
  EXPECT_EQ(kern(&bad), kmr::KERNEL_BAD_CALL);
  EXPECT_EQ(kern(nullptr), kmr::KERNEL_BAD_CALL);
}

// K = M (every j kept, sorted), through row tiles and through j chunks.
TEST(CpuDriver, KEqualsNy) {
  const uint64_t seed = base_seed() + 60;
  check_driver<F1, kmr::KMin_ArgKMinReduction, float, float>(seed, 5, 2100, 2100, 4);
  check_driver<F3, kmr::ArgKMinReduction, double, double>(seed, 40, 300, 300, 4);
  check_driver<F1, kmr::KMinReduction, double, float, kmr::SCHEME_DIRECT>(seed, 3, 1, 1, 2);
}

// Arg reductions are exact whatever the tiling; sums agree to rounding.
TEST(CpuDriver, ThreadCountIndependence) {
  const uint64_t seed = base_seed() + 50;
  for (Size s : {Size{37, 20000}, Size{300, 700}}) {
    Args<F3, float> a(seed, s.nx, s.ny);
    std::vector<float> ref_k, ref_s;
    std::vector<int64_t> ref_i;
    for (int threads : {1, 2, 3, 7, 16}) {
      SCOPED_TRACE(trace("independence", seed, s.nx, s.ny, 4, threads));
      std::vector<float> k(size_t(s.nx * 4 * 3)), sum(size_t(s.nx * 3));
      std::vector<int64_t> kidx(size_t(s.nx * 4 * 3));
      auto c1 = make_call(s.nx, s.ny, 4, a.ptrs.data(), k.data(), threads);
      c1.out_idx = kidx.data();
      ASSERT_EQ((kmr::run_cpu<F3, kmr::KMin_ArgKMinReduction<float, 3>, float>(&c1)), 0);
      auto c2 = make_call(s.nx, s.ny, 0, a.ptrs.data(), sum.data(), threads);
      ASSERT_EQ((kmr::run_cpu<F3, kmr::SumReduction<float, 3>, float>(&c2)), 0);
      if (ref_k.empty()) {
        ref_k = k, ref_s = sum, ref_i = kidx;
        continue;
      }
      EXPECT_EQ(k, ref_k);
      EXPECT_EQ(kidx, ref_i);
      for (size_t q = 0; q < sum.size(); ++q) EXPECT_NEAR(sum[q], ref_s[q], kTolF32 * s.ny) << q;
    }
  }
}

TEST(CpuDriver, KernelEntryIsAKernelFn) {
  constexpr kmr_kernel_fn fn = kmr::kernel_entry<Gauss, kmr::SumReduction<double, 1>, float>;
  Args<Gauss, float> a(3, 10, 20);
  std::vector<float> out(10), out2(10);
  auto c = make_call(10, 20, 0, a.ptrs.data(), out.data(), 2);
  EXPECT_EQ(fn(&c), 0);
  c.out = out2.data();
  EXPECT_EQ((kmr::run_cpu<Gauss, kmr::SumReduction<double, 1>, float>(&c)), 0);
  EXPECT_EQ(out, out2);
}

// ---------------------------------------------------------------- thread pool

namespace {
struct Counts {
  std::vector<std::atomic<int>> n;
  explicit Counts(size_t size) : n(size) {}
  static void task(void* ctx, int64_t t) { static_cast<Counts*>(ctx)->n[size_t(t)]++; }
  bool all_once() const {
    for (auto& c : n)
      if (c.load() != 1) return false;
    return true;
  }
};
}  // namespace

TEST(ThreadPool, RunsEveryTaskOnce) {
  kmr::cpu::set_num_threads(4);
  for (int64_t n : {0, 1, 2, 3, 1000, 100000}) {
    Counts c{size_t(n)};
    kmr::cpu::parallel_for(kmr::cpu::default_pool(), n, &Counts::task, &c);
    EXPECT_TRUE(c.all_once()) << n;
  }
  kmr::cpu::parallel_for(nullptr, -5, &Counts::task, nullptr);  // nothing to do
}

TEST(ThreadPool, CallerTakesTasksAndThreadsAreBounded) {
  kmr::cpu::set_num_threads(3);
  struct Ctx {
    std::mutex m;
    std::set<std::thread::id> ids;
  } ctx;
  auto task = [](void* p, int64_t) {
    auto* c = static_cast<Ctx*>(p);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    std::lock_guard<std::mutex> lk(c->m);
    c->ids.insert(std::this_thread::get_id());
  };
  kmr::cpu::parallel_for(nullptr, 24, task, &ctx);
  EXPECT_TRUE(ctx.ids.count(std::this_thread::get_id()));
  EXPECT_LE(ctx.ids.size(), 3u);
  EXPECT_GE(ctx.ids.size(), 2u);  // 24 tasks of 2 ms: a worker takes some
}

TEST(ThreadPool, TwoClientsAtOnceWhileResizing) {
  kmr::cpu::set_num_threads(4);
  std::atomic<int> bad{0};
  auto client = [&](int seed) {
    for (int rep = 0; rep < 200; ++rep) {
      if (seed == 1 && rep % 20 == 0) kmr::cpu::set_num_threads(1 + rep / 20 % 5);
      Counts c(size_t(50 + (rep * 7 + seed) % 100));
      kmr::cpu::parallel_for(kmr::cpu::default_pool(), int64_t(c.n.size()), &Counts::task, &c);
      if (!c.all_once()) ++bad;
    }
  };
  std::thread t1(client, 1), t2(client, 2);
  client(3);
  t1.join();
  t2.join();
  EXPECT_EQ(bad.load(), 0);
  kmr::cpu::set_num_threads(4);
}

// A parallel_for inside a task runs on that task's thread, at any depth.
namespace {
struct Nest {
  std::atomic<int>* leaves;
  std::atomic<int>* foreign;
  std::thread::id owner;
  int depth;
  static void task(void* p, int64_t) {
    const Nest* up = static_cast<Nest*>(p);
    if (up->depth > 0 && std::this_thread::get_id() != up->owner) ++*up->foreign;
    if (up->depth == 3) {
      ++*up->leaves;
      return;
    }
    Nest down{up->leaves, up->foreign, std::this_thread::get_id(), up->depth + 1};
    kmr::cpu::parallel_for(nullptr, 4, &Nest::task, &down);
  }
};
}  // namespace

TEST(ThreadPool, NestedCallsRunInline) {
  kmr::cpu::set_num_threads(4);
  std::atomic<int> leaves{0}, foreign{0};
  Nest top{&leaves, &foreign, std::this_thread::get_id(), 0};
  kmr::cpu::parallel_for(nullptr, 8, &Nest::task, &top);  // 3 nested levels of 4 below the top 8
  EXPECT_EQ(leaves.load(), 8 * 4 * 4 * 4);
  EXPECT_EQ(foreign.load(), 0);
}

TEST(ThreadPool, ExceptionIsRethrownAndPoolSurvives) {
  kmr::cpu::set_num_threads(4);
  auto thrower = [](void*, int64_t t) {
    if (t == 3) throw std::runtime_error("task 3");
  };
  EXPECT_THROW(kmr::cpu::parallel_for(nullptr, 100, thrower, nullptr), std::runtime_error);
  Counts c(1000);
  kmr::cpu::parallel_for(nullptr, 1000, &Counts::task, &c);
  EXPECT_TRUE(c.all_once());
}

TEST(ThreadPool, NumThreadsFromEnvironment) {
  const char* k0 = std::getenv("KMR_NUM_THREADS");
  const char* o0 = std::getenv("OMP_NUM_THREADS");
  const std::string k_saved = k0 ? k0 : "", o_saved = o0 ? o0 : "";
  kmr::cpu::set_num_threads(0);
  setenv("KMR_NUM_THREADS", "5", 1);
  setenv("OMP_NUM_THREADS", "6,2", 1);
  EXPECT_EQ(kmr::cpu::num_threads(), 5);
  unsetenv("KMR_NUM_THREADS");
  EXPECT_EQ(kmr::cpu::num_threads(), 6);
  setenv("OMP_NUM_THREADS", "junk", 1);
  EXPECT_GE(kmr::cpu::num_threads(), 1);
  kmr::cpu::set_num_threads(3);
  EXPECT_EQ(kmr::cpu::num_threads(), 3);
  kmr::cpu::set_num_threads(-1);
  EXPECT_GE(kmr::cpu::num_threads(), 1);
  auto restore = [](const char* name, const char* was, const std::string& saved) {
    if (was) {
      setenv(name, saved.c_str(), 1);
    } else {
      unsetenv(name);
    }
  };
  restore("KMR_NUM_THREADS", k0, k_saved);
  restore("OMP_NUM_THREADS", o0, o_saved);
}

#if defined(__unix__)
// A child forked after the pool started (torch DataLoader workers) still computes.
TEST(ThreadPool, WorksInAForkedChild) {
  kmr::cpu::set_num_threads(4);
  Counts warm(100);
  kmr::cpu::parallel_for(nullptr, 100, &Counts::task, &warm);
  ASSERT_TRUE(warm.all_once());
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    alarm(30);  // a hang fails the test instead of blocking it
    Counts c(1000);
    kmr::cpu::parallel_for(nullptr, 1000, &Counts::task, &c);
    Args<Gauss, double> a(5, 50, 60);
    std::vector<double> out(50);
    auto call = make_call(50, 60, 0, a.ptrs.data(), out.data(), 4);
    const int rc = kmr::run_cpu<Gauss, kmr::SumReduction<double, 1>, double>(&call);
    _exit(c.all_once() && rc == 0 ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
}
#endif
