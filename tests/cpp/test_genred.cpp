// The C++ string API end to end: precompiled and JIT kernels against naive loops.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>

#include "cpu/isa.hpp"
#include "kmr/runtime/genred.hpp"

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
  ASSERT_EQ(knn.out_dim(), K);
  std::vector<double> out(nx * K);
  knn.run<double>({x.data(), y.data()}, nx, ny, out.data());
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
  EXPECT_THROW(kmr::Genred("X", {"X = Vi(3)"}, "Sum", 2), kmr::Error);            // axis
  EXPECT_THROW(kmr::Genred("X", {"X = Vi(3)"}, "Summ", 1), kmr::Error);           // reduction
  EXPECT_THROW(kmr::Genred("X+Y", {"X = Vi(3)", "Y = Vj(2)"}, "Sum", 1), kmr::Error);  // dims
  EXPECT_THROW(kmr::Genred("X", {"X = Vi(3)"}, "KMin", 1), kmr::Error);           // K missing
  EXPECT_THROW(kmr::Genred("X", {"X = Vi(3)"}, "LogSumExp", 1), kmr::Error);      // not scalar
  kmr::GenredOptions opt;
  opt.formula2 = "X";
  EXPECT_THROW(kmr::Genred("X", {"X = Vi(3)"}, "Sum", 1, opt), kmr::Error);       // formula2 on Sum
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
  std::vector<float> ref_knn;
  std::vector<std::vector<float>> sums;
  for (int level = machine; level >= 0; --level) {
    SCOPED_TRACE(kmr::cpu::isa_level_name(level));
    kmr::cpu::set_isa_cap(level);
    ASSERT_EQ(kmr::cpu::isa_level(), level);
    std::vector<float> out(nx), idx(nx * 4);
    conv.run<float>({&g, xf.data(), yf.data(), bf.data()}, nx, ny, out.data());
    std::vector<double> got(out.begin(), out.end());
    EXPECT_LT(max_rel_err(ref, got.data()), kTolF32);
    // Each variant sums over its own number of lanes, so its roundings differ somewhere: equal
    // outputs would mean that a variant ran another one's code.
    for (const auto& s : sums) EXPECT_NE(s, out) << "two instruction sets gave bitwise equal sums";
    sums.push_back(out);
    knn.run<float>({xf.data(), yf.data()}, nx, ny, idx.data());
    if (ref_knn.empty()) ref_knn = idx;
    EXPECT_EQ(idx, ref_knn);
  }
  kmr::cpu::set_isa_cap(-1);
  EXPECT_EQ(kmr::cpu::isa_level(), machine);
}
