// Canonical strings of formula types (docs/internals.md, "Canonical string")
// and the variable tables they record.
#include <gtest/gtest.h>

#include <string>

#include "kmr/formula/formula.hpp"
#include "kmr/formula/print.hpp"

namespace {

using namespace kmr;
template <int P, int D> using Vi = Var<P, D, CAT_I>;
template <int P, int D> using Vj = Var<P, D, CAT_J>;
template <int P, int D> using Pm = Var<P, D, CAT_PARAM>;

using GaussB = Mult<Exp<Minus<Mult<Pm<0, 1>, SqDist<Vi<1, 3>, Vj<2, 3>>>>>, Vj<3, 2>>;

// One row of the table: a formula type and its expected string.
template <class F>
struct Row {
  using Formula = F;
  const char* want;
};
template <class... Rows>
void check_strings(Rows... rows) {
  (..., [&] { EXPECT_EQ(formula_string<typename Rows::Formula>(), std::string(rows.want)); }());
}

TEST(FormulaPrint, CanonicalStrings) {
  check_strings(
      Row<GaussB>{"Mult(Exp(Minus(Mult(Pm(0,1),SqNorm2(Subtract(Vi(1,3),Vj(2,3)))))),Vj(3,2))"},
      Row<Vi<0, 3>>{"Vi(0,3)"}, Row<Vj<1, 2>>{"Vj(1,2)"}, Row<Pm<2, 1>>{"Pm(2,1)"},
      Row<IntCst<3>>{"IntCst(3)"}, Row<IntCst<-12>>{"IntCst(-12)"}, Row<RatCst<-1, 2>>{"RatCst(-1,2)"},
      Row<Zero<4>>{"Zero(4)"},
      Row<Add<Vi<0, 1>, Vj<1, 3>>>{"Add(Vi(0,1),Vj(1,3))"},
      Row<Divide<Vi<0, 2>, RatCst<3, 4>>>{"Divide(Vi(0,2),RatCst(3,4))"},
      Row<Pow<Vi<0, 3>, 3>>{"Pow(Vi(0,3),3)"}, Row<Pow<Vi<0, 3>, -2>>{"Pow(Vi(0,3),-2)"},
      Row<Powf<Vi<0, 3>, Pm<1, 1>>>{"Powf(Vi(0,3),Pm(1,1))"},
      Row<Extract<Vi<0, 3>, 0, 2>>{"Extract(Vi(0,3),0,2)"},
      Row<ExtractT<Vi<0, 2>, 1, 5>>{"ExtractT(Vi(0,2),1,5)"},
      Row<Elem<Vj<0, 3>, 1>>{"Elem(Vj(0,3),1)"}, Row<ElemT<Vj<0, 1>, 1, 4>>{"ElemT(Vj(0,1),1,4)"},
      Row<SumT<Pm<0, 1>, 3>>{"SumT(Pm(0,1),3)"}, Row<Sum<Vi<0, 3>>>{"Sum(Vi(0,3))"},
      Row<Concat<Vi<0, 3>, Vj<1, 2>>>{"Concat(Vi(0,3),Vj(1,2))"},
      Row<Clamp<Vi<0, 3>, Pm<1, 1>, Pm<2, 1>>>{"Clamp(Vi(0,3),Pm(1,1),Pm(2,1))"},
      Row<IfElse<Vi<0, 1>, Vj<1, 3>, Pm<2, 1>>>{"IfElse(Vi(0,1),Vj(1,3),Pm(2,1))"},
      Row<Mod<Vi<0, 3>, Pm<1, 1>, Vj<2, 1>>>{"Mod(Vi(0,3),Pm(1,1),Vj(2,1))"},
      Row<XLogX<ReLU<Vi<0, 2>>>>{"XLogX(ReLU(Vi(0,2)))"},
      Row<Scalprod<Vi<0, 3>, Vj<1, 3>>>{"Scalprod(Vi(0,3),Vj(1,3))"},
      Row<MatVecMult<Pm<0, 6>, Vi<1, 3>>>{"MatVecMult(Pm(0,6),Vi(1,3))"},
      Row<VecMatMult<Vi<0, 2>, Pm<1, 6>>>{"VecMatMult(Vi(0,2),Pm(1,6))"},
      Row<TensorProd<Vi<0, 2>, Vj<1, 3>>>{"TensorProd(Vi(0,2),Vj(1,3))"},
      // Composites print expanded, as the parser expands them.
      Row<Norm2<Vi<0, 3>>>{"Sqrt(SqNorm2(Vi(0,3)))"},
      Row<Normalize<Vi<0, 3>>>{"Mult(Rsqrt(SqNorm2(Vi(0,3))),Vi(0,3))"},
      Row<WeightedSqNorm<Pm<0, 1>, Vi<1, 3>>>{"Mult(Pm(0,1),SqNorm2(Vi(1,3)))"},
      Row<WeightedSqNorm<Pm<0, 3>, Vi<1, 3>>>{"Sum(Mult(Pm(0,3),Square(Vi(1,3))))"},
      Row<WeightedSqDist<Pm<0, 9>, Vi<1, 3>, Vj<2, 3>>>{
          "Scalprod(Subtract(Vi(1,3),Vj(2,3)),MatVecMult(Pm(0,9),Subtract(Vi(1,3),Vj(2,3))))"},
      // Grad prints as itself, not as its expansion.
      Row<Grad<SqDist<Vi<0, 3>, Vj<1, 3>>, Vi<0, 3>, Vi<2, 1>>>{
          "Grad(SqNorm2(Subtract(Vi(0,3),Vj(1,3))),Vi(0,3),Vi(2,1))"},
      Row<Grad<Grad<GaussB, Vi<1, 3>, Vi<4, 2>>, Vj<2, 3>, Vi<5, 3>>>{
          "Grad(Grad(Mult(Exp(Minus(Mult(Pm(0,1),SqNorm2(Subtract(Vi(1,3),Vj(2,3)))))),Vj(3,2)),Vi(1,3),Vi(4,2)),"
          "Vj(2,3),Vi(5,3))"});
}

// No spaces anywhere, whatever the formula.
TEST(FormulaPrint, NoSpaces) {
  const std::string s = formula_string<Grad<Clamp<Vi<0, 3>, Pm<1, 1>, Pm<2, 1>>, Pm<1, 1>, Vi<3, 3>>>();
  EXPECT_EQ(s.find(' '), std::string::npos) << s;
}

TEST(FormulaVarTable, Gaussian) {
  constexpr VarTable t = var_table<GaussB>();  // usable at compile time
  static_assert(t.n == 4, "");
  static_assert(t.dim[0] == 1 && t.cat[0] == CAT_PARAM, "");
  const int dims[] = {1, 3, 3, 2}, cats[] = {CAT_PARAM, CAT_I, CAT_J, CAT_J};
  ASSERT_EQ(t.n, 4);
  for (int p = 0; p < 4; ++p) {
    EXPECT_EQ(t.dim[p], dims[p]) << "var " << p;
    EXPECT_EQ(t.cat[p], cats[p]) << "var " << p;
  }
}

TEST(FormulaVarTable, RepeatsGapsConstantsAndGrad) {
  // A variable used several times is recorded once.
  constexpr VarTable a = var_table<Mult<Vi<0, 3>, Sin<Vi<0, 3>>>>();
  EXPECT_EQ(a.n, 1);
  EXPECT_EQ(a.dim[0], 3);
  EXPECT_EQ(a.cat[0], CAT_I);
  // n is one past the largest position; a gap has dim 0.
  constexpr VarTable b = var_table<Add<Vj<2, 1>, Vi<0, 1>>>();
  EXPECT_EQ(b.n, 3);
  EXPECT_EQ(b.dim[1], 0);
  EXPECT_EQ(b.dim[2], 1);
  EXPECT_EQ(b.cat[2], CAT_J);
  // Constants record nothing.
  constexpr VarTable c = var_table<Add<IntCst<1>, Mult<RatCst<1, 2>, Zero<1>>>>();
  EXPECT_EQ(c.n, 0);
  // Grad records F, V and E (E may be new).
  constexpr VarTable d = var_table<Grad<Exp<Vj<0, 2>>, Pm<1, 4>, Vi<2, 2>>>();
  EXPECT_EQ(d.n, 3);
  EXPECT_EQ(d.dim[0], 2);
  EXPECT_EQ(d.cat[0], CAT_J);
  EXPECT_EQ(d.dim[1], 4);
  EXPECT_EQ(d.cat[1], CAT_PARAM);
  EXPECT_EQ(d.dim[2], 2);
  EXPECT_EQ(d.cat[2], CAT_I);
}

}  // namespace
