// The CPU driver's inner-product tiles (exec/tile_terms.hpp, exec/tile_gemm.hpp): which terms
// the rewrite finds, and the tiled driver against naive double loops that compute
// |x - y|^2 by subtraction (not by the expansion the tiles use), at ragged sizes, with j split
// into chunks, with 1 and 4 threads, for Sum, Min, ArgKMin and a gradient; near-duplicate
// points (the expansion's cancellation) must never give a negative SqDist.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "cpu/thread_pool.hpp"
#include "driver_call.hpp"
#include "kmr/exec/cpu_driver.hpp"
#include "kmr/formula/formula.hpp"
#include "kmr/reduction/reduction.hpp"
#include "reduction_reference.hpp"

namespace {

using namespace kmr;
using kmr_test::base_seed;
using kmr_test::make_call;

constexpr int TD = cpu_detail::TILE_MIN_DIM;  // the smallest tiled dimension

template <int D>
using Xi = Var<0, D, CAT_I>;
template <int D>
using Yj = Var<1, D, CAT_J>;
using Gp = Var<2, 1, CAT_PARAM>;
using Bj = Var<3, 1, CAT_J>;
using Ui = Var<4, 1, CAT_I>;
template <int D>
using GaussD = Mult<Exp<Minus<Mult<Gp, SqDist<Xi<D>, Yj<D>>>>>, Bj>;

template <class F>
constexpr bool tiled() {
  return tile::Plan<F, var_table<F>().n, TD>::TILED;
}
template <class F>
constexpr int kind() {
  return tile::Plan<F, var_table<F>().n, TD>::Tm::kind;
}

// Written forms found, in either operand order; the rest left to the pair-by-pair path.
static_assert(kind<SqDist<Xi<TD>, Yj<TD>>>() == tile::TILE_SQDIST);
static_assert(kind<SqDist<Yj<TD>, Xi<TD>>>() == tile::TILE_SQDIST);
static_assert(kind<Sum<Square<Subtract<Xi<64>, Yj<64>>>>>() == tile::TILE_SQDIST);
static_assert(kind<Scalprod<Yj<64>, Xi<64>>>() == tile::TILE_DOT);
static_assert(kind<Sum<Mult<Xi<64>, Yj<64>>>>() == tile::TILE_DOT);
static_assert(kind<GaussD<64>>() == tile::TILE_SQDIST);
static_assert(kind<Mult<Gp, SqNorm2<Subtract<Xi<64>, Yj<64>>>>>() == tile::TILE_SQDIST);  // WeightedSqDist, scalar
static_assert(!tiled<SqDist<Xi<TD - 1>, Yj<TD - 1>>>(), "below the crossover: pair by pair");
static_assert(!tiled<SqDist<Xi<64>, Var<1, 64, CAT_I>>>(), "two i-variables: no tile");
static_assert(!tiled<SqDist<Xi<64>, Var<1, 64, CAT_PARAM>>>(), "a parameter: no tile");
static_assert(!tiled<SqNorm2<Add<Xi<64>, Yj<64>>>>(), "|x + y|^2 is not a tile term");
// Grad nodes are expanded: the x-gradient of a Gaussian reads its SqDist from the tile and keeps
// x - y pair by pair (the expanded formula no longer holds a SqNorm2 of x - y).
using GradX = Grad<GaussD<64>, Xi<64>, Ui>;
static_assert(kind<GradX>() == tile::TILE_SQDIST);
static_assert(!tiled<tile::Plan<GradX, 5, TD>::FE>(), "every occurrence is replaced");
static_assert(var_table<tile::Plan<GaussD<64>, 4, TD>::FE>().dim[0] == 0, "x is read by the tile only");

// Points x_i, y_j in [-1, 1]^D / sqrt(D) (distances of order 1), weights b, u, gamma.
template <class T, int D>
struct Data {
  std::vector<T> x, y, g{T(0.75)}, b, u;
  Data(uint64_t seed, int64_t nx, int64_t ny) {
    std::mt19937_64 r(seed);
    std::uniform_real_distribution<double> s(-1, 1);
    const double sc = 1 / std::sqrt(double(D));
    for (int64_t k = 0; k < nx * D; ++k) x.push_back(T(s(r) * sc));
    for (int64_t k = 0; k < ny * D; ++k) y.push_back(T(s(r) * sc));
    for (int64_t k = 0; k < ny; ++k) b.push_back(T(s(r)));
    for (int64_t k = 0; k < nx; ++k) u.push_back(T(s(r)));
  }
  double d2(int64_t i, int64_t j) const {  // by subtraction, in double
    double s = 0;
    for (int c = 0; c < D; ++c) {
      const double t = double(x[size_t(i * D + c)]) - double(y[size_t(j * D + c)]);
      s += t * t;
    }
    return s;
  }
  std::vector<const void*> ptrs() const { return {x.data(), y.data(), g.data(), b.data(), u.data()}; }
};

template <class T>
double tol() {
  return sizeof(T) == 4 ? 2e-5 : 1e-12;
}

struct Case {
  int64_t nx, ny;
  int threads;
};
// Ragged rows (not a multiple of the register block), a partial pack of j, j split into chunks
// (5 rows), several super-blocks of j.
#if defined(__SANITIZE_ADDRESS__)  // -O0: fewer pairs, the same paths (2 super-blocks need 16385 j)
const Case kCases[] = {{37, 301, 1}, {37, 301, 4}, {5, 5000, 4}, {9, 16500, 2}};
#else
const Case kCases[] = {{37, 301, 1}, {37, 301, 4}, {5, 5000, 4}, {203, 17000, 2}};
#endif

std::string trace(uint64_t seed, const Case& c, int D, int bytes) {
  return "seed=" + std::to_string(seed) + " nx=" + std::to_string(c.nx) + " ny=" + std::to_string(c.ny) +
         " threads=" + std::to_string(c.threads) + " D=" + std::to_string(D) + " T=f" + std::to_string(8 * bytes);
}

template <class T, int D>
void check_gauss_sum(uint64_t seed) {
  static_assert(tiled<GaussD<D>>());
  for (const Case& c : kCases) {
    SCOPED_TRACE(trace(seed, c, D, sizeof(T)));
    Data<T, D> a(seed, c.nx, c.ny);
    const auto p = a.ptrs();
    std::vector<T> out(size_t(c.nx), T(-7));
    auto call = make_call(c.nx, c.ny, 0, p.data(), out.data(), c.threads);
    ASSERT_EQ((run_cpu<GaussD<D>, SumReduction<T, 1>, T>(&call)), KERNEL_OK);
    for (int64_t i = 0; i < c.nx; ++i) {
      double s = 0, scale = 0;
      for (int64_t j = 0; j < c.ny; ++j) {
        const double t = std::exp(-double(a.g[0]) * a.d2(i, j)) * double(a.b[size_t(j)]);
        s += t, scale += std::fabs(t);
      }
      ASSERT_NEAR(double(out[size_t(i)]), s, tol<T>() * scale) << "row " << i;
    }
  }
}

TEST(Tiles, GaussianSumFloat) {
  check_gauss_sum<float, TD>(base_seed());
  check_gauss_sum<float, 37>(base_seed() + 1);
  check_gauss_sum<float, 128>(base_seed() + 2);
  check_gauss_sum<float, 300>(base_seed() + 9);  // two passes of TILE_KC coordinates, the second ragged
}
TEST(Tiles, GaussianSumDouble) {
  check_gauss_sum<double, TD>(base_seed() + 3);
  check_gauss_sum<double, 64>(base_seed() + 4);
}

// Block-sparse ranges whose blocks of j start at unaligned j and end at ny: tiles that start mid-pack and
// read the last pack of the transposed j-variables (ASan checks that it stays inside the buffers).
// The pair-by-pair path (D = 3) reads the same last pack: it is checked here too.
template <int D>
void check_unaligned_ranges() {
  const int64_t nx = 37, ny = 320;  // a multiple of the padding: the last pack of [317, 320) ends past it
  const int64_t ranges[] = {0, 20, 20, 37};
  const int64_t slices[] = {2, 3};
  const int64_t red[] = {317, 320, 3, 150, 1, 320};
  const uint64_t seed = base_seed() + 10;
  Data<float, D> a(seed, nx, ny);
  const auto p = a.ptrs();
  std::vector<float> out(static_cast<size_t>(nx));
  for (int threads : {1, 2}) {
    SCOPED_TRACE("seed=" + std::to_string(seed) + " threads=" + std::to_string(threads) + " D=" + std::to_string(D));
    auto call = make_call(nx, ny, 0, p.data(), out.data(), threads);
    call.nranges = 2;
    call.ranges = ranges;
    call.slices = slices;
    call.redranges = red;
    ASSERT_EQ((run_cpu<GaussD<D>, SumReduction<float, 1>, float>(&call)), KERNEL_OK);
    for (int64_t i = 0; i < nx; ++i) {
      const int k = i < 20 ? 0 : 1;
      double s = 0, scale = 0;
      for (int64_t l = k == 0 ? 0 : 2; l < slices[k]; ++l)
        for (int64_t j = red[2 * l]; j < red[2 * l + 1]; ++j) {
          const double t = std::exp(-double(a.g[0]) * a.d2(i, j)) * double(a.b[size_t(j)]);
          s += t, scale += std::fabs(t);
        }
      ASSERT_NEAR(double(out[size_t(i)]), s, 2e-5 * scale) << "row " << i;
    }
  }
}
TEST(Tiles, RangesWithUnalignedBlocks) {
  check_unaligned_ranges<20>();
  check_unaligned_ranges<3>();
}

// (x_i | y_j) b_j: the DOT kind.
TEST(Tiles, LinearKernelSum) {
  using F = Mult<Scalprod<Yj<40>, Xi<40>>, Bj>;
  static_assert(kind<F>() == tile::TILE_DOT);
  const uint64_t seed = base_seed() + 5;
  for (const Case& c : kCases) {
    SCOPED_TRACE(trace(seed, c, 40, 4));
    Data<float, 40> a(seed, c.nx, c.ny);
    const auto p = a.ptrs();
    std::vector<float> out(size_t(c.nx));
    auto call = make_call(c.nx, c.ny, 0, p.data(), out.data(), c.threads);
    ASSERT_EQ((run_cpu<F, SumReduction<float, 1>, float>(&call)), KERNEL_OK);
    for (int64_t i = 0; i < c.nx; ++i) {
      double s = 0, scale = 0;
      for (int64_t j = 0; j < c.ny; ++j) {
        double d = 0;
        for (int k = 0; k < 40; ++k) d += double(a.x[size_t(i * 40 + k)]) * double(a.y[size_t(j * 40 + k)]);
        s += d * double(a.b[size_t(j)]), scale += std::fabs(d * double(a.b[size_t(j)]));
      }
      ASSERT_NEAR(double(out[size_t(i)]), s, 2e-5 * scale) << "row " << i;
    }
  }
}

// Min and the K nearest: values within the expansion's error; indices checked through the
// distances they point to (near-ties may order differently than the subtraction's).
TEST(Tiles, MinAndKNearest) {
  constexpr int D = 64, K = 5;
  using F = SqDist<Xi<D>, Yj<D>>;
  const uint64_t seed = base_seed() + 6;
  for (const Case& c : kCases) {
    SCOPED_TRACE(trace(seed, c, D, 4));
    Data<float, D> a(seed, c.nx, c.ny);
    const auto p = a.ptrs();
    std::vector<float> mn(size_t(c.nx));
    std::vector<int64_t> idx(size_t(c.nx * K));
    auto call = make_call(c.nx, c.ny, K, p.data(), mn.data(), c.threads);
    ASSERT_EQ((run_cpu<F, MinReduction<float, 1>, float>(&call)), KERNEL_OK);
    call = make_call(c.nx, c.ny, K, p.data(), nullptr, c.threads);
    call.out_idx = idx.data();
    ASSERT_EQ((run_cpu<F, ArgKMinReduction<float, 1>, float>(&call)), KERNEL_OK);
    const double eps = 4 * 6e-8 * 2;  // a few float roundings of |x|^2 + |y|^2 <= 2
    for (int64_t i = 0; i < c.nx; ++i) {
      std::vector<double> d(size_t(c.ny));
      for (int64_t j = 0; j < c.ny; ++j) d[size_t(j)] = a.d2(i, j);
      std::vector<double> s = d;
      std::sort(s.begin(), s.end());
      ASSERT_NEAR(double(mn[size_t(i)]), s[0], eps) << "row " << i;
      for (int k = 0; k < K; ++k) {
        const int64_t j = idx[size_t(i * K + k)];
        ASSERT_TRUE(j >= 0 && j < c.ny) << "row " << i << " k " << k;
        ASSERT_NEAR(d[size_t(j)], s[size_t(k)], 2 * eps) << "row " << i << " k " << k;
      }
    }
  }
}

// d/dx_i of sum_j u_i exp(-g |x_i - y_j|^2) b_j = sum_j -2 g u_i b_j exp(-g |x_i - y_j|^2) (x_i - y_j).
TEST(Tiles, GaussianGradientX) {
  constexpr int D = 24;
  using F = Grad<GaussD<D>, Xi<D>, Ui>;
  static_assert(tiled<F>());
  const uint64_t seed = base_seed() + 7;
  for (const Case& c : kCases) {
    SCOPED_TRACE(trace(seed, c, D, 8));
    Data<double, D> a(seed, c.nx, c.ny);
    const auto p = a.ptrs();
    std::vector<double> out(size_t(c.nx * D));
    auto call = make_call(c.nx, c.ny, 0, p.data(), out.data(), c.threads);
    ASSERT_EQ((run_cpu<F, SumReduction<double, D>, double>(&call)), KERNEL_OK);
    for (int64_t i = 0; i < c.nx; ++i)
      for (int k = 0; k < D; ++k) {
        double s = 0, scale = 0;
        for (int64_t j = 0; j < c.ny; ++j) {
          const double w = -2 * a.g[0] * a.u[size_t(i)] * a.b[size_t(j)] * std::exp(-a.g[0] * a.d2(i, j));
          const double t = w * (a.x[size_t(i * D + k)] - a.y[size_t(j * D + k)]);
          s += t, scale += std::fabs(t);
        }
        ASSERT_NEAR(out[size_t(i * D + k)], s, 1e-12 * scale) << "row " << i << " coordinate " << k;
      }
  }
}

// Points much closer than their norms: the expansion cancels. SqDist stays >= 0 (exact duplicates
// included) and within a few roundings of |x|^2 + |y|^2 of the truth.
TEST(Tiles, NearDuplicatesNeverNegative) {
  constexpr int D = 32;
  using F = SqDist<Xi<D>, Yj<D>>;
  const int64_t n = 301;
  std::mt19937_64 r(base_seed() + 8);
  std::uniform_real_distribution<double> s(-1, 1);
  std::vector<float> x(size_t(n * D)), y(size_t(n * D));
  for (int64_t k = 0; k < n * D; ++k) {
    x[size_t(k)] = float(10 + s(r));                                                     // norms ~ 10 sqrt(D)
    y[size_t(k)] = (k / D) % 3 == 0 ? x[size_t(k)] : float(x[size_t(k)] + 1e-4 * s(r));  // duplicates or near
  }
  const void* p[2] = {x.data(), y.data()};
  std::vector<float> out(static_cast<size_t>(n));
  for (int threads : {1, 2}) {
    auto call = make_call(n, n, 0, p, out.data(), threads);
    ASSERT_EQ((run_cpu<F, MinReduction<float, 1>, float>(&call)), KERNEL_OK);
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_GE(out[size_t(i)], 0.0f) << "row " << i;
      ASSERT_LE(out[size_t(i)], 1e-5f * 2 * 100 * D) << "row " << i;  // ~ eps (|x|^2 + |y|^2)
    }
  }
}

}  // namespace
