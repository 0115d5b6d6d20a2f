// Higher derivatives: Grad<Grad<F, V, E>, W, E2> against finite differences of
// the first Grad, for every pair (V, W) of variables, W also ranging over E
// (mixed i/j, parameter and gradient-input derivatives).
#include "formula_check.hpp"

namespace {

using namespace kmr;
using namespace kmrtest;

using X = Vi<1, 3>;
using Y = Vj<2, 3>;
using Gamma = Pm<0, 1>;
// exp(-g |x - y|^2)
using Gaussian = Exp<Minus<Mult<Gamma, SqDist<X, Y>>>>;
// 1 / (1 + g |x - y|^2)
using Cauchy = Inv<Add<IntCst<1>, Mult<Gamma, SqDist<X, Y>>>>;

TEST(FormulaGrad2, GaussianKernel) {
  check_grads2<Gaussian>();
  check_grads2<Mult<Gaussian, Vj<3, 2>>>();
}

TEST(FormulaGrad2, CauchyKernel) { check_grads2<Cauchy>(in(0.1, 1.5)); }

TEST(FormulaGrad2, Elementwise) {
  check_grads2<Log<Vi<0, 3>>>(in(0.3, 2.0));
  check_grads2<Powf<Vi<0, 3>, Pm<1, 1>>>(Domain().with(0, 0.3, 2.0));
  check_grads2<Powf<Vi<0, 2>, Vj<1, 2>>>(Domain().with(0, 0.3, 2.0));
  check_grads2<Rsqrt<Add<Vi<0, 2>, Vj<1, 1>>>>(in(0.3, 2.0));
  check_grads2<Divide<Sin<Vi<0, 2>>, Pm<1, 1>>>(away_from_zero(0.3));
}

TEST(FormulaGrad2, Vector) {
  check_grads2<Normalize<Vi<0, 3>>>(away_from_zero(0.1));
  Domain sym;
  sym.fix = [](Vals& v) {
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < r; ++c) v[0][r * 3 + c] = v[0][c * 3 + r];
  };
  check_grads2<WeightedSqDist<Pm<0, 9>, Vi<1, 3>, Vj<2, 3>>>(sym);
  check_grads2<Exp<Elem<TensorProd<Vi<0, 2>, Vj<1, 2>>, 1>>>();
}

// Mixed i/j derivative of the Gaussian kernel, named on its own.
TEST(FormulaGrad2, GaussianMixedIJ) {
  using E = Vi<3, 1>;
  check_grad<Grad<Gaussian, X, E>, Y>();
  check_grad<Grad<Gaussian, Y, E>, X>();
  check_grad<Grad<Gaussian, Gamma, E>, X>();
}

// Third order, once: d/dx of d/dy of d/dx of the Gaussian.
TEST(FormulaGrad2, GaussianThirdOrder) {
  using E = Vi<3, 1>;
  using E2 = Vi<4, 3>;
  check_grad<Grad<Grad<Gaussian, X, E>, Y, E2>, X>();
}

}  // namespace
