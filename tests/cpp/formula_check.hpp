// Generic checkers for the formula layer (host only, double references).
//
//   check_op<F>(ref, dom)   F::eval (double and float) against a naive reference
//   check_grad<F, V>(dom)   Grad<F, V, E> against central finite differences of <F, E>
//   check_grads<F>(dom)     check_grad for every variable of F (i, j and parameters)
//   check_case<F>(ref, dom) both of the above: one line of an op table
//
// Random points come from a per-check generator seeded from the global seed
// (printed once; set KMR_TEST_SEED to replay) and the formula's canonical string.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "kmr/formula/formula.hpp"
#include "kmr/formula/print.hpp"

namespace kmrtest {

using kmr::CAT_I;
using kmr::CAT_J;
using kmr::CAT_PARAM;
template <int P, int D> using Vi = kmr::Var<P, D, kmr::CAT_I>;
template <int P, int D> using Vj = kmr::Var<P, D, kmr::CAT_J>;
template <int P, int D> using Pm = kmr::Var<P, D, kmr::CAT_PARAM>;

using Vec = std::vector<double>;
using Vals = std::vector<Vec>;  // Vals[pos] = values of variable pos

// Tolerances (|got - want| <= TOL * (1 + |want|)).
constexpr double kValueTol = 1e-12;      // double eval vs naive double reference
constexpr double kFloatValueTol = 1e-5;  // float eval vs the same reference
constexpr double kFdStep = 1e-5;         // central finite-difference step
constexpr double kGradTol = 1e-6;        // Grad (any order) vs finite differences
constexpr int kPoints = 4;               // random points per check
constexpr int kMaxTries = 100000;        // rejection sampling budget per point

inline std::uint64_t global_seed() {
  static const std::uint64_t seed = [] {
    const char* s = std::getenv("KMR_TEST_SEED");
    return s ? std::strtoull(s, nullptr, 10) : std::uint64_t(20240611);
  }();
  return seed;
}

// Prints the seed once per test binary.
class SeedEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    std::printf("[kmr] random seed %llu (set KMR_TEST_SEED to replay)\n",
                static_cast<unsigned long long>(global_seed()));
  }
};
inline ::testing::Environment* const kSeedEnv = ::testing::AddGlobalTestEnvironment(new SeedEnvironment);

inline std::mt19937_64 rng_for(const std::string& what) {
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a: stable across platforms
  for (unsigned char c : what) h = (h ^ c) * 1099511628211ull;
  return std::mt19937_64(global_seed() ^ h);
}

struct Range {
  double lo, hi;
};

// Where random points are drawn: every coordinate uniform in its variable's
// range with |x| >= margin, then fix (e.g. symmetrize), then kept if ok.
// The extra gradient-input variables E use the default range.
struct Domain {
  Range range{-1.5, 1.5};
  double margin = 0.0;
  std::map<int, Range> ranges;
  std::function<void(Vals&)> fix;
  std::function<bool(const Vals&)> ok;

  Domain& with(int pos, double lo, double hi) {
    ranges[pos] = Range{lo, hi};
    return *this;
  }
};
inline Domain in(double lo, double hi, double margin = 0.0) {
  Domain d;
  d.range = Range{lo, hi};
  d.margin = margin;
  return d;
}
inline Domain away_from_zero(double margin) { return in(-1.5, 1.5, margin); }

inline std::string show(const Vals& v) {
  std::ostringstream os;
  os.precision(17);
  for (size_t p = 0; p < v.size(); ++p) {
    os << (p ? " " : "") << "v" << p << "=[";
    for (size_t k = 0; k < v[p].size(); ++k) os << (k ? "," : "") << v[p][k];
    os << "]";
  }
  return os.str();
}

template <class F>
Vals sample(const Domain& d, std::mt19937_64& rng) {
  constexpr kmr::VarTable t = kmr::var_table<F>();
  for (int tries = 0; tries < kMaxTries; ++tries) {
    Vals v(t.n);
    for (int p = 0; p < t.n; ++p) {
      auto it = d.ranges.find(p);
      const Range r = it == d.ranges.end() ? d.range : it->second;
      std::uniform_real_distribution<double> u(r.lo, r.hi);
      v[p].resize(t.dim[p]);
      for (double& x : v[p]) {
        do x = u(rng);
        while (std::fabs(x) < d.margin);
      }
    }
    if (d.fix) d.fix(v);
    if (!d.ok || d.ok(v)) return v;
  }
  ADD_FAILURE() << "kmrtest: no admissible random point for " << kmr::formula_string<F>();
  return Vals(t.n);
}

// F(v) with value type T, returned in double.
template <class F, class T>
Vec eval_as(const Vals& v) {
  std::vector<std::vector<T>> tv(v.size());
  std::vector<const T*> ptrs(v.size());
  for (size_t p = 0; p < v.size(); ++p) {
    tv[p].assign(v[p].begin(), v[p].end());
    ptrs[p] = tv[p].data();
  }
  T out[F::DIM];
  F::eval(out, ptrs.data());
  return Vec(out, out + F::DIM);
}

inline double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t k = 0; k < a.size(); ++k) s += a[k] * b[k];
  return s;
}

inline ::testing::AssertionResult near(double got, double want, double tol) {
  if (std::fabs(got - want) <= tol * (1 + std::fabs(want))) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "got " << got << ", want " << want << " (tol " << tol << ")";
}

// Value of F against ref(v) -> Vec of size F::DIM.
template <class F, class Ref>
void check_op(Ref ref, const Domain& dom = Domain()) {
  const std::string name = kmr::formula_string<F>();
  SCOPED_TRACE("value of " + name + " seed " + std::to_string(global_seed()));
  auto rng = rng_for("value " + name);
  for (int i = 0; i < kPoints; ++i) {
    const Vals v = sample<F>(dom, rng);
    const Vec want = ref(v);
    ASSERT_EQ(want.size(), size_t(F::DIM)) << "reference has the wrong dim";
    const Vec got = eval_as<F, double>(v);
    const Vec gotf = eval_as<F, float>(v);
    for (int k = 0; k < F::DIM; ++k) {
      EXPECT_TRUE(near(got[k], want[k], kValueTol)) << "double, coord " << k << " at " << show(v);
      EXPECT_TRUE(near(gotf[k], want[k], kFloatValueTol)) << "float, coord " << k << " at " << show(v);
    }
  }
}

// Grad<F, V, E> (E a new variable, dim F) against the central difference of <F, E> along V.
template <class F, class V>
void check_grad(const Domain& dom = Domain()) {
  constexpr int n = kmr::var_table<F>().n;
  using E = kmr::Var<n, F::DIM, kmr::CAT_I>;
  using G = kmr::Grad<F, V, E>;
  static_assert(G::DIM == V::DIM, "Grad has the dim of V");
  const std::string name = kmr::formula_string<G>();
  SCOPED_TRACE(name + " seed " + std::to_string(global_seed()));
  auto rng = rng_for("grad " + name);
  for (int i = 0; i < kPoints; ++i) {
    const Vals v = sample<G>(dom, rng);
    const Vec got = eval_as<G, double>(v);
    for (int k = 0; k < V::DIM; ++k) {
      Vals vp = v, vm = v;
      vp[V::pos][k] += kFdStep;
      vm[V::pos][k] -= kFdStep;
      const double fd = (dot(eval_as<F, double>(vp), v[n]) - dot(eval_as<F, double>(vm), v[n])) / (2 * kFdStep);
      EXPECT_TRUE(near(got[k], fd, kGradTol)) << "d/d" << kmr::formula_string<V>() << "[" << k << "] at " << show(v);
    }
  }
}

template <class F, size_t... I>
void check_grads_impl(const Domain& dom, std::index_sequence<I...>) {
  static constexpr kmr::VarTable t = kmr::var_table<F>();
  // Gaps in the positions (dim 0) are skipped.
  (..., [&] {
    if constexpr (t.dim[I] > 0) check_grad<F, kmr::Var<int(I), t.dim[I], t.cat[I]>>(dom);
  }());
}

// Grad w.r.t. every variable of F.
template <class F>
void check_grads(const Domain& dom = Domain()) {
  check_grads_impl<F>(dom, std::make_index_sequence<kmr::var_table<F>().n>());
}

// One row of an op table: value, and first derivatives w.r.t. every variable.
template <class F, class Ref>
void check_case(Ref ref, const Domain& dom = Domain()) {
  check_op<F>(ref, dom);
  check_grads<F>(dom);
}

// Second derivatives: for every variable V of F, every first derivative of
// Grad<F, V, E> (w.r.t. the variables of F and E itself).
template <class F, size_t... I>
void check_grads2_impl(const Domain& dom, std::index_sequence<I...>) {
  static constexpr kmr::VarTable t = kmr::var_table<F>();
  using E = kmr::Var<t.n, F::DIM, kmr::CAT_I>;
  (..., [&] {
    if constexpr (t.dim[I] > 0) check_grads<kmr::Grad<F, kmr::Var<int(I), t.dim[I], t.cat[I]>, E>>(dom);
  }());
}
template <class F>
void check_grads2(const Domain& dom = Domain()) {
  check_grads2_impl<F>(dom, std::make_index_sequence<kmr::var_table<F>().n>());
}

// Naive references for elementwise ops on the variables 0, 1, 2 (dim-1 broadcasts).
inline double at(const Vec& a, size_t k) { return a.size() == 1 ? a[0] : a[k]; }
template <class Fn>
auto ref1(Fn f) {
  return [f](const Vals& v) {
    Vec r(v[0].size());
    for (size_t k = 0; k < r.size(); ++k) r[k] = f(v[0][k]);
    return r;
  };
}
template <class Fn>
auto ref2(Fn f) {
  return [f](const Vals& v) {
    Vec r(std::max(v[0].size(), v[1].size()));
    for (size_t k = 0; k < r.size(); ++k) r[k] = f(at(v[0], k), at(v[1], k));
    return r;
  };
}
template <class Fn>
auto ref3(Fn f) {
  return [f](const Vals& v) {
    Vec r(std::max(v[0].size(), std::max(v[1].size(), v[2].size())));
    for (size_t k = 0; k < r.size(); ++k) r[k] = f(at(v[0], k), at(v[1], k), at(v[2], k));
    return r;
  };
}
// A reference that ignores its input (constants).
inline auto constant(Vec c) {
  return [c](const Vals&) { return c; };
}

}  // namespace kmrtest
