// The C++ string API end to end: precompiled and JIT kernels against naive loops.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <string>

#include "cpu/isa.hpp"
#include "kmr/reduction/reduction.hpp"
#include "kmr/runtime/genred.hpp"
#include "reduction_reference.hpp"

namespace {

constexpr double kTolF64 = 1e-12;  // relative, double data
constexpr double kTolF32 = 1e-5;   // relative, float data

template <class T>
std::vector<T> random_vec(std::size_t n, std::mt19937& rng) {
  std::normal_distribution<double> d;
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(d(rng));
  return v;
}

// a_i = sum_j exp(-g |x_i - y_j|^2) b_j, computed naively in double.
std::vector<double> naive_gauss(double g, const std::vector<double>& x, const std::vector<double>& y,
                                const std::vector<double>& b, int d, int e) {
  const std::size_t nx = x.size() / d, ny = y.size() / d;
  std::vector<double> out(nx * e, 0.0);
  for (std::size_t i = 0; i < nx; ++i)
    for (std::size_t j = 0; j < ny; ++j) {
      double r2 = 0;
      for (int k = 0; k < d; ++k) r2 += (x[i * d + k] - y[j * d + k]) * (x[i * d + k] - y[j * d + k]);
      for (int k = 0; k < e; ++k) out[i * e + k] += std::exp(-g * r2) * b[j * e + k];
    }
  return out;
}

double max_rel_err(const std::vector<double>& ref, const double* got) {
  double num = 0, den = 0;
  for (std::size_t k = 0; k < ref.size(); ++k) {
    num = std::max(num, std::abs(ref[k] - got[k]));
    den = std::max(den, std::abs(ref[k]));
  }
  return num / (den > 0 ? den : 1);
}

class GenredTest : public ::testing::Test {
 protected:
  void SetUp() override {
    seed_ = 1234u + static_cast<unsigned>(::testing::UnitTest::GetInstance()->random_seed());
    std::printf("seed = %u\n", seed_);
    rng_.seed(seed_);
  }
  unsigned seed_ = 0;
  std::mt19937 rng_;
};

TEST_F(GenredTest, GaussianDoubleMatchesNaive) {
  const int nx = 137, ny = 211;
  auto x = random_vec<double>(nx * 3, rng_), y = random_vec<double>(ny * 3, rng_), b = random_vec<double>(ny * 2, rng_);
  const double g = 0.7;
  kmr::Genred conv("Exp(-G*SqDist(X,Y))*B", {"G = Pm(1)", "X = Vi(3)", "Y = Vj(3)", "B = Vj(2)"}, "Sum", 1);
  EXPECT_EQ(conv.out_dim(), 2);
  std::vector<double> out(nx * 2);
  conv.run<double>({&g, x.data(), y.data(), b.data()}, nx, ny, out.data());
  EXPECT_LT(max_rel_err(naive_gauss(g, x, y, b, 3, 2), out.data()), kTolF64);
}

TEST_F(GenredTest, GaussianFloatMatchesNaive) {
  const int nx = 300, ny = 1000;
  auto xf = random_vec<float>(nx * 3, rng_), yf = random_vec<float>(ny * 3, rng_), bf = random_vec<float>(ny, rng_);
  const float g = 0.5f;
  kmr::Genred conv("Exp(-G*SqDist(X,Y))*B", {"G = Pm(1)", "X = Vi(3)", "Y = Vj(3)", "B = Vj(1)"}, "Sum", 1);
  std::vector<float> out(nx);
  conv.run<float>({&g, xf.data(), yf.data(), bf.data()}, nx, ny, out.data());
  std::vector<double> x(xf.begin(), xf.end()), y(yf.begin(), yf.end()), b(bf.begin(), bf.end());
  std::vector<double> got(out.begin(), out.end());
  EXPECT_LT(max_rel_err(naive_gauss(g, x, y, b, 3, 1), got.data()), kTolF32);
}

TEST_F(GenredTest, ArgumentOrderIsTheUsers) {
  const int nx = 50, ny = 70;
  auto x = random_vec<double>(nx * 2, rng_), y = random_vec<double>(ny * 2, rng_), b = random_vec<double>(ny * 3, rng_);
  const double g = 1.3;
  kmr::Genred conv("Exp(-G*SqDist(X,Y))*B", {"B = Vj(3)", "Y = Vj(2)", "X = Vi(2)", "G = Pm(1)"}, "Sum", 1);
  std::vector<double> out(nx * 3);
  conv.run<double>({b.data(), y.data(), x.data(), &g}, nx, ny, out.data());
  EXPECT_LT(max_rel_err(naive_gauss(g, x, y, b, 2, 3), out.data()), kTolF64);
}

TEST_F(GenredTest, Axis0ReducesOverI) {
  const int nx = 40, ny = 60;
  auto x = random_vec<double>(nx * 3, rng_), y = random_vec<double>(ny * 3, rng_), u = random_vec<double>(nx * 2, rng_);
  const double g = 0.9;
  // b_j = sum_i exp(-g |x_i - y_j|^2) u_i: the Gaussian with the roles of x and y exchanged.
  kmr::Genred conv("Exp(-G*SqDist(X,Y))*U", {"G = Pm(1)", "X = Vi(3)", "Y = Vj(3)", "U = Vi(2)"}, "Sum", 0);
  std::vector<double> out(ny * 2);
  conv.run<double>({&g, x.data(), y.data(), u.data()}, nx, ny, out.data());
  EXPECT_LT(max_rel_err(naive_gauss(g, y, x, u, 3, 2), out.data()), kTolF64);
}

TEST_F(GenredTest, JitFormulaMatchesNaive) {
  const int nx = 30, ny = 45;
  auto x = random_vec<double>(nx * 2, rng_), y = random_vec<double>(ny * 2, rng_);
  kmr::Genred g("Sin((X|Y)) * Abs(Elem(Y,1)) + 2", {"X = Vi(2)", "Y = Vj(2)"}, "Sum", 1);
  EXPECT_FALSE(g.is_precompiled(kmr::DType::Float64));
  std::vector<double> out(nx);
  g.run<double>({x.data(), y.data()}, nx, ny, out.data());
  std::vector<double> ref(nx, 0.0);
  for (int i = 0; i < nx; ++i)
    for (int j = 0; j < ny; ++j)
      ref[i] += std::sin(x[2 * i] * y[2 * j] + x[2 * i + 1] * y[2 * j + 1]) * std::abs(y[2 * j + 1]) + 2;
  EXPECT_LT(max_rel_err(ref, out.data()), kTolF64);
}

TEST_F(GenredTest, ArgKMinPrecompiled) {
  const int nx = 20, ny = 33, K = 4;
  auto x = random_vec<double>(nx * 2, rng_), y = random_vec<double>(ny * 2, rng_);
  kmr::GenredOptions opt;
  opt.opt_arg = K;
  kmr::Genred knn("SqDist(X,Y)", {"X = Vi(2)", "Y = Vj(2)"}, "ArgKMin", 1, opt);
  ASSERT_EQ(knn.out_dim(), 0);
  ASSERT_EQ(knn.out_idx_dim(), K);
  std::vector<int64_t> out(nx * K);
  knn.run<double>({x.data(), y.data()}, nx, ny, nullptr, out.data());
  std::vector<double> unused;
  EXPECT_THROW(knn.run<double>({x.data(), y.data()}, nx, ny, unused.data()), kmr::Error);  // no index output
  for (int i = 0; i < nx; ++i) {
    std::vector<std::pair<double, int>> d;
    for (int j = 0; j < ny; ++j) {
      const double dx = x[2 * i] - y[2 * j], dy = x[2 * i + 1] - y[2 * j + 1];
      d.push_back({dx * dx + dy * dy, j});
    }
    std::sort(d.begin(), d.end());
    for (int r = 0; r < K; ++r) EXPECT_EQ(out[i * K + r], d[r].second) << "i=" << i << " r=" << r;
  }
}

TEST(GenredErrors, BadInputThrowsKmrError) {
  EXPECT_THROW(kmr::Genred("X", {"X = Vi(3)"}, "Sum", 2), kmr::Error);                 // axis
  EXPECT_THROW(kmr::Genred("X", {"X = Vi(3)"}, "Summ", 1), kmr::Error);                // reduction
  EXPECT_THROW(kmr::Genred("X+Y", {"X = Vi(3)", "Y = Vj(2)"}, "Sum", 1), kmr::Error);  // dims
  EXPECT_THROW(kmr::Genred("X", {"X = Vi(3)"}, "KMin", 1), kmr::Error);                // K missing
  kmr::GenredOptions opt;
  opt.formula2 = "Y";  // a vector LogSumExp works coordinate by coordinate: weights of another dim are refused
  EXPECT_THROW(kmr::Genred("X", {"X = Vi(3)", "Y = Vj(2)"}, "LogSumExp", 1, opt), kmr::Error);
  EXPECT_THROW(kmr::Genred("X", {"X = Vi(3)", "Y = Vj(2)"}, "SumSoftMaxWeight", 1, opt), kmr::Error);
  EXPECT_EQ(kmr::Genred("X", {"X = Vi(3)"}, "LogSumExp", 1).out_dim(), 3);
  opt = {};
  opt.formula2 = "X";
  EXPECT_THROW(kmr::Genred("X", {"X = Vi(3)"}, "Sum", 1, opt), kmr::Error);  // formula2 on Sum
  opt = {};
  opt.opt_arg = 5;
  kmr::Genred knn("SqDist(X,Y)", {"X = Vi(1)", "Y = Vj(1)"}, "KMin", 1, opt);
  std::vector<double> x(3), y(3), out(15);
  try {
    knn.run<double>({x.data(), y.data()}, 3, 3, out.data());
    FAIL() << "K > M must throw";
  } catch (const kmr::Error& e) {
    EXPECT_NE(std::string(e.what()).find("K = 5"), std::string::npos) << e.what();
  }
  EXPECT_THROW(knn.run<double>({x.data()}, 3, 3, out.data()), kmr::Error);  // wrong number of arguments
}

TEST(GenredAccumulation, Float64AccumulatorAndKahan) {
  const int ny = 1 << 20;
  std::vector<float> y(ny, 0.1f), x(1, 0.f);
  for (const char* scheme : {"auto", "kahan"}) {
    kmr::GenredOptions opt;
    opt.sum_scheme = scheme;
    kmr::Genred s("Y", {"X = Vi(1)", "Y = Vj(1)"}, "Sum", 1, opt);
    float out = 0;
    s.run<float>({x.data(), y.data()}, 1, ny, &out);
    EXPECT_NEAR(out, 0.1f * ny, 0.1 * ny * 1e-5) << scheme;
  }
  kmr::GenredOptions opt;
  opt.dtype_acc = "float64";
  kmr::Genred s("Y", {"X = Vi(1)", "Y = Vj(1)"}, "Sum", 1, opt);
  float out = 0;
  s.run<float>({x.data(), y.data()}, 1, ny, &out);
  EXPECT_NEAR(out, double(0.1f) * ny, 0.1 * ny * 1e-6);
}

}  // namespace

// Every instruction-set variant of the precompiled kernels this CPU runs gives the same results:
// Gaussian sums (float, double; ragged sizes) and ArgKMin indices.
TEST_F(GenredTest, EveryIsaVariantMatches) {
  const int machine = kmr::cpu::isa_level();
  kmr::Genred conv("Exp(-G*SqDist(X,Y))*B", {"G = Pm(1)", "X = Vi(3)", "Y = Vj(3)", "B = Vj(1)"}, "Sum", 1);
  kmr::GenredOptions opt;
  opt.opt_arg = 4;
  kmr::Genred knn("SqDist(X,Y)", {"X = Vi(3)", "Y = Vj(3)"}, "ArgKMin", 1, opt);
  if (!conv.is_precompiled(kmr::DType::Float32) || !knn.is_precompiled(kmr::DType::Float32))
    GTEST_SKIP() << "kernels not precompiled";
  const int nx = 301, ny = 1037;
  auto xf = random_vec<float>(nx * 3, rng_), yf = random_vec<float>(ny * 3, rng_), bf = random_vec<float>(ny, rng_);
  const float g = 0.5f;
  std::vector<double> x(xf.begin(), xf.end()), y(yf.begin(), yf.end()), b(bf.begin(), bf.end());
  const std::vector<double> ref = naive_gauss(g, x, y, b, 3, 1);
  std::vector<int64_t> ref_knn;
  std::vector<std::vector<float>> sums;
  for (int level = machine; level >= 0; --level) {
    SCOPED_TRACE(kmr::cpu::isa_level_name(level));
    kmr::cpu::set_isa_cap(level);
    ASSERT_EQ(kmr::cpu::isa_level(), level);
    std::vector<float> out(nx);
    std::vector<int64_t> idx(nx * 4);
    conv.run<float>({&g, xf.data(), yf.data(), bf.data()}, nx, ny, out.data());
    std::vector<double> got(out.begin(), out.end());
    EXPECT_LT(max_rel_err(ref, got.data()), kTolF32);
    // Each variant sums over its own number of lanes, so its roundings differ somewhere: equal
    // outputs would mean that a variant ran another one's code.
    for (const auto& s : sums) EXPECT_NE(s, out) << "two instruction sets gave bitwise equal sums";
    sums.push_back(out);
    knn.run<float>({xf.data(), yf.data()}, nx, ny, nullptr, idx.data());
    if (ref_knn.empty()) ref_knn = idx;
    EXPECT_EQ(idx, ref_knn);
  }
  kmr::cpu::set_isa_cap(-1);
  EXPECT_EQ(kmr::cpu::isa_level(), machine);
}

// The pack reducers at every instruction set this CPU runs, on the edge cases the scalar
// reductions are tested with (test_reductions.cpp): ties across lanes and blocks go to the
// smallest index, NaN propagates (and sorts last in KMin), LogSumExp with infinities. The
// formulas pass a j-variable through: SqDist(X,Y) = y^2 with x = 0; -G*SqDist(X,Y)+B = b and
// Exp(-G*SqDist(X,Y))*B = b with g = 0, x = y = 0. Expected: the scalar reduction, in j order.
template <class Red>
std::vector<float> scalar_reduce(int K, const std::vector<float>& f) {
  Red red{K};
  std::vector<float> acc(red.acc_dim());
  std::vector<long long> idx(red.idx_dim());
  red.init(acc.data(), idx.data());
  for (std::size_t j = 0; j < f.size(); ++j) red.accumulate(acc.data(), idx.data(), &f[j], (long long)j);
  return kmr_test::finalize_joined<float>(red, acc.data(), idx.data());
}

void expect_same(const std::vector<float>& want, const std::vector<float>& got, const std::string& what) {
  ASSERT_EQ(want.size(), got.size()) << what;
  for (std::size_t s = 0; s < want.size(); ++s) {
    if (std::isnan(want[s])) {
      EXPECT_TRUE(std::isnan(got[s])) << what << " slot " << s;
    } else if (std::isinf(want[s]) || want[s] == std::floor(want[s])) {
      EXPECT_EQ(want[s], got[s]) << what << " slot " << s;
    } else {
      EXPECT_NEAR(want[s], got[s], 1e-5 * (1 + std::abs(want[s]))) << what << " slot " << s;
    }
  }
}

TEST(GenredPackReducers, EdgeCasesEveryIsa) {
  const std::vector<std::string> sq = {"X = Vi(1)", "Y = Vj(1)"};
  const std::vector<std::string> gb = {"G = Pm(1)", "X = Vi(1)", "Y = Vj(1)", "B = Vj(1)"};
  kmr::GenredOptions k5;
  k5.opt_arg = 5;
  kmr::Genred amin("SqDist(X,Y)", sq, "ArgMin", 1), minarg("SqDist(X,Y)", sq, "Min_ArgMin", 1),
      kmin("SqDist(X,Y)", sq, "KMin", 1, k5), akmin("SqDist(X,Y)", sq, "ArgKMin", 1, k5),
      lse("-G*SqDist(X,Y)+B", gb, "LogSumExp", 1), sum("Exp(-G*SqDist(X,Y))*B", gb, "Sum", 1);
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  // y values (y^2 for the SqDist ones): ties within and across lanes and blocks, NaN, infinities.
  std::vector<std::vector<float>> cases;
  std::vector<float> ties(50, 1.0f);
  ties[10] = ties[20] = ties[30] = 0.0f;
  cases.push_back(ties);
  std::vector<float> far(1000, 2.0f);  // ties at j = 3, 300, 301, 777: the last lane groups and blocks
  far[777] = far[300] = far[301] = far[3] = 0.5f;
  cases.push_back(far);
  for (int pos : {0, 5, 17, 299}) {
    std::vector<float> n(300, 1.5f);
    for (int j = 0; j < 300; ++j) n[j] = 1.0f + float(j % 7) / 8;
    n[pos] = nan;
    cases.push_back(n);
  }
  cases.push_back({-inf, -inf, -inf});
  cases.push_back({-inf, 0.0f, -inf, 1.0f, 2.0f, -inf, inf, 3.0f, inf});
  cases.push_back({1000.0f, 999.0f, -1e30f, 1e30f, 1e30f});
  const float zero = 0.0f;
  for (int level = kmr::cpu::isa_level(); level >= 0; --level) {
    kmr::cpu::set_isa_cap(level);
    for (std::size_t c = 0; c < cases.size(); ++c) {
      const std::string what = std::string(kmr::cpu::isa_level_name(level)) + " case " + std::to_string(c);
      const std::vector<float>& y = cases[c];
      const int64_t ny = int64_t(y.size());
      std::vector<float> y2(y.size()), zeros(y.size(), 0.0f);
      for (std::size_t j = 0; j < y.size(); ++j) y2[j] = y[j] * y[j];
      const float x[2] = {0.0f, 0.0f};
      auto run = [&](kmr::Genred& r, std::vector<const void*> args) {
        const int od = r.out_dim(), oid = r.out_idx_dim();
        std::vector<float> out(std::size_t(2 * od) + 1);
        std::vector<int64_t> oidx(std::size_t(2 * oid) + 1);
        r.run(kmr::DType::Float32, args.data(), args.size(), 2, ny, out.data(), oidx.data());
        for (int s = 0; s < od; ++s)  // both rows alike
          EXPECT_TRUE(out[s] == out[od + s] || (std::isnan(out[s]) && std::isnan(out[od + s]))) << what;
        for (int s = 0; s < oid; ++s) EXPECT_EQ(oidx[s], oidx[oid + s]) << what;
        std::vector<float> joined(out.begin(), out.begin() + od);  // values, then indices
        for (int s = 0; s < oid; ++s) joined.push_back(float(oidx[s]));
        return joined;
      };
      if (c < cases.size() - 3) {  // the KMin family sorts y^2
        expect_same(scalar_reduce<kmr::ArgMinReduction<float, 1>>(0, y2), run(amin, {x, y.data()}), what + " ArgMin");
        expect_same(scalar_reduce<kmr::Min_ArgMinReduction<float, 1>>(0, y2), run(minarg, {x, y.data()}),
                    what + " Min_ArgMin");
        expect_same(scalar_reduce<kmr::KMinReduction<float, 1>>(5, y2), run(kmin, {x, y.data()}), what + " KMin");
        expect_same(scalar_reduce<kmr::ArgKMinReduction<float, 1>>(5, y2), run(akmin, {x, y.data()}),
                    what + " ArgKMin");
      }
      expect_same(scalar_reduce<kmr::LogSumExpReduction<float, 1>>(0, y), run(lse, {&zero, x, zeros.data(), y.data()}),
                  what + " LogSumExp");
      if (c >= 2 && c < 6) {  // NaN propagates through the sums
        EXPECT_TRUE(std::isnan(run(sum, {&zero, x, zeros.data(), y.data()})[0])) << what << " Sum";
      }
    }
  }
  kmr::cpu::set_isa_cap(-1);
}

// RunOptions::interrupt: a set flag stops the run with Error(Interrupted); the routine then runs again.
TEST_F(GenredTest, InterruptThrowsInterruptedAndTheRoutineStaysUsable) {
  kmr::Genred conv("Exp(-G*SqDist(X,Y))*B", {"G = Pm(1)", "X = Vi(3)", "Y = Vj(3)", "B = Vj(2)"}, "Sum", 1);
  const int nx = 40, ny = 70;
  const double g = 0.5;
  const auto x = random_vec<double>(nx * 3, rng_), y = random_vec<double>(ny * 3, rng_),
             b = random_vec<double>(ny * 2, rng_);
  const void* args[4] = {&g, x.data(), y.data(), b.data()};
  std::vector<double> out(nx * 2);
  volatile int flag = 1;
  kmr::RunOptions o;
  o.interrupt = &flag;
  try {
    conv.run(kmr::DType::Float64, args, 4, nx, ny, out.data(), o);
    FAIL() << "no exception";
  } catch (const kmr::Error& e) {
    EXPECT_EQ(e.kind(), kmr::ErrorKind::Interrupted) << e.what();
  }
  flag = 0;
  conv.run(kmr::DType::Float64, args, 4, nx, ny, out.data(), o);
  EXPECT_LT(max_rel_err(naive_gauss(g, x, y, b, 3, 2), out.data()), kTolF64);
}

// RunOptions: batches (one argument shared) and block-sparse ranges through the C++ API, against naive_gauss
// on the slices each batch / block reduces over; malformed ranges throw Error(Value).
TEST_F(GenredTest, BatchesAndRangesThroughRunOptions) {
  kmr::Genred conv("Exp(-G*SqDist(X,Y))*B", {"G = Pm(1)", "X = Vi(3)", "Y = Vj(3)", "B = Vj(2)"}, "Sum", 1);
  const int nx = 13, ny = 17, nb = 3;
  const double g[nb] = {0.5, 1.0, 2.0};
  const auto x = random_vec<double>(std::size_t(nb) * nx * 3, rng_), y = random_vec<double>(ny * 3, rng_);
  const auto b = random_vec<double>(std::size_t(nb) * ny * 2, rng_);
  std::vector<double> out(std::size_t(nb) * nx * 2);
  kmr::RunOptions o;
  o.nbatch = nb;
  o.batch_strides = {1, nx * 3, 0, ny * 2};  // y is shared by the batches
  const void* args[4] = {g, x.data(), y.data(), b.data()};
  conv.run(kmr::DType::Float64, args, 4, nx, ny, out.data(), o);
  for (int t = 0; t < nb; ++t) {
    const std::vector<double> xt(x.begin() + t * nx * 3, x.begin() + (t + 1) * nx * 3);
    const std::vector<double> bt(b.begin() + t * ny * 2, b.begin() + (t + 1) * ny * 2);
    EXPECT_LT(max_rel_err(naive_gauss(g[t], xt, y, bt, 3, 2), out.data() + t * nx * 2), kTolF64) << "batch " << t;
  }

  // rows [2, 9) reduce over j in [0, 5) and [10, 17); rows [9, 13) over nothing; rows [0, 2) are in no block.
  const std::int64_t ri[] = {2, 9, 9, 13}, si[] = {2, 2}, rj[] = {0, 5, 10, 17};
  const std::int64_t rj_t[] = {0, 17}, sj_t[] = {1}, ri_t[] = {2, 9};  // the transpose (not used by axis 1)
  kmr::BlockRanges r;
  r.ranges_i = ri;
  r.slices_i = si;
  r.redranges_j = rj;
  r.nranges_i = 2;
  r.nredranges_j = 2;
  r.ranges_j = rj_t;
  r.slices_j = sj_t;
  r.redranges_i = ri_t;
  r.nranges_j = 1;
  r.nredranges_i = 1;
  kmr::RunOptions ro;
  ro.ranges = &r;
  std::vector<double> y2(y.begin(), y.begin() + 5 * 3), b2(b.begin(), b.begin() + 5 * 2);
  y2.insert(y2.end(), y.begin() + 10 * 3, y.end());
  b2.insert(b2.end(), b.begin() + 10 * 2, b.begin() + 17 * 2);
  const std::vector<double> x2(x.begin() + 2 * 3, x.begin() + 9 * 3);
  const std::vector<double> want = naive_gauss(g[0], x2, y2, b2, 3, 2);
  const void* args1[4] = {g, x.data(), y.data(), b.data()};
  std::vector<double> out1(nx * 2, -1.0);
  conv.run(kmr::DType::Float64, args1, 4, nx, ny, out1.data(), ro);
  EXPECT_LT(max_rel_err(want, out1.data() + 2 * 2), kTolF64);
  for (int i : {0, 1, 9, 10, 11, 12}) EXPECT_EQ(out1[i * 2], 0.0) << "row " << i;

  const std::int64_t bad[] = {2, 14, 14, 14};  // past nx
  r.ranges_i = bad;
  EXPECT_THROW(conv.run(kmr::DType::Float64, args1, 4, nx, ny, out1.data(), ro), kmr::Error);
  r.ranges_i = ri;
  o.ranges = &r;  // ranges with batches: refused, as KeOps
  EXPECT_THROW(conv.run(kmr::DType::Float64, args, 4, nx, ny, out.data(), o), kmr::Error);
}
