// Reductions on their own: accumulate/merge/finalize against naive double
// loops, ties, K edge cases, merge-order independence, Kahan, LogSumExp with
// infinities and huge values, NaN, empty input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kmr/reduction/reduction.hpp"
#include "reduction_reference.hpp"

using namespace kmr_test;

namespace {

enum class Data { Uniform, Ties, Wide };

// M rows of DIMF values. Ties: a few integers. Wide: LSE-friendly [-30, 30].
// Weighted LSE/softmax (WEIGHTS): slots wfrom.. are positive weights (1.., or D.. for the *Vec ones).
template <class T>
std::vector<T> make_data(uint64_t seed, int64_t M, int DIMF, Data kind, bool weights, int wfrom = 1) {
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<double> u(-1, 1), w(0.1, 2);
  std::uniform_int_distribution<int> t(-2, 2);
  std::vector<T> f(size_t(M * DIMF));
  for (int64_t j = 0; j < M; ++j)
    for (int d = 0; d < DIMF; ++d) {
      double x = kind == Data::Ties ? t(g) : kind == Data::Wide ? 30 * u(g) : u(g);
      if (weights && d >= wfrom) x = w(g);
      f[size_t(j * DIMF + d)] = T(x);
    }
  return f;
}

template <class T>
std::vector<double> to_double(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}

// Sequential: init, accumulate j = 0..M-1, finalize.
template <class Red, class TA, class T>
std::vector<T> reduce_seq(const Red& red, const std::vector<T>& f, int64_t M, int DIMF) {
  std::vector<TA> acc(red.acc_dim());
  std::vector<long long> idx(red.idx_dim());
  red.init(acc.data(), idx.data());
  for (int64_t j = 0; j < M; ++j) red.accumulate(acc.data(), idx.data(), f.data() + j * DIMF, j);
  return finalize_joined<T>(red, acc.data(), idx.data());
}

// Split [0, M) at random cuts (empty pieces allowed), reduce each piece into a
// fresh accumulator, merge the pieces in a random order.
template <class Red, class TA, class T>
std::vector<T> reduce_split(const Red& red, const std::vector<T>& f, int64_t M, int DIMF, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::vector<int64_t> cuts = {0, M};
  for (int c = 0; c < 6; ++c) cuts.push_back(M ? int64_t(g() % uint64_t(M + 1)) : 0);
  std::sort(cuts.begin(), cuts.end());
  const size_t np = cuts.size() - 1;
  std::vector<std::vector<TA>> accs(np, std::vector<TA>(red.acc_dim()));
  std::vector<std::vector<long long>> idxs(np, std::vector<long long>(red.idx_dim()));
  for (size_t p = 0; p < np; ++p) {
    red.init(accs[p].data(), idxs[p].data());
    for (int64_t j = cuts[p]; j < cuts[p + 1]; ++j)
      red.accumulate(accs[p].data(), idxs[p].data(), f.data() + j * DIMF, j);
  }
  std::vector<size_t> order(np);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), g);
  std::vector<TA> acc(red.acc_dim());
  std::vector<long long> idx(red.idx_dim());
  red.init(acc.data(), idx.data());
  for (size_t p : order) red.merge(acc.data(), idx.data(), accs[p].data(), idxs[p].data());
  return finalize_joined<T>(red, acc.data(), idx.data());
}

template <template <class, int> class R, class TA, class T, int DIMF>
void check_naive(uint64_t seed, int64_t M, int K, Data kind) {
  using Red = R<TA, DIMF>;
  const std::string name = Red::NAME;
  const bool vec = name == "LogSumExpWeightVec" || name == "SumSoftMaxWeightVec";
  const bool weights = name == "LogSumExpWeight" || name == "SumSoftMaxWeight" || vec;
  SCOPED_TRACE(name + " DIMF=" + std::to_string(DIMF) + " M=" + std::to_string(M) + " K=" + std::to_string(K) +
               " TA=" + (sizeof(TA) == 4 ? "f32" : "f64") + " T=" + (sizeof(T) == 4 ? "f32" : "f64") +
               " data=" + std::to_string(int(kind)) + " seed=" + std::to_string(seed));
  const auto f = make_data<T>(seed, M, DIMF, kind, weights, vec ? DIMF / 2 : 1);
  const Expected e = naive_reduce(name, to_double(f), M, DIMF, K);
  Red red{K};
  ASSERT_EQ(size_t(red.out_dim() + red.out_idx_dim()), e.val.size());
  const auto seq = reduce_seq<Red, TA>(red, f, M, DIMF);
  expect_matches(seq.data(), e, tol_for<TA, T>(), "sequential");
  const auto split = reduce_split<Red, TA>(red, f, M, DIMF, seed + 1);
  expect_matches(split.data(), e, tol_for<TA, T>(), "split+merge");
}

template <class TA, class T>
void check_all(uint64_t seed, int64_t M, int K, Data kind) {
  using namespace kmr;
  check_naive<SumReduction, TA, T, 1>(seed, M, K, kind);
  check_naive<SumReduction, TA, T, 3>(seed, M, K, kind);
  check_naive<SumKahanReduction, TA, T, 1>(seed, M, K, kind);
  check_naive<SumKahanReduction, TA, T, 3>(seed, M, K, kind);
  check_naive<MinReduction, TA, T, 1>(seed, M, K, kind);
  check_naive<MinReduction, TA, T, 3>(seed, M, K, kind);
  check_naive<MaxReduction, TA, T, 1>(seed, M, K, kind);
  check_naive<MaxReduction, TA, T, 3>(seed, M, K, kind);
  check_naive<ArgMinReduction, TA, T, 1>(seed, M, K, kind);
  check_naive<ArgMinReduction, TA, T, 3>(seed, M, K, kind);
  check_naive<ArgMaxReduction, TA, T, 1>(seed, M, K, kind);
  check_naive<ArgMaxReduction, TA, T, 3>(seed, M, K, kind);
  check_naive<Min_ArgMinReduction, TA, T, 1>(seed, M, K, kind);
  check_naive<Min_ArgMinReduction, TA, T, 3>(seed, M, K, kind);
  check_naive<Max_ArgMaxReduction, TA, T, 1>(seed, M, K, kind);
  check_naive<Max_ArgMaxReduction, TA, T, 3>(seed, M, K, kind);
  check_naive<KMinReduction, TA, T, 1>(seed, M, K, kind);
  check_naive<KMinReduction, TA, T, 3>(seed, M, K, kind);
  check_naive<ArgKMinReduction, TA, T, 1>(seed, M, K, kind);
  check_naive<ArgKMinReduction, TA, T, 3>(seed, M, K, kind);
  check_naive<KMin_ArgKMinReduction, TA, T, 1>(seed, M, K, kind);
  check_naive<KMin_ArgKMinReduction, TA, T, 3>(seed, M, K, kind);
  check_naive<LogSumExpReduction, TA, T, 1>(seed, M, K, kind);
  check_naive<LogSumExpWeightReduction, TA, T, 2>(seed, M, K, kind);
  check_naive<LogSumExpWeightReduction, TA, T, 4>(seed, M, K, kind);
  check_naive<SumSoftMaxWeightReduction, TA, T, 2>(seed, M, K, kind);
  check_naive<SumSoftMaxWeightReduction, TA, T, 4>(seed, M, K, kind);
  check_naive<LogSumExpReduction, TA, T, 3>(seed, M, K, kind);  // coordinate by coordinate
  check_naive<LogSumExpWeightVecReduction, TA, T, 2>(seed, M, K, kind);
  check_naive<LogSumExpWeightVecReduction, TA, T, 6>(seed, M, K, kind);
  check_naive<SumSoftMaxWeightVecReduction, TA, T, 2>(seed, M, K, kind);
  check_naive<SumSoftMaxWeightVecReduction, TA, T, 6>(seed, M, K, kind);
}

template <class TA, class T>
void check_all_sizes(uint64_t seed) {
  for (Data kind : {Data::Uniform, Data::Ties, Data::Wide})
    for (int64_t M : {1, 7, 1000})
      for (int K : {1, 4})
        if (!::testing::Test::HasFailure()) check_all<TA, T>(seed + uint64_t(M) * 10 + uint64_t(K), M, K, kind);
}

}  // namespace

TEST(Reductions, MatchNaiveFloat) { check_all_sizes<float, float>(base_seed()); }
TEST(Reductions, MatchNaiveDouble) { check_all_sizes<double, double>(base_seed() + 100); }
TEST(Reductions, MatchNaiveFloatDataDoubleAcc) { check_all_sizes<double, float>(base_seed() + 200); }

TEST(Reductions, NamesAndAggregateInit) {
  EXPECT_STREQ((kmr::SumReduction<float, 1>::NAME), "Sum");
  EXPECT_STREQ((kmr::SumKahanReduction<float, 1>::NAME), "SumKahan");
  EXPECT_STREQ((kmr::Min_ArgMinReduction<float, 1>::NAME), "Min_ArgMin");
  EXPECT_STREQ((kmr::KMin_ArgKMinReduction<float, 1>::NAME), "KMin_ArgKMin");
  EXPECT_STREQ((kmr::LogSumExpReduction<float, 1>::NAME), "LogSumExp");
  EXPECT_STREQ((kmr::SumSoftMaxWeightReduction<float, 2>::NAME), "SumSoftMaxWeight");
  kmr::KMin_ArgKMinReduction<double, 3> r{5};
  EXPECT_EQ(r.k, 5);
  EXPECT_EQ(r.acc_dim(), 15);
  EXPECT_EQ(r.idx_dim(), 15);
  EXPECT_EQ(r.out_dim(), 15);
  EXPECT_EQ(r.out_idx_dim(), 15);
  EXPECT_EQ((kmr::Max_ArgMaxReduction<float, 3>{0}.out_dim()), 3);
  EXPECT_EQ((kmr::Max_ArgMaxReduction<float, 3>{0}.out_idx_dim()), 3);
  EXPECT_EQ((kmr::ArgKMinReduction<float, 3>{4}.out_dim()), 0);
  EXPECT_EQ((kmr::ArgKMinReduction<float, 3>{4}.out_idx_dim()), 12);
  EXPECT_EQ((kmr::SumReduction<float, 3>{0}.out_idx_dim()), 0);
  EXPECT_EQ((kmr::SumSoftMaxWeightReduction<float, 4>{0}.out_dim()), 3);
  EXPECT_EQ((kmr::LogSumExpWeightReduction<float, 4>{0}.out_dim()), 3);
}

// Equal values: the smallest index wins, whatever the merge order.
TEST(Reductions, TiesGoToSmallestIndex) {
  const int64_t M = 50;
  std::vector<float> f(M, 1.0f);
  f[10] = f[20] = f[30] = 0.0f;  // three minima
  f[5] = f[15] = 2.0f;           // two maxima
  for (uint64_t s = 0; s < 20; ++s) {
    SCOPED_TRACE("merge seed " + std::to_string(s));
    auto a = reduce_split<kmr::ArgMinReduction<float, 1>, float>({0}, f, M, 1, s);
    EXPECT_EQ(a[0], 10.0f);
    auto b = reduce_split<kmr::Max_ArgMaxReduction<float, 1>, float>({0}, f, M, 1, s);
    EXPECT_EQ(b[0], 2.0f);
    EXPECT_EQ(b[1], 5.0f);
    auto k = reduce_split<kmr::ArgKMinReduction<float, 1>, float>({5}, f, M, 1, s);
    EXPECT_EQ(k, (std::vector<float>{10, 20, 30, 0, 1}));
  }
}

TEST(Reductions, KEdgeCases) {
  const uint64_t seed = base_seed() + 300;
  SCOPED_TRACE("seed " + std::to_string(seed));
  const int64_t M = 9;
  const auto f = make_data<double>(seed, M, 3, Data::Uniform, false);
  // K = 1 is Min_ArgMin.
  auto k1 = reduce_seq<kmr::KMin_ArgKMinReduction<double, 3>, double>({1}, f, M, 3);
  auto m1 = reduce_seq<kmr::Min_ArgMinReduction<double, 3>, double>({0}, f, M, 3);
  EXPECT_EQ(k1, m1);
  // K = M: every value, sorted; K > M: padded with +inf / -1.
  for (int K : {int(M), int(M) + 3}) {
    auto kk = reduce_split<kmr::KMin_ArgKMinReduction<double, 3>, double>({K}, f, M, 3, seed);
    for (int d = 0; d < 3; ++d) {
      std::vector<double> col;
      for (int64_t j = 0; j < M; ++j) col.push_back(f[j * 3 + d]);
      std::sort(col.begin(), col.end());
      for (int r = 0; r < K; ++r) {
        const double v = kk[r * 3 + d], ix = kk[K * 3 + r * 3 + d];
        if (r < M) {
          EXPECT_EQ(v, col[r]);
          EXPECT_EQ(f[size_t(ix) * 3 + d], v);
        } else {
          EXPECT_EQ(v, inf());
          EXPECT_EQ(ix, -1.0);
        }
      }
    }
  }
  // K = 0: nothing to hold or write.
  kmr::KMinReduction<float, 3> k0{0};
  EXPECT_EQ(k0.acc_dim(), 0);
  EXPECT_EQ(k0.out_dim(), 0);
  kmr::KMinReduction<float, 3> kneg{-2};
  EXPECT_EQ(kneg.acc_dim(), 0);
}

// Summing 1e6 float32 values: Kahan stays at the float rounding of the result.
TEST(Reductions, KahanFloat32AtOneMillion) {
  const uint64_t seed = base_seed() + 400;
  SCOPED_TRACE("seed " + std::to_string(seed));
  const int64_t M = 1000000;
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<float> u(0.5f, 1.5f);
  std::vector<float> f(M);
  double exact = 0;
  for (auto& x : f) exact += (x = u(g));
  const double kahan = reduce_seq<kmr::SumKahanReduction<float, 1>, float>({0}, f, M, 1)[0];
  const double plain = reduce_seq<kmr::SumReduction<float, 1>, float>({0}, f, M, 1)[0];
  const double kahan_split = reduce_split<kmr::SumKahanReduction<float, 1>, float>({0}, f, M, 1, seed)[0];
  const double rk = std::fabs(kahan - exact) / exact, rp = std::fabs(plain - exact) / exact;
  const double rks = std::fabs(kahan_split - exact) / exact;
  std::printf("  float32 sum of 1e6: plain rel err %.2e, Kahan %.2e, Kahan split+merge %.2e\n", rp, rk, rks);
  constexpr double kKahanTol = 1e-7;  // ~ one float32 rounding of the result
  EXPECT_LT(rk, kKahanTol);
  EXPECT_LT(rks, kKahanTol);
  // 1e6 times 0.1f: plain float accumulation drifts by ~1%, Kahan does not.
  const std::vector<float> tenth(M, 0.1f);
  const double exact_tenth = double(0.1f) * double(M);
  const double kt = reduce_seq<kmr::SumKahanReduction<float, 1>, float>({0}, tenth, M, 1)[0];
  const double pt = reduce_seq<kmr::SumReduction<float, 1>, float>({0}, tenth, M, 1)[0];
  std::printf("  float32 sum of 1e6 x 0.1: plain rel err %.2e, Kahan %.2e\n", std::fabs(pt - exact_tenth) / exact_tenth,
              std::fabs(kt - exact_tenth) / exact_tenth);
  EXPECT_LT(std::fabs(kt - exact_tenth) / exact_tenth, kKahanTol);
  EXPECT_GT(std::fabs(pt - exact_tenth) / exact_tenth, 1e-3);
  // Kahan with an infinity: +inf, not NaN.
  std::vector<float> fi = {1.0f, float(inf()), 2.0f, 3.0f};
  EXPECT_EQ((reduce_seq<kmr::SumKahanReduction<float, 1>, float>({0}, fi, 4, 1)[0]), float(inf()));
  std::vector<float> fii = {1.0f, float(inf()), -float(inf())};
  EXPECT_TRUE(std::isnan(reduce_seq<kmr::SumKahanReduction<float, 1>, float>({0}, fii, 3, 1)[0]));
}

template <class TA>
double lse_of(std::vector<double> f) {
  std::vector<TA> ff(f.begin(), f.end());
  auto seq = reduce_seq<kmr::LogSumExpReduction<TA, 1>, TA>({0}, ff, int64_t(ff.size()), 1)[0];
  auto spl = reduce_split<kmr::LogSumExpReduction<TA, 1>, TA>({0}, ff, int64_t(ff.size()), 1, 7)[0];
  if (!(std::isnan(seq) && std::isnan(spl))) {
    EXPECT_EQ(seq, spl) << "split changes an exact case";
  }
  return double(seq);
}

TEST(Reductions, LogSumExpInfinitiesAndHugeValues) {
  const double ninf = -inf();
  EXPECT_EQ(lse_of<float>({ninf, ninf, ninf}), ninf);
  EXPECT_EQ(lse_of<double>({ninf}), ninf);
  EXPECT_EQ(lse_of<double>({}), ninf);
  EXPECT_NEAR(lse_of<double>({ninf, 0.0, ninf}), 0.0, 1e-15);
  EXPECT_NEAR(lse_of<double>({ninf, 0.0, 0.0, ninf}), std::log(2.0), 1e-15);
  EXPECT_EQ(lse_of<double>({1.0, inf(), 3.0}), inf());
  EXPECT_EQ(lse_of<float>({inf(), inf()}), inf());
  EXPECT_EQ(lse_of<double>({ninf, inf()}), inf());
  // exp would overflow / underflow: the running max keeps it finite.
  EXPECT_NEAR(lse_of<float>({1000.0, 999.0}), 1000.0 + std::log1p(std::exp(-1.0)), 1e-4);
  EXPECT_NEAR(lse_of<double>({-1000.0, -1001.0}), -1000.0 + std::log1p(std::exp(-1.0)), 1e-12);
  EXPECT_EQ(lse_of<float>({1e30, 0.0, -1e30}), float(1e30));
  EXPECT_EQ(lse_of<double>({1e30, 1e30 - 1e15}), 1e30);
  EXPECT_EQ(lse_of<float>({-1e30, -1e30}), float(-1e30));
  // A 1e30 shift of all values shifts the result (double keeps 16 digits of 1e30 + x).
  EXPECT_NEAR(lse_of<double>({1e30, 1e30}) / 1e30, 1.0, 1e-15);
  // Weighted, all -inf with mixed-sign weights: -inf, not NaN; SoftMax: NaN (0/0).
  std::vector<double> fw = {ninf, 2.0, ninf, -3.0};
  EXPECT_EQ((reduce_seq<kmr::LogSumExpWeightReduction<double, 2>, double>({0}, fw, 2, 2)[0]), ninf);
  EXPECT_TRUE(std::isnan(reduce_seq<kmr::SumSoftMaxWeightReduction<double, 2>, double>({0}, fw, 2, 2)[0]));
  // SoftMax of huge equal logits: the plain average of the weights.
  std::vector<float> fs = {1e30f, 1.0f, 1e30f, 3.0f, -1e30f, 100.0f};
  EXPECT_EQ((reduce_split<kmr::SumSoftMaxWeightReduction<float, 2>, float>({0}, fs, 3, 2, 3)[0]), 2.0f);
}

TEST(Reductions, NaNPropagates) {
  const double n = nan();
  for (size_t pos = 0; pos < 4; ++pos) {
    SCOPED_TRACE("NaN at " + std::to_string(pos));
    std::vector<double> f = {3.0, -1.0, 2.0, -1.0};
    f[pos] = n;
    EXPECT_TRUE(std::isnan(reduce_split<kmr::SumReduction<double, 1>, double>({0}, f, 4, 1, pos)[0]));
    EXPECT_TRUE(std::isnan(lse_of<double>(f)));
    EXPECT_TRUE(std::isnan(reduce_split<kmr::MinReduction<double, 1>, double>({0}, f, 4, 1, pos)[0]));
    EXPECT_TRUE(std::isnan(reduce_split<kmr::MaxReduction<double, 1>, double>({0}, f, 4, 1, pos)[0]));
    EXPECT_EQ((reduce_split<kmr::ArgMinReduction<double, 1>, double>({0}, f, 4, 1, pos)[0]), double(pos));
    EXPECT_EQ((reduce_split<kmr::ArgMaxReduction<double, 1>, double>({0}, f, 4, 1, pos)[0]), double(pos));
    // KMin: NaN after every number (torch.sort order).
    auto k = reduce_split<kmr::KMin_ArgKMinReduction<double, 1>, double>({4}, f, 4, 1, pos);
    EXPECT_TRUE(std::isnan(k[3]));
    EXPECT_EQ(k[7], double(pos));
    EXPECT_FALSE(std::isnan(k[0]));
  }
}

// ny = 0: finalize(init).
TEST(Reductions, EmptyInput) {
  std::vector<float> none;
  EXPECT_EQ((reduce_seq<kmr::SumReduction<float, 2>, float>({0}, none, 0, 2)), (std::vector<float>{0, 0}));
  EXPECT_EQ((reduce_seq<kmr::SumKahanReduction<float, 1>, float>({0}, none, 0, 1)[0]), 0.0f);
  EXPECT_EQ((reduce_seq<kmr::MinReduction<float, 1>, float>({0}, none, 0, 1)[0]), float(inf()));
  EXPECT_EQ((reduce_seq<kmr::MaxReduction<float, 1>, float>({0}, none, 0, 1)[0]), -float(inf()));
  EXPECT_EQ((reduce_seq<kmr::ArgMinReduction<float, 1>, float>({0}, none, 0, 1)[0]), -1.0f);
  EXPECT_EQ((reduce_seq<kmr::Max_ArgMaxReduction<float, 1>, float>({0}, none, 0, 1)),
            (std::vector<float>{-float(inf()), -1.0f}));
  EXPECT_EQ((reduce_seq<kmr::KMin_ArgKMinReduction<float, 1>, float>({2}, none, 0, 1)),
            (std::vector<float>{float(inf()), float(inf()), -1.0f, -1.0f}));
  EXPECT_EQ((reduce_seq<kmr::LogSumExpReduction<float, 1>, float>({0}, none, 0, 1)[0]), -float(inf()));
  EXPECT_EQ((reduce_seq<kmr::LogSumExpWeightReduction<float, 2>, float>({0}, none, 0, 2)[0]), -float(inf()));
  EXPECT_TRUE(std::isnan(reduce_seq<kmr::SumSoftMaxWeightReduction<float, 2>, float>({0}, none, 0, 2)[0]));
}

// LogSumExp of a vector formula and the coordinate-wise weighted ones (issue 10, section 7): each
// coordinate is the scalar reduction of its column (exactly, bit for bit), with its own running max;
// a column of -inf (or ny = 0) gives -inf (SoftMax: NaN), never NaN for LogSumExp; the state is one
// [m, sums] block per coordinate.
TEST(Reductions, LogSumExpCoordinateWise) {
  const double ninf = -inf();
  // 3 coordinates over 4 rows j: mixed, all -inf, huge values (their maxima differ by 1e3).
  const std::vector<double> f = {0.5, ninf, 1000.0, -2.0, ninf, 999.0, 3.0, ninf, -1000.0, ninf, ninf, 998.0};
  const auto v = reduce_split<kmr::LogSumExpReduction<double, 3>, double>({0}, f, 4, 3, 5);
  const auto s = reduce_seq<kmr::LogSumExpReduction<double, 3>, double>({0}, f, 4, 3);
  ASSERT_EQ(v.size(), 3u);
  for (int c = 0; c < 3; ++c) {
    std::vector<double> col;
    for (int j = 0; j < 4; ++j) col.push_back(f[size_t(j * 3 + c)]);
    EXPECT_EQ(s[size_t(c)], lse_of<double>(col)) << "coordinate " << c;  // the scalar reduction, bit for bit
  }
  EXPECT_NEAR(v[0], std::log(std::exp(0.5) + std::exp(-2.0) + std::exp(3.0)), 1e-14);
  EXPECT_EQ(v[1], ninf);
  EXPECT_NEAR(v[2], 1000.0 + std::log(1 + std::exp(-1.0) + std::exp(-2.0)), 1e-12);
  EXPECT_EQ((reduce_seq<kmr::LogSumExpReduction<float, 2>, float, float>({0}, {}, 0, 2)),
            (std::vector<float>{-float(inf()), -float(inf())}));
  // State layout and sizes.
  kmr::LogSumExpReduction<double, 3> r{0};
  EXPECT_EQ(r.acc_dim(), 6);
  EXPECT_EQ(r.out_dim(), 3);
  EXPECT_EQ((kmr::LogSumExpReduction<float, 1>{0}.acc_dim()), 2);
  EXPECT_EQ((kmr::LogSumExpWeightVecReduction<float, 6>{0}.acc_dim()), 6);
  EXPECT_EQ((kmr::LogSumExpWeightVecReduction<float, 6>{0}.out_dim()), 3);
  EXPECT_EQ((kmr::SumSoftMaxWeightVecReduction<float, 6>{0}.acc_dim()), 9);
  EXPECT_EQ((kmr::SumSoftMaxWeightVecReduction<float, 6>{0}.out_dim()), 3);
  EXPECT_STREQ((kmr::SumSoftMaxWeightVecReduction<float, 2>::NAME), "SumSoftMaxWeightVec");
  std::vector<double> acc(6);
  r.init(acc.data(), nullptr);
  r.accumulate(acc.data(), nullptr, f.data(), 0);
  EXPECT_EQ(acc, (std::vector<double>{0.5, 1.0, ninf, 0.0, 1000.0, 1.0}));
  // Coordinate-wise weights (Concat(f, g), f and g of dim 2): coordinate c is the scalar weighted one of
  // (f[c], g[c]); a column of -inf gives -inf (weighted LogSumExp) and NaN (SoftMax, 0/0).
  const std::vector<double> fw = {1.0, ninf, 2.0, 5.0, 3.0, ninf, 0.5, 7.0};  // rows [f0, f1, g0, g1]
  const auto lw = reduce_split<kmr::LogSumExpWeightVecReduction<double, 4>, double>({0}, fw, 2, 4, 3);
  EXPECT_NEAR(lw[0], std::log(2.0 * std::exp(1.0) + 0.5 * std::exp(3.0)), 1e-14);
  EXPECT_EQ(lw[1], ninf);
  const auto sw = reduce_split<kmr::SumSoftMaxWeightVecReduction<double, 4>, double>({0}, fw, 2, 4, 3);
  EXPECT_NEAR(sw[0], (2.0 * std::exp(1.0) + 0.5 * std::exp(3.0)) / (std::exp(1.0) + std::exp(3.0)), 1e-14);
  EXPECT_TRUE(std::isnan(sw[1]));
  // D = 1: the *Vec reductions are the scalar weighted ones.
  const std::vector<double> f1 = {0.3, 2.0, -1.0, 0.5, 2.0, 4.0};
  EXPECT_EQ((reduce_seq<kmr::LogSumExpWeightVecReduction<double, 2>, double>({0}, f1, 3, 2)),
            (reduce_seq<kmr::LogSumExpWeightReduction<double, 2>, double>({0}, f1, 3, 2)));
  EXPECT_EQ((reduce_seq<kmr::SumSoftMaxWeightVecReduction<double, 2>, double>({0}, f1, 3, 2)),
            (reduce_seq<kmr::SumSoftMaxWeightReduction<double, 2>, double>({0}, f1, 3, 2)));
}
