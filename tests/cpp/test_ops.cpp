// Every formula op: value against a naive double reference, and Grad w.r.t.
// each of its variables against central finite differences (formula_check.hpp).
// Each line of the tables below is one op (or one broadcasting variant).
#include "formula_check.hpp"

namespace {

using namespace kmr;
using namespace kmrtest;

constexpr double kKinkMargin = 0.05;  // distance kept from the kinks of non-smooth ops
constexpr double kPoleMargin = 0.3;   // distance kept from the poles of 1/x, log...

double frac(double x) { return x - std::floor(x); }
bool away_from_integers(double x) { return frac(x) > kKinkMargin && frac(x) < 1 - kKinkMargin; }

double sign_ref(double x) { return x > 0 ? 1.0 : (x < 0 ? -1.0 : 0.0); }

// Symmetrizes the D x D matrix of variable pos.
std::function<void(Vals&)> symmetrize(int pos, int d) {
  return [pos, d](Vals& v) {
    for (int r = 0; r < d; ++r)
      for (int c = 0; c < r; ++c) v[pos][r * d + c] = v[pos][c * d + r];
  };
}

// f^T S f with S isotropic (1), diagonal (D) or full (D x D, row-major).
double weighted_sqnorm_ref(const Vec& s, const Vec& f) {
  const size_t d = f.size();
  double r = 0;
  if (s.size() == 1) {
    for (double x : f) r += s[0] * x * x;
  } else if (s.size() == d) {
    for (size_t k = 0; k < d; ++k) r += s[k] * f[k] * f[k];
  } else {
    for (size_t a = 0; a < d; ++a)
      for (size_t b = 0; b < d; ++b) r += f[a] * s[a * d + b] * f[b];
  }
  return r;
}
Vec sub(const Vec& a, const Vec& b) {
  Vec r(a.size());
  for (size_t k = 0; k < a.size(); ++k) r[k] = a[k] - b[k];
  return r;
}
double sqnorm_ref(const Vec& a) { return dot(a, a); }

// ---------------------------------------------------------------- arithmetic

TEST(FormulaOps, Arithmetic) {
  auto add = ref2([](double a, double b) { return a + b; });
  auto subtract = ref2([](double a, double b) { return a - b; });
  auto mult = ref2([](double a, double b) { return a * b; });
  auto divide = ref2([](double a, double b) { return a / b; });
  const Domain no_pole = away_from_zero(kPoleMargin);

  check_case<Add<Vi<0, 3>, Vj<1, 3>>>(add);
  check_case<Add<Vi<0, 1>, Vj<1, 3>>>(add);
  check_case<Add<Vi<0, 3>, Pm<1, 1>>>(add);
  check_case<Add<Vi<0, 1>, Vj<1, 1>>>(add);
  check_case<Subtract<Vi<0, 3>, Vj<1, 3>>>(subtract);
  check_case<Subtract<Pm<0, 1>, Vj<1, 3>>>(subtract);
  check_case<Subtract<Vi<0, 3>, Vj<1, 1>>>(subtract);
  check_case<Mult<Vi<0, 3>, Vj<1, 3>>>(mult);
  check_case<Mult<Pm<0, 1>, Vj<1, 3>>>(mult);
  check_case<Mult<Vi<0, 3>, Pm<1, 1>>>(mult);
  check_case<Divide<Vi<0, 3>, Vj<1, 3>>>(divide, no_pole);
  check_case<Divide<Vi<0, 1>, Vj<1, 3>>>(divide, no_pole);
  check_case<Divide<Vi<0, 3>, Pm<1, 1>>>(divide, no_pole);
  check_case<Minus<Vi<0, 3>>>(ref1([](double x) { return -x; }));
  check_case<Minus<Pm<0, 1>>>(ref1([](double x) { return -x; }));
  // A variable used twice: its adjoints add up.
  check_case<Mult<Vi<0, 3>, Sin<Vi<0, 3>>>>(ref1([](double x) { return x * std::sin(x); }));
  check_case<Subtract<Mult<Vi<0, 3>, Vj<1, 1>>, Divide<Vj<1, 1>, Vi<0, 3>>>>(
      ref2([](double x, double y) { return x * y - y / x; }), no_pole);
}

// --------------------------------------------------------------- elementwise

TEST(FormulaOps, ElementwiseUnary) {
  using X = Vi<0, 3>;
  const Domain positive = in(kPoleMargin, 2.0);
  const Domain no_pole = away_from_zero(kPoleMargin);
  const Domain no_kink = away_from_zero(kKinkMargin);
  Domain no_integer;
  no_integer.range = Range{-3, 3};
  no_integer.ok = [](const Vals& v) {
    for (double x : v[0])
      if (!away_from_integers(x)) return false;
    return true;
  };

  check_case<Exp<X>>(ref1([](double x) { return std::exp(x); }));
  check_case<Log<X>>(ref1([](double x) { return std::log(x); }), positive);
  check_case<Sqrt<X>>(ref1([](double x) { return std::sqrt(x); }), positive);
  check_case<Rsqrt<X>>(ref1([](double x) { return 1 / std::sqrt(x); }), positive);
  check_case<Square<X>>(ref1([](double x) { return x * x; }));
  check_case<Inv<X>>(ref1([](double x) { return 1 / x; }), no_pole);
  check_case<Sin<X>>(ref1([](double x) { return std::sin(x); }));
  check_case<Cos<X>>(ref1([](double x) { return std::cos(x); }));
  check_case<Atan<X>>(ref1([](double x) { return std::atan(x); }), in(-4, 4));
  check_case<Abs<X>>(ref1([](double x) { return std::fabs(x); }), no_kink);
  check_case<Sign<X>>(ref1(sign_ref), no_kink);
  check_case<Step<X>>(ref1([](double x) { return x >= 0 ? 1.0 : 0.0; }), no_kink);
  check_case<ReLU<X>>(ref1([](double x) { return x > 0 ? x : 0.0; }), no_kink);
  check_case<XLogX<X>>(ref1([](double x) { return x * std::log(x); }), in(0.1, 3));
  check_case<Floor<X>>(ref1([](double x) { return std::floor(x); }), no_integer);
  // Other categories as the operand.
  check_case<Exp<Vj<0, 2>>>(ref1([](double x) { return std::exp(x); }));
  check_case<Log<Pm<0, 1>>>(ref1([](double x) { return std::log(x); }), positive);
  // Sign, Step, Abs at exactly 0 (value only).
  check_op<Sign<X>>(ref1(sign_ref), in(0, 0));
  check_op<Step<X>>(ref1([](double) { return 1.0; }), in(0, 0));
  check_op<Abs<X>>(ref1([](double) { return 0.0; }), in(0, 0));
  check_op<ReLU<X>>(ref1([](double) { return 0.0; }), in(0, 0));
  check_op<XLogX<X>>(ref1([](double) { return 0.0; }), in(0, 0));
}

TEST(FormulaOps, Pow) {
  using X = Vi<0, 3>;
  const Domain no_pole = away_from_zero(kPoleMargin);
  check_case<Pow<X, 3>>(ref1([](double x) { return x * x * x; }));
  check_case<Pow<X, 2>>(ref1([](double x) { return x * x; }));
  check_case<Pow<X, 1>>(ref1([](double x) { return x; }));
  check_case<Pow<X, 0>>(ref1([](double) { return 1.0; }));
  check_case<Pow<X, -1>>(ref1([](double x) { return 1 / x; }), no_pole);
  check_case<Pow<X, -3>>(ref1([](double x) { return 1 / (x * x * x); }), no_pole);
  check_case<Pow<Pm<0, 1>, 5>>(ref1([](double x) { return std::pow(x, 5); }));
}

TEST(FormulaOps, ElementwiseBinaryTernary) {
  auto powf = ref2([](double a, double b) { return std::pow(a, b); });
  const Domain base_positive = Domain().with(0, kPoleMargin, 2.0);
  check_case<Powf<Vi<0, 3>, Vj<1, 3>>>(powf, base_positive);
  check_case<Powf<Vi<0, 3>, Pm<1, 1>>>(powf, base_positive);
  check_case<Powf<Pm<0, 1>, Vj<1, 3>>>(powf, base_positive);

  // clamp(x, a, b) with a < b, x away from a and b.
  auto clamp = ref3([](double x, double a, double b) { return x < a ? a : (x > b ? b : x); });
  Domain clamp_dom;
  clamp_dom.ok = [](const Vals& v) {
    for (size_t k = 0; k < v[0].size(); ++k) {
      const double x = v[0][k], a = at(v[1], k), b = at(v[2], k);
      if (!(a < b - kKinkMargin) || std::fabs(x - a) < kKinkMargin || std::fabs(x - b) < kKinkMargin) return false;
    }
    return true;
  };
  check_case<Clamp<Vi<0, 3>, Pm<1, 1>, Pm<2, 1>>>(clamp, clamp_dom);
  check_case<Clamp<Vi<0, 4>, Vj<1, 4>, Vj<2, 4>>>(clamp, clamp_dom);

  auto ifelse = ref3([](double c, double a, double b) { return c >= 0 ? a : b; });
  const Domain no_kink = away_from_zero(kKinkMargin);
  check_case<IfElse<Vi<0, 3>, Vj<1, 3>, Pm<2, 3>>>(ifelse, no_kink);
  check_case<IfElse<Vi<0, 1>, Vj<1, 3>, Pm<2, 1>>>(ifelse, no_kink);
  check_op<IfElse<Vi<0, 3>, Vj<1, 3>, Pm<2, 3>>>(ref3([](double, double a, double) { return a; }), in(0, 0));

  // mod(x, m, o) = x - m floor((x - o) / m), (x - o) / m away from integers.
  auto mod = ref3([](double x, double m, double o) { return x - m * std::floor((x - o) / m); });
  Domain mod_dom = in(-3, 3).with(1, 0.5, 2.0);
  mod_dom.ok = [](const Vals& v) {
    for (size_t k = 0; k < v[0].size(); ++k)
      if (!away_from_integers((v[0][k] - at(v[2], k)) / at(v[1], k))) return false;
    return true;
  };
  check_case<Mod<Vi<0, 3>, Pm<1, 1>, Vj<2, 1>>>(mod, mod_dom);
  check_case<Mod<Vi<0, 3>, Vj<1, 3>, Pm<2, 3>>>(mod, mod_dom);
}

// -------------------------------------------------------------------- vector

TEST(FormulaOps, Vector) {
  check_case<Sum<Vi<0, 4>>>([](const Vals& v) { return Vec{v[0][0] + v[0][1] + v[0][2] + v[0][3]}; });
  check_case<Sum<Pm<0, 1>>>([](const Vals& v) { return Vec{v[0][0]}; });
  check_case<SumT<Vj<0, 1>, 3>>([](const Vals& v) { return Vec(3, v[0][0]); });
  check_case<Scalprod<Vi<0, 3>, Vj<1, 3>>>([](const Vals& v) { return Vec{dot(v[0], v[1])}; });
  check_case<Scalprod<Pm<0, 1>, Vj<1, 1>>>([](const Vals& v) { return Vec{v[0][0] * v[1][0]}; });
  check_case<SqNorm2<Vi<0, 3>>>([](const Vals& v) { return Vec{sqnorm_ref(v[0])}; });
  check_case<Concat<Vi<0, 3>, Vj<1, 2>>>([](const Vals& v) {
    return Vec{v[0][0], v[0][1], v[0][2], v[1][0], v[1][1]};
  });
  check_case<Concat<Pm<0, 1>, Concat<Vi<1, 2>, Pm<0, 1>>>>([](const Vals& v) {
    return Vec{v[0][0], v[1][0], v[1][1], v[0][0]};
  });
  check_case<Extract<Vi<0, 5>, 1, 3>>([](const Vals& v) { return Vec{v[0][1], v[0][2], v[0][3]}; });
  check_case<Extract<Vj<0, 3>, 0, 3>>([](const Vals& v) { return v[0]; });
  check_case<ExtractT<Vi<0, 2>, 1, 5>>([](const Vals& v) { return Vec{0, v[0][0], v[0][1], 0, 0}; });
  check_case<Elem<Vi<0, 4>, 2>>([](const Vals& v) { return Vec{v[0][2]}; });
  check_case<Elem<Pm<0, 4>, 0>>([](const Vals& v) { return Vec{v[0][0]}; });
  check_case<ElemT<Vj<0, 1>, 1, 4>>([](const Vals& v) { return Vec{0, v[0][0], 0, 0}; });
  // Slicing inside an expression (the adjoints are fed a non-variable gradient).
  check_case<Extract<Mult<Vi<0, 5>, Vj<1, 5>>, 2, 2>>([](const Vals& v) {
    return Vec{v[0][2] * v[1][2], v[0][3] * v[1][3]};
  });
  check_case<Exp<Elem<Concat<Vi<0, 2>, Vj<1, 2>>, 3>>>([](const Vals& v) { return Vec{std::exp(v[1][1])}; });
}

// (S f)_r = sum_c S[r C + c] f_c
Vec matvec_ref(const Vec& s, const Vec& f) {
  const size_t c = f.size(), r = s.size() / c;
  Vec out(r, 0.0);
  for (size_t i = 0; i < r; ++i)
    for (size_t j = 0; j < c; ++j) out[i] += s[i * c + j] * f[j];
  return out;
}
// (f^T S)_c = sum_r f_r S[r C + c]
Vec vecmat_ref(const Vec& f, const Vec& s) {
  const size_t r = f.size(), c = s.size() / r;
  Vec out(c, 0.0);
  for (size_t i = 0; i < r; ++i)
    for (size_t j = 0; j < c; ++j) out[j] += f[i] * s[i * c + j];
  return out;
}

TEST(FormulaOps, Matrix) {
  check_case<MatVecMult<Pm<0, 6>, Vi<1, 3>>>([](const Vals& v) { return matvec_ref(v[0], v[1]); });
  check_case<MatVecMult<Vj<0, 6>, Vi<1, 2>>>([](const Vals& v) { return matvec_ref(v[0], v[1]); });
  check_case<MatVecMult<Pm<0, 3>, Vj<1, 3>>>([](const Vals& v) { return matvec_ref(v[0], v[1]); });
  check_case<VecMatMult<Vi<0, 2>, Pm<1, 6>>>([](const Vals& v) { return vecmat_ref(v[0], v[1]); });
  check_case<VecMatMult<Vi<0, 3>, Vj<1, 6>>>([](const Vals& v) { return vecmat_ref(v[0], v[1]); });
  check_case<TensorProd<Vi<0, 2>, Vj<1, 3>>>([](const Vals& v) {
    Vec out;
    for (double a : v[0])
      for (double b : v[1]) out.push_back(a * b);
    return out;
  });
  check_case<TensorProd<Pm<0, 1>, Vj<1, 2>>>([](const Vals& v) { return Vec{v[0][0] * v[1][0], v[0][0] * v[1][1]}; });
}

// ---------------------------------------------------------------- composites

TEST(FormulaOps, Composites) {
  using X = Vi<0, 3>;
  check_case<SqDist<Vi<0, 3>, Vj<1, 3>>>([](const Vals& v) { return Vec{sqnorm_ref(sub(v[0], v[1]))}; });
  check_case<SqDist<Vi<0, 1>, Pm<1, 1>>>([](const Vals& v) { return Vec{sqnorm_ref(sub(v[0], v[1]))}; });
  check_case<Norm2<X>>([](const Vals& v) { return Vec{std::sqrt(sqnorm_ref(v[0]))}; }, away_from_zero(0.1));
  check_case<Normalize<X>>(
      [](const Vals& v) {
        Vec r = v[0];
        for (double& x : r) x /= std::sqrt(sqnorm_ref(v[0]));
        return r;
      },
      away_from_zero(0.1));

  auto wsqnorm = [](const Vals& v) { return Vec{weighted_sqnorm_ref(v[0], v[1])}; };
  auto wsqdist = [](const Vals& v) { return Vec{weighted_sqnorm_ref(v[0], sub(v[1], v[2]))}; };
  Domain sym = Domain();
  sym.fix = symmetrize(0, 3);
  static_assert(meta::is_same_v<WeightedSqNorm<Pm<0, 1>, X>, Mult<Pm<0, 1>, SqNorm2<X>>>, "isotropic form");
  static_assert(meta::is_same_v<WeightedSqNorm<Pm<0, 3>, X>, Sum<Mult<Pm<0, 3>, Square<X>>>>, "diagonal form");
  static_assert(meta::is_same_v<WeightedSqNorm<Pm<0, 9>, X>, Scalprod<X, MatVecMult<Pm<0, 9>, X>>>, "full form");
  check_case<WeightedSqNorm<Pm<0, 1>, Vi<1, 3>>>(wsqnorm);
  check_case<WeightedSqNorm<Pm<0, 3>, Vi<1, 3>>>(wsqnorm);
  check_case<WeightedSqNorm<Pm<0, 9>, Vi<1, 3>>>(wsqnorm, sym);
  check_case<WeightedSqDist<Pm<0, 1>, Vi<1, 3>, Vj<2, 3>>>(wsqdist);
  check_case<WeightedSqDist<Pm<0, 3>, Vi<1, 3>, Vj<2, 3>>>(wsqdist);
  check_case<WeightedSqDist<Pm<0, 9>, Vi<1, 3>, Vj<2, 3>>>(wsqdist, sym);
  check_case<WeightedSqDist<Vj<0, 4>, Vi<1, 2>, Vj<2, 2>>>(wsqdist, [] {
    Domain d;
    d.fix = symmetrize(0, 2);
    return d;
  }());

  // Kernels: Gaussian exp(-g |x-y|^2) b, Cauchy b / (1 + g |x-y|^2).
  check_case<Mult<Exp<Minus<Mult<Pm<0, 1>, SqDist<Vi<1, 3>, Vj<2, 3>>>>>, Vj<3, 2>>>([](const Vals& v) {
    const double k = std::exp(-v[0][0] * sqnorm_ref(sub(v[1], v[2])));
    return Vec{k * v[3][0], k * v[3][1]};
  });
  check_case<Mult<Inv<Add<IntCst<1>, Mult<Pm<0, 1>, SqDist<Vi<1, 3>, Vj<2, 3>>>>>, Vj<3, 1>>>(
      [](const Vals& v) { return Vec{v[3][0] / (1 + v[0][0] * sqnorm_ref(sub(v[1], v[2])))}; }, in(0.1, 1.5));
}

// ----------------------------------------------------------------- constants

TEST(FormulaOps, Constants) {
  check_op<IntCst<3>>(constant({3}));
  check_op<IntCst<-7>>(constant({-7}));
  check_op<RatCst<-1, 2>>(constant({-0.5}));
  check_op<RatCst<1, 3>>(constant({1.0 / 3}));
  check_op<Zero<4>>(constant({0, 0, 0, 0}));
  check_case<Mult<IntCst<3>, Vi<0, 3>>>(ref1([](double x) { return 3 * x; }));
  check_case<Add<RatCst<1, 2>, Vj<0, 2>>>(ref1([](double x) { return 0.5 + x; }));
  check_case<Add<Zero<3>, Pm<0, 3>>>(ref1([](double x) { return x; }));
  check_case<Divide<Vi<0, 2>, RatCst<3, 4>>>(ref1([](double x) { return x / 0.75; }));
  check_case<Powf<Vi<0, 2>, RatCst<3, 2>>>(ref1([](double x) { return std::pow(x, 1.5); }), in(0.2, 2));
}

// The derivative w.r.t. a variable absent from F, or with the wrong
// category or dim, is exactly Zero (no work at run time).
TEST(FormulaOps, GradOfAbsentVariableIsZero) {
  using E1 = Vi<5, 1>;
  using E3 = Vi<5, 3>;
  static_assert(meta::is_same_v<Grad<IntCst<2>, Vi<0, 3>, E1>::Derivative, Zero<3>>, "");
  static_assert(meta::is_same_v<Grad<Exp<Vi<0, 3>>, Vj<0, 3>, E3>::Derivative, Zero<3>>, "");
  static_assert(meta::is_same_v<Grad<Exp<Vi<0, 3>>, Vi<1, 3>, E3>::Derivative, Zero<3>>, "");
  static_assert(meta::is_same_v<Grad<Sign<Vi<0, 3>>, Vi<0, 3>, E3>::Derivative, Zero<3>>, "");
  static_assert(meta::is_same_v<Grad<Step<Vi<0, 3>>, Vi<0, 3>, E3>::Derivative, Zero<3>>, "");
  static_assert(meta::is_same_v<Grad<Floor<Vi<0, 3>>, Vi<0, 3>, E3>::Derivative, Zero<3>>, "");
  static_assert(meta::is_same_v<Grad<Pow<Vi<0, 3>, 0>, Vi<0, 3>, E3>::Derivative, Zero<3>>, "");
  static_assert(meta::is_same_v<Grad<Vi<0, 3>, Vi<0, 3>, E3>::Derivative, E3>, "");
  check_op<Grad<Exp<Vi<0, 3>>, Pm<1, 2>, E3>>(constant({0, 0}));
}

}  // namespace
