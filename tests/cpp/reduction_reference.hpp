// Naive double-precision references for the reductions (one row i), shared by
// test_reductions.cpp and test_cpu_driver.cpp, and the comparison helper.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace kmr_test {

// Tolerances, relative to the scale of each output (see Expected::scale).
constexpr double kTolF32 = 1e-5;   // float32 data or float32 accumulator, M ~ 1e3
constexpr double kTolF64 = 1e-12;  // all double

template <class TA, class T>
constexpr double tol_for() {
  return (sizeof(TA) < 8 || sizeof(T) < 8) ? kTolF32 : kTolF64;
}

// Base seed: KMR_TEST_SEED if set, else a fixed one (printed by every trace).
inline uint64_t base_seed() {
  const char* s = std::getenv("KMR_TEST_SEED");
  return s ? std::strtoull(s, nullptr, 10) : 20240611ull;
}

struct Expected {
  std::vector<double> val;    // expected output (out_dim values, then out_idx_dim indices)
  std::vector<double> scale;  // 0 or non-finite val: must match exactly; else |out - val| <= tol * scale
};

inline double inf() { return std::numeric_limits<double>::infinity(); }
inline double nan() { return std::numeric_limits<double>::quiet_NaN(); }

// f: [M][DIMF] row-major, the formula's values for one row i. K: option of the KMin family.
inline Expected naive_reduce(const std::string& name, const std::vector<double>& f, int64_t M, int DIMF, int K) {
  Expected e;
  auto at = [&](int64_t j, int d) { return f[size_t(j * DIMF + d)]; };
  auto put = [&](double v, double s) {
    e.val.push_back(v);
    e.scale.push_back(s);
  };
  if (name == "Sum" || name == "SumKahan") {
    for (int d = 0; d < DIMF; ++d) {
      double s = 0, a = 0;
      for (int64_t j = 0; j < M; ++j) s += at(j, d), a += std::fabs(at(j, d));
      put(s, a);
    }
  } else if (name == "Min" || name == "Max" || name == "ArgMin" || name == "ArgMax" || name == "Min_ArgMin" ||
             name == "Max_ArgMax") {
    const bool is_max = name.find("Max") != std::string::npos;
    std::vector<double> best(DIMF, is_max ? -inf() : inf()), arg(DIMF, -1);
    for (int d = 0; d < DIMF; ++d)
      for (int64_t j = 0; j < M; ++j) {  // NaN beats numbers; ties keep the first
        const double x = at(j, d), b = best[d];
        const bool win = arg[d] < 0 || (std::isnan(x) ? !std::isnan(b) : !std::isnan(b) && (is_max ? x > b : x < b));
        if (win) best[d] = x, arg[d] = double(j);
      }
    const bool vals = name == "Min" || name == "Max" || name.find('_') != std::string::npos;
    const bool args = name.rfind("Arg", 0) == 0 || name.find('_') != std::string::npos;
    if (vals)
      for (int d = 0; d < DIMF; ++d) put(best[d], 0);
    if (args)
      for (int d = 0; d < DIMF; ++d) put(arg[d], 0);
  } else if (name == "KMin" || name == "ArgKMin" || name == "KMin_ArgKMin") {
    std::vector<double> v(size_t(K) * DIMF, inf()), ix(size_t(K) * DIMF, -1);
    for (int d = 0; d < DIMF; ++d) {
      std::vector<std::pair<double, int64_t>> col;
      for (int64_t j = 0; j < M; ++j) col.push_back({at(j, d), j});
      std::stable_sort(col.begin(), col.end(), [](const auto& a, const auto& b) {
        if (std::isnan(a.first) || std::isnan(b.first)) return !std::isnan(a.first) && std::isnan(b.first);
        return a.first < b.first;
      });
      for (int r = 0; r < K && r < int64_t(col.size()); ++r)
        v[r * DIMF + d] = col[r].first, ix[r * DIMF + d] = double(col[r].second);
    }
    if (name != "ArgKMin")
      for (double x : v) put(x, 0);
    if (name != "KMin")
      for (double x : ix) put(x, 0);
  } else if ((name == "LogSumExp" && DIMF > 1) || name == "LogSumExpWeightVec" || name == "SumSoftMaxWeightVec") {
    // coordinate by coordinate: the scalar reference on column c (with its weights, column D + c)
    const bool weighted = name != "LogSumExp";
    const int D = weighted ? DIMF / 2 : DIMF;
    const std::string scalar = weighted ? name.substr(0, name.size() - 3) : name;
    for (int c = 0; c < D; ++c) {
      std::vector<double> col;
      for (int64_t j = 0; j < M; ++j) {
        col.push_back(at(j, c));
        if (weighted) col.push_back(at(j, D + c));
      }
      const Expected ec = naive_reduce(scalar, col, M, weighted ? 2 : 1, K);
      put(ec.val[0], ec.scale[0]);
    }
  } else if (name == "LogSumExp" || name == "LogSumExpWeight" || name == "SumSoftMaxWeight") {
    const bool weighted = name != "LogSumExp";
    const int D = weighted ? DIMF - 1 : 1;
    bool has_nan = false;
    double m = -inf();
    for (int64_t j = 0; j < M; ++j) {
      has_nan |= std::isnan(at(j, 0));
      if (at(j, 0) > m) m = at(j, 0);
    }
    auto w = [&](int64_t j, int q) { return weighted ? at(j, 1 + q) : 1.0; };
    for (int q = 0; q < D; ++q) {
      double s = 0, s0 = 0, sa = 0;
      for (int64_t j = 0; j < M; ++j) {
        const double x = at(j, 0);
        if (x == -inf()) continue;
        const double ex = (x == m) ? 1.0 : std::exp(x - m);
        s += ex * w(j, q), s0 += ex, sa += ex * std::fabs(w(j, q));
      }
      if (name == "SumSoftMaxWeight") {
        put(has_nan ? nan() : s / s0, has_nan ? 0 : sa / s0);
      } else {
        const double v = has_nan ? nan() : (m == -inf() ? -inf() : m + std::log(s));
        put(v, 1 + std::fabs(v) + sa / std::fabs(s));  // sa / |s|: cancellation of signed weights
      }
    }
  } else {
    ADD_FAILURE() << "no reference for reduction " << name;
  }
  return e;
}

// The finalized output of one row as one vector: the values, then the int64 indices as T (the
// references list them so; test sizes keep them exact).
template <class T, class Red, class TA>
std::vector<T> finalize_joined(const Red& red, const TA* acc, const long long* idx) {
  std::vector<T> out(size_t(red.out_dim()) + 1);  // + 1: never an empty vector's null data()
  std::vector<long long> oi(size_t(red.out_idx_dim()) + 1);
  red.template finalize<T>(out.data(), oi.data(), acc, idx);
  out.resize(size_t(red.out_dim()));
  for (int s = 0; s < red.out_idx_dim(); ++s) out.push_back(T(oi[size_t(s)]));
  return out;
}

// Checks out[0..n) against e (n = e.val.size()) with tolerance tol.
template <class T>
void expect_matches(const T* out, const Expected& e, double tol, const std::string& what) {
  for (size_t s = 0; s < e.val.size(); ++s) {
    const double o = double(out[s]), v = e.val[s];
    if (std::isnan(v)) {
      EXPECT_TRUE(std::isnan(o)) << what << " slot " << s << ": got " << o << ", want NaN";
    } else if (e.scale[s] == 0 || !std::isfinite(v)) {
      EXPECT_EQ(o, double(T(v))) << what << " slot " << s;
    } else {
      EXPECT_LE(std::fabs(o - v), tol * e.scale[s]) << what << " slot " << s << ": got " << o << ", want " << v;
    }
  }
}

}  // namespace kmr_test
