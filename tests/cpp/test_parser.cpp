// Runtime formula parser: keys, canonical numbering, composites, codegen and
// error messages (content and caret position).
#include <gtest/gtest.h>

#include <climits>
#include <string>
#include <vector>

#include "kmr/runtime/formula.hpp"

namespace {

using kmr::ParsedFormula;
using kmr::parse_formula;
using Aliases = std::vector<std::string>;

const Aliases kGauss = {"G = Pm(1)", "X = Vi(3)", "Y = Vj(3)", "B = Vj(2)"};
const char* const kGaussKey = "Mult(Exp(Minus(Mult(Pm(0,1),SqNorm2(Subtract(Vi(1,3),Vj(2,3)))))),Vj(3,2))";

std::string key(const std::string& f, const Aliases& a = {}, bool swap = false) {
  return parse_formula(f, a, swap).key;
}

// The message of the kmr::Error thrown by parse_formula (fails if none or another kind).
std::string error_of(const std::string& f, const Aliases& a = {}, bool swap = false) {
  try {
    parse_formula(f, a, swap);
  } catch (const kmr::Error& e) {
    EXPECT_EQ(e.kind(), kmr::ErrorKind::Value) << e.what();
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not a kmr::Error: " << e.what();
    return "";
  }
  ADD_FAILURE() << "no error for formula '" << f << "'";
  return "";
}

// Checks that `msg` contains `part`, names position `pos` of `text` (what =
// "formula" or "alias") and puts the caret under it.
void expect_at(const std::string& msg, const std::string& part, size_t pos, const std::string& text,
               const std::string& what = "formula") {
  EXPECT_NE(msg.find(part), std::string::npos) << "message:\n" << msg << "\nlacks: " << part;
  const std::string tail = " at position " + std::to_string(pos) + " in " + what + ":\n  " + text + "\n  " +
                           std::string(pos, ' ') + "^";
  EXPECT_NE(msg.find(tail), std::string::npos) << "message:\n" << msg << "\nlacks the caret block:\n" << tail;
  EXPECT_EQ(msg.rfind("kmr: ", 0), 0u) << msg;
}

void expect_contains(const std::string& msg, const std::string& part) {
  EXPECT_NE(msg.find(part), std::string::npos) << "message:\n" << msg << "\nlacks: " << part;
}

// ---------------------------------------------------------------- keys

TEST(Parser, GaussianKey) {
  const ParsedFormula f = parse_formula("Exp(-G*SqDist(X,Y))*B", kGauss);
  EXPECT_EQ(f.key, kGaussKey);
  EXPECT_EQ(kmr::to_key(f.root), f.key);
  EXPECT_EQ(f.dim, 2);
  ASSERT_EQ(f.vars.size(), 4u);
  EXPECT_EQ(f.vars[0].cat, 2);
  EXPECT_EQ(f.vars[0].dim, 1);
  EXPECT_EQ(f.vars[1].cat, 0);
  EXPECT_EQ(f.vars[1].dim, 3);
  EXPECT_EQ(f.vars[2].cat, 1);
  EXPECT_EQ(f.vars[3].cat, 1);
  EXPECT_EQ(f.vars[3].dim, 2);
  EXPECT_EQ(f.user_pos, (std::vector<int>{0, 1, 2, 3}));
  ASSERT_EQ(f.user_args.size(), 4u);
  EXPECT_EQ(f.user_args[3].dim, 2);
}

TEST(Parser, AliasOrderAndNamesDoNotChangeTheKey) {
  const ParsedFormula f =
      parse_formula("Exp( - gamma * SqDist( x_i , y_j ) ) * b_j", {"b_j=Vj(2)", "y_j=Vj(3)", "x_i=Vi(3)", "gamma=Pm(1)"});
  EXPECT_EQ(f.key, kGaussKey);
  EXPECT_EQ(f.user_pos, (std::vector<int>{3, 2, 1, 0}));
  EXPECT_EQ(f.user_args[0].cat, 1);
  EXPECT_EQ(f.user_args[0].dim, 2);
  EXPECT_EQ(f.user_args[3].cat, 2);
  // explicit positions, in any order
  const ParsedFormula g = parse_formula("Exp(-G*SqDist(X,Y))*B", {"X=Vi(2,3)", "B=Vj(0,2)", "G=Pm(3,1)", "Y=Vj(1,3)"});
  EXPECT_EQ(g.key, kGaussKey);
  EXPECT_EQ(g.user_pos, (std::vector<int>{3, 2, 1, 0}));
}

TEST(Parser, OldSpellingsVxVy) {
  EXPECT_EQ(key("Exp(-G*SqDist(X,Y))*B", {"G = Pm(1)", "X = Vx(3)", "Y = Vy(3)", "B = Vy(2)"}), kGaussKey);
  EXPECT_EQ(key("Vx(0,2)+Vy(1,2)"), "Add(Vi(0,2),Vj(1,2))");
}

TEST(Parser, InlineVariables) {
  EXPECT_EQ(key("Exp(-Pm(0,1)*SqDist(Vi(1,3),Vj(2,3)))*Vj(3,2)"), kGaussKey);
  EXPECT_EQ(key("Exp(-Var(5,1,2)*SqDist(Var(2,3,0),Var(0,3,1)))*Var(1,2,1)", {"a=Vj(3)", "b=Vj(2)", "c=Vi(3)",
                                                                                  "d=Vi(1)", "e=Vi(1)"}),
            kGaussKey);
  // inline and alias of the same argument
  const ParsedFormula f = parse_formula("X*Vi(0,3)+Vj(1,3)", {"X=Vi(3)"});
  EXPECT_EQ(f.key, "Add(Mult(Vi(0,3),Vi(0,3)),Vj(1,3))");
  EXPECT_EQ(f.user_args.size(), 2u);
}

TEST(Parser, RenumberingByFirstAppearance) {
  const ParsedFormula f = parse_formula("Y*Z+X", {"X=Vi(1)", "Y=Vj(2)", "Z=Pm(2)"});
  EXPECT_EQ(f.key, "Add(Mult(Vj(0,2),Pm(1,2)),Vi(2,1))");
  EXPECT_EQ(f.user_pos, (std::vector<int>{1, 2, 0}));
  // an alias that the formula does not use is still a user argument
  const ParsedFormula g = parse_formula("Y", {"X=Vi(1)", "Y=Vj(2)"});
  EXPECT_EQ(g.key, "Vj(0,2)");
  EXPECT_EQ(g.vars.size(), 1u);
  EXPECT_EQ(g.user_pos, (std::vector<int>{1}));
  EXPECT_EQ(g.user_args.size(), 2u);
}

TEST(Parser, Precedence) {
  const Aliases a = {"X=Vi(1)", "Y=Vj(1)", "Z=Pm(1)"};
  EXPECT_EQ(key("-X*Y", a), "Minus(Mult(Vi(0,1),Vj(1,1)))");
  EXPECT_EQ(key("X*-Y", a), "Mult(Vi(0,1),Minus(Vj(1,1)))");
  EXPECT_EQ(key("X - -Y", a), "Subtract(Vi(0,1),Minus(Vj(1,1)))");
  EXPECT_EQ(key("--X", a), "Minus(Minus(Vi(0,1)))");
  EXPECT_EQ(key("-X+Y", a), "Add(Minus(Vi(0,1)),Vj(1,1))");
  EXPECT_EQ(key("X-Y-Z", a), "Subtract(Subtract(Vi(0,1),Vj(1,1)),Pm(2,1))");
  EXPECT_EQ(key("X/Y*Z", a), "Mult(Divide(Vi(0,1),Vj(1,1)),Pm(2,1))");
  EXPECT_EQ(key("X+Y*Z", a), "Add(Vi(0,1),Mult(Vj(1,1),Pm(2,1)))");
  EXPECT_EQ(key("(X+Y)*Z", a), "Mult(Add(Vi(0,1),Vj(1,1)),Pm(2,1))");
  EXPECT_EQ(key("-1"), "Minus(IntCst(1))");
  EXPECT_EQ(key(" \t\nX\n*\t2 ", a), "Mult(Vi(0,1),IntCst(2))");
}

TEST(Parser, ScalarProduct) {
  const Aliases a = {"X=Vi(3)", "Y=Vj(3)"};
  EXPECT_EQ(key("(X|Y)", a), "Scalprod(Vi(0,3),Vj(1,3))");
  EXPECT_EQ(key("Exp((X | Y - X))", a), "Exp(Scalprod(Vi(0,3),Subtract(Vj(1,3),Vi(0,3))))");
  EXPECT_EQ(key("Scalprod(X,Y)", a), "Scalprod(Vi(0,3),Vj(1,3))");
  EXPECT_EQ(parse_formula("(X|Y)", a).dim, 1);
}

TEST(Parser, NumberLiterals) {
  EXPECT_EQ(key("0.5"), "RatCst(1,2)");
  EXPECT_EQ(key("2.50"), "RatCst(5,2)");
  EXPECT_EQ(key("1e-3"), "RatCst(1,1000)");
  EXPECT_EQ(key("1.5e2"), "IntCst(150)");
  EXPECT_EQ(key("2.0"), "IntCst(2)");
  EXPECT_EQ(key("5."), "IntCst(5)");
  EXPECT_EQ(key(".25"), "RatCst(1,4)");
  EXPECT_EQ(key("1E3"), "IntCst(1000)");
  EXPECT_EQ(key("0.1"), "RatCst(1,10)");
  EXPECT_EQ(key("0.000"), "IntCst(0)");
  EXPECT_EQ(key("3.14159"), "RatCst(314159,100000)");
  EXPECT_EQ(key("007"), "IntCst(7)");
  EXPECT_EQ(key("9223372036854775807"), "IntCst(9223372036854775807)");
  EXPECT_EQ(key("2.8421709430404007434844970703125E-14"), "RatCst(1,35184372088832)");  // 2^-45
  EXPECT_EQ(key("4.02653184e-19"), "RatCst(3,7450580596923828125)");                   // 3/5^27
  EXPECT_EQ(key("-0.5"), "Minus(RatCst(1,2))");
}

TEST(Parser, ExplicitConstants) {
  EXPECT_EQ(key("RatCst(2,4)"), "RatCst(1,2)");
  EXPECT_EQ(key("RatCst(1,-2)"), "RatCst(-1,2)");
  EXPECT_EQ(key("RatCst(-3,-6)"), "RatCst(1,2)");
  EXPECT_EQ(key("RatCst(4,2)"), "IntCst(2)");
  EXPECT_EQ(key("RatCst(0,5)"), "IntCst(0)");
  EXPECT_EQ(key("IntCst(-3)"), "IntCst(-3)");
  EXPECT_EQ(key("IntCst(-9223372036854775808)"), "IntCst(-9223372036854775808)");
  EXPECT_EQ(key("Zero(4)"), "Zero(4)");
  EXPECT_EQ(parse_formula("Zero(4)", {}).dim, 4);
}

struct OpCase {
  const char* formula;
  const char* key;
  int dim;
};

TEST(Parser, EveryOp) {
  const Aliases a = {"X=Vi(3)", "Y=Vj(3)", "S=Pm(1)", "M=Pm(6)", "T=Vj(2)"};
  const OpCase cases[] = {
      {"Exp(X)", "Exp(Vi(0,3))", 3},           {"Log(X)", "Log(Vi(0,3))", 3},
      {"Sqrt(X)", "Sqrt(Vi(0,3))", 3},         {"Rsqrt(X)", "Rsqrt(Vi(0,3))", 3},
      {"Square(X)", "Square(Vi(0,3))", 3},     {"Inv(X)", "Inv(Vi(0,3))", 3},
      {"Sin(X)", "Sin(Vi(0,3))", 3},           {"Cos(X)", "Cos(Vi(0,3))", 3},
      {"Atan(X)", "Atan(Vi(0,3))", 3},         {"Abs(X)", "Abs(Vi(0,3))", 3},
      {"Sign(X)", "Sign(Vi(0,3))", 3},         {"Step(X)", "Step(Vi(0,3))", 3},
      {"ReLU(X)", "ReLU(Vi(0,3))", 3},         {"XLogX(X)", "XLogX(Vi(0,3))", 3},
      {"Floor(X)", "Floor(Vi(0,3))", 3},       {"Minus(X)", "Minus(Vi(0,3))", 3},
      {"Add(X,S)", "Add(Vi(0,3),Pm(1,1))", 3}, {"Subtract(S,X)", "Subtract(Pm(0,1),Vi(1,3))", 3},
      {"Mult(X,Y)", "Mult(Vi(0,3),Vj(1,3))", 3}, {"Divide(S,S)", "Divide(Pm(0,1),Pm(0,1))", 1},
      {"Powf(X,S)", "Powf(Vi(0,3),Pm(1,1))", 3},
      {"Clamp(X,S,Y)", "Clamp(Vi(0,3),Pm(1,1),Vj(2,3))", 3},
      {"IfElse(S,X,S)", "IfElse(Pm(0,1),Vi(1,3),Pm(0,1))", 3},
      {"Mod(X,2,0.5)", "Mod(Vi(0,3),IntCst(2),RatCst(1,2))", 3},
      {"Pow(X,3)", "Pow(Vi(0,3),3)", 3},       {"Pow(X, -2)", "Pow(Vi(0,3),-2)", 3},
      {"Sum(X)", "Sum(Vi(0,3))", 1},           {"SumT(S,4)", "SumT(Pm(0,1),4)", 4},
      {"SqNorm2(X)", "SqNorm2(Vi(0,3))", 1},   {"Concat(X,T)", "Concat(Vi(0,3),Vj(1,2))", 5},
      {"Extract(X,1,2)", "Extract(Vi(0,3),1,2)", 2}, {"ExtractT(T,3,5)", "ExtractT(Vj(0,2),3,5)", 5},
      {"Elem(X,2)", "Elem(Vi(0,3),2)", 1},     {"ElemT(S,1,3)", "ElemT(Pm(0,1),1,3)", 3},
      {"MatVecMult(M,X)", "MatVecMult(Pm(0,6),Vi(1,3))", 2},
      {"VecMatMult(T,M)", "VecMatMult(Vj(0,2),Pm(1,6))", 3},
      {"TensorProd(X,T)", "TensorProd(Vi(0,3),Vj(1,2))", 6},
      {"Grad(Sum(X*Y),Y,S)", "Grad(Sum(Mult(Vi(0,3),Vj(1,3))),Vj(1,3),Pm(2,1))", 3},
  };
  for (const OpCase& c : cases) {
    const ParsedFormula f = parse_formula(c.formula, a);
    EXPECT_EQ(f.key, c.key) << c.formula;
    EXPECT_EQ(f.dim, c.dim) << c.formula;
    EXPECT_EQ(f.root->dim, c.dim) << c.formula;
  }
}

TEST(Parser, CompositesAreExpanded) {
  const Aliases a = {"X=Vi(3)", "Y=Vj(3)", "S=Pm(1)", "D=Pm(3)", "F=Pm(9)"};
  EXPECT_EQ(key("SqDist(X,Y)", a), "SqNorm2(Subtract(Vi(0,3),Vj(1,3)))");
  EXPECT_EQ(key("Norm2(X)", a), "Sqrt(SqNorm2(Vi(0,3)))");
  EXPECT_EQ(key("Normalize(X)", a), "Mult(Rsqrt(SqNorm2(Vi(0,3))),Vi(0,3))");
  EXPECT_EQ(key("WeightedSqNorm(S,X)", a), "Mult(Pm(0,1),SqNorm2(Vi(1,3)))");
  EXPECT_EQ(key("WeightedSqNorm(D,X)", a), "Sum(Mult(Pm(0,3),Square(Vi(1,3))))");
  // variables are numbered in the expanded tree (F comes first in Scalprod(F,MatVecMult(S,F)))
  EXPECT_EQ(key("WeightedSqNorm(F,X)", a), "Scalprod(Vi(0,3),MatVecMult(Pm(1,9),Vi(0,3)))");
  EXPECT_EQ(key("WeightedSqDist(S,X,Y)", a), "Mult(Pm(0,1),SqNorm2(Subtract(Vi(1,3),Vj(2,3))))");
  EXPECT_EQ(key("WeightedSqDist(F,X,Y)", a),
            "Scalprod(Subtract(Vi(0,3),Vj(1,3)),MatVecMult(Pm(2,9),Subtract(Vi(0,3),Vj(1,3))))");
  EXPECT_EQ(parse_formula("Normalize(X)", a).dim, 3);
  // composites inside composites
  EXPECT_EQ(key("Norm2(Normalize(X))", a), "Sqrt(SqNorm2(Mult(Rsqrt(SqNorm2(Vi(0,3))),Vi(0,3))))");
}

TEST(Parser, Grad) {
  const Aliases a = {"X=Vi(3)", "Y=Vj(3)", "E=Vi(1)"};
  const ParsedFormula f = parse_formula("Grad(Exp(-SqDist(X,Y)), X, E)", a);
  EXPECT_EQ(f.key, "Grad(Exp(Minus(SqNorm2(Subtract(Vi(0,3),Vj(1,3))))),Vi(0,3),Vi(2,1))");
  EXPECT_EQ(f.dim, 3);
  // the variable counts as an appearance even when F does not use it
  const ParsedFormula g = parse_formula("Grad(Exp(X), Y, Vi(3,3))", a);
  EXPECT_EQ(g.key, "Grad(Exp(Vi(0,3)),Vj(1,3),Vi(2,3))");
  EXPECT_EQ(g.user_pos, (std::vector<int>{0, 1, 3}));
  // inline variable as V, nested Grad
  EXPECT_EQ(key("Grad(Grad(Sum(Square(Vi(0,2))),Vi(0,2),Vj(1,1)),Vi(0,2),Vi(2,2))"),
            "Grad(Grad(Sum(Square(Vi(0,2))),Vi(0,2),Vj(1,1)),Vi(0,2),Vi(2,2))");
}

TEST(Parser, SwapIJ) {
  const ParsedFormula f = parse_formula("Exp(-G*SqDist(X,Y))*B", kGauss, true);
  EXPECT_EQ(f.key, "Mult(Exp(Minus(Mult(Pm(0,1),SqNorm2(Subtract(Vj(1,3),Vi(2,3)))))),Vi(3,2))");
  EXPECT_EQ(f.vars[1].cat, 1);
  EXPECT_EQ(f.vars[3].cat, 0);
  EXPECT_EQ(f.vars[0].cat, 2);
  // the user's view stays as declared
  EXPECT_EQ(f.user_args[1].cat, 0);
  EXPECT_EQ(f.user_args[3].cat, 1);
  EXPECT_EQ(key("Grad(Vi(0,2)*Vj(1,2),Vi(0,2),Vi(2,2))", {}, true), "Grad(Mult(Vj(0,2),Vi(1,2)),Vj(0,2),Vj(2,2))");
}

// ---------------------------------------------------------------- round trip

TEST(Parser, KeyRoundTrip) {
  const Aliases a = {"X=Vi(3)", "Y=Vj(3)", "S=Pm(1)", "M=Pm(9)", "B=Vj(2)", "E=Vi(3)"};
  const char* formulas[] = {
      "Exp(-S*SqDist(X,Y))*B",
      "Inv(IntCst(1)+S*SqDist(X,Y))*B",
      "Exp(-Sqrt(S*SqDist(X,Y)))*B",
      "Rsqrt(1+S*SqDist(X,Y))*B",
      "Square((X|Y))*B",
      "WeightedSqDist(M,X,Y) - 0.5 + 1e-3*Norm2(X)",
      "Normalize(X-Y)*Pow(S,-3)",
      "Clamp(X,-1,2.5)+IfElse(S,X,Y)+Mod(X,S,0.25)",
      "Concat(Extract(X,0,2),ElemT(Elem(Y,1),0,2))",
      "ExtractT(B,1,3)*SumT(Sum(X),3)",
      "MatVecMult(M,X)+VecMatMult(Y,M)",
      "Sum(TensorProd(X,B))*Zero(1)",
      "Grad(Exp(-SqDist(X,Y))*B,X,B)",
      "Grad(Sum(Powf(Abs(X),S)),S,Pm(6,1))",
      "RatCst(-7,3)*XLogX(ReLU(Step(Sign(Atan(Cos(Sin(Log(Floor(X)))))))))",
      "IntCst(-5)/X+Minus(IntCst(9223372036854775807))",
  };
  for (const char* fs : formulas) {
    const ParsedFormula f = parse_formula(fs, a);
    const ParsedFormula g = parse_formula(f.key, {});
    EXPECT_EQ(g.key, f.key) << fs;
    EXPECT_EQ(g.dim, f.dim) << fs;
    EXPECT_EQ(kmr::to_cpp_type(g.root), kmr::to_cpp_type(f.root)) << fs;
    ASSERT_EQ(g.vars.size(), f.vars.size()) << fs;
    for (size_t k = 0; k < f.vars.size(); ++k) {
      EXPECT_EQ(g.vars[k].cat, f.vars[k].cat) << fs;
      EXPECT_EQ(g.vars[k].dim, f.vars[k].dim) << fs;
      EXPECT_EQ(g.user_pos[k], (int)k) << fs;
    }
    EXPECT_EQ(parse_formula(f.key, {}, true).key, parse_formula(fs, a, true).key) << fs;
  }
}

// ---------------------------------------------------------------- C++ types

TEST(Parser, CppType) {
  const ParsedFormula f = parse_formula("Exp(-G*SqDist(X,Y))*B", kGauss);
  EXPECT_EQ(kmr::to_cpp_type(f.root),
            "kmr::Mult<kmr::Exp<kmr::Minus<kmr::Mult<kmr::Var<0,1,2>,kmr::SqNorm2<kmr::Subtract<kmr::Var<1,3,0>,"
            "kmr::Var<2,3,1>>>>>>,kmr::Var<3,2,1>>");
  EXPECT_EQ(kmr::to_cpp_type(parse_formula("Pow(Vi(0,2),-2)*0.5", {}).root),
            "kmr::Mult<kmr::Pow<kmr::Var<0,2,0>,-2>,kmr::RatCst<1,2>>");
  EXPECT_EQ(kmr::to_cpp_type(parse_formula("Extract(Vj(0,4),1,2)+ElemT(IntCst(3),0,2)", {}).root),
            "kmr::Add<kmr::Extract<kmr::Var<0,4,1>,1,2>,kmr::ElemT<kmr::IntCst<3>,0,2>>");
  EXPECT_EQ(kmr::to_cpp_type(parse_formula("Grad(Clamp(Vi(0,2),Zero(1),Pm(1,1)),Vi(0,2),Vj(2,2))", {}).root),
            "kmr::Grad<kmr::Clamp<kmr::Var<0,2,0>,kmr::Zero<1>,kmr::Var<1,1,2>>,kmr::Var<0,2,0>,kmr::Var<2,2,1>>");
  EXPECT_EQ(kmr::to_cpp_type(parse_formula("IntCst(-9223372036854775808)", {}).root),
            "kmr::IntCst<(-9223372036854775807-1)>");
}

// ---------------------------------------------------------------- errors

TEST(ParserErrors, UnknownOperation) {
  const std::string m = error_of("X*Foo(X)", {"X=Vi(3)"});
  expect_at(m, "unknown operation 'Foo'", 2, "X*Foo(X)");
  expect_at(error_of("Foo(X)", {"X=Vi(3)"}), "kmr: unknown operation 'Foo' at position 0 in formula:\n  Foo(X)\n  ^", 0,
            "Foo(X)");
  expect_at(error_of("X(2)", {"X=Vi(3)"}), "'X' is a variable, not an operation", 0, "X(2)");
  expect_at(error_of("Exp + 1"), "operation 'Exp' needs its arguments: Exp(F)", 0, "Exp + 1");
  expect_at(error_of("1+SqDist"), "operation 'SqDist' needs its arguments", 2, "1+SqDist");
}

TEST(ParserErrors, UndeclaredVariable) {
  expect_at(error_of("Exp(-G*SqDist(X,Z))", {"G=Pm(1)", "X=Vi(3)", "Y=Vj(3)"}), "undeclared variable 'Z'", 16,
            "Exp(-G*SqDist(X,Z))");
  expect_at(error_of("x", {"X=Vi(3)"}), "undeclared variable 'x'", 0, "x");  // names are case-sensitive
}

TEST(ParserErrors, Syntax) {
  expect_at(error_of("X+", {"X=Vi(1)"}), "unexpected end of the formula, expected an expression", 2, "X+");
  expect_at(error_of("X Y", {"X=Vi(1)", "Y=Vi(1)"}), "unexpected name 'Y', expected an operator", 2, "X Y");
  expect_at(error_of("(X", {"X=Vi(1)"}), "expected ')', found the end of the formula", 2, "(X");
  expect_at(error_of("Exp(X", {"X=Vi(1)"}), "expected ')'", 5, "Exp(X");
  expect_at(error_of("X)", {"X=Vi(1)"}), "unexpected ')'", 1, "X)");
  expect_at(error_of("X*#2", {"X=Vi(1)"}), "unexpected character '#'", 2, "X*#2");
  expect_at(error_of("X**2", {"X=Vi(1)"}), "unexpected '*', expected an expression", 2, "X**2");
  expect_at(error_of("+X", {"X=Vi(1)"}), "unexpected '+'", 0, "+X");
  expect_at(error_of("2X", {"X=Vi(1)"}), "unexpected character 'X' after the number '2'", 1, "2X");
  expect_at(error_of("1e+", {}), "malformed number '1e+'", 1, "1e+");
  expect_at(error_of("1.2.3", {}), "after the number '1.2'", 3, "1.2.3");
  expect_at(error_of("(X|Y|X)", {"X=Vi(1)", "Y=Vi(1)"}), "expected ')', found '|'", 4, "(X|Y|X)");
  expect_at(error_of("X=Vi(1)", {}), "undeclared variable 'X'", 0, "X=Vi(1)");
  expect_at(error_of("Vi(0,1)=2", {}), "unexpected '='", 7, "Vi(0,1)=2");
  expect_at(error_of("   "), "empty formula", 0, "   ");
  expect_at(error_of(""), "empty formula", 0, "");
  // control characters are shown as spaces so that the caret lines up
  expect_at(error_of("X\n+\x01", {"X=Vi(1)"}), "unexpected character '\\x01'", 3, "X + ");
}

TEST(ParserErrors, NonAscii) {
  expect_at(error_of("X*\xCE\xB3", {"X=Vi(1)"}), "non-ASCII character", 2, "X*\xCE\xB3");
  expect_at(error_of("Exp(X)+1-Y\xC2\xB2", {"X=Vi(1)", "Y=Vi(1)"}), "non-ASCII character (byte \\xC2)", 10,
            "Exp(X)+1-Y\xC2\xB2");
  expect_at(error_of("X", {"X=V\xC3\xAE(1)"}), "non-ASCII", 3, "X=V\xC3\xAE(1)", "alias");
}

TEST(ParserErrors, WrongArgumentCount) {
  const Aliases a = {"X=Vi(3)", "Y=Vj(3)"};
  expect_at(error_of("1+Exp(X,Y)", a), "wrong number of arguments for 'Exp': expected 1 (Exp(F)), got 2", 2, "1+Exp(X,Y)");
  expect_at(error_of("SqDist(X)", a), "wrong number of arguments for 'SqDist': expected 2 (SqDist(A,B)), got 1", 0,
            "SqDist(X)");
  expect_at(error_of("Extract(X,1)", a), "'Extract': expected 3 (Extract(F,start,dim)), got 2", 0, "Extract(X,1)");
  expect_at(error_of("Sum()", a), "'Sum': expected 1 (Sum(F)), got 0", 0, "Sum()");
  expect_at(error_of("Clamp(X,(X|Y))", a), "expected 3 (Clamp(X,A,B)), got 2", 0, "Clamp(X,(X|Y))");
  expect_at(error_of("Vi(3)", a), "wrong number of arguments for 'Vi': expected 2 (Vi(pos,dim)), got 1", 0, "Vi(3)");
  expect_at(error_of("Var(0,3)", a), "expected 3 (Var(pos,dim,cat)), got 2", 0, "Var(0,3)");
  expect_at(error_of("Grad(X,X)", a), "expected 3 (Grad(F,V,E))", 0, "Grad(X,X)");
}

TEST(ParserErrors, IntegerParameters) {
  const Aliases a = {"X=Vi(3)"};
  expect_at(error_of("Pow(X,2.5)", a), "'Pow' expects an integer literal here (Pow(F,n)), found number '2.5'", 6,
            "Pow(X,2.5)");
  expect_at(error_of("Pow(X,X)", a), "'Pow' expects an integer literal", 6, "Pow(X,X)");
  expect_at(error_of("Extract(X,2,2)", a), "invalid parameter in 'Extract(X,2,2)': start 2 + dim 2 exceeds the operand dim 3",
            0, "Extract(X,2,2)");
  expect_at(error_of("Extract(X,-1,2)", a), "start must be >= 0, got -1", 0, "Extract(X,-1,2)");
  expect_at(error_of("Extract(X,0,0)", a), "the extracted dim must be >= 1", 0, "Extract(X,0,0)");
  expect_at(error_of("1+Elem(X,3)", a), "invalid parameter in 'Elem(X,3)': index 3 is out of range for an operand of dim 3",
            2, "1+Elem(X,3)");
  expect_at(error_of("ExtractT(X,1,3)", a), "start 1 + operand dim 3 exceeds the output dim 3", 0, "ExtractT(X,1,3)");
  expect_at(error_of("ElemT(Sum(X),3,3)", a), "index 3 is out of range for the output dim 3", 0, "ElemT(Sum(X),3,3)");
  expect_at(error_of("SumT(Sum(X),0)", a), "the output dim must be >= 1, got 0", 0, "SumT(Sum(X),0)");
  expect_at(error_of("Zero(0)"), "invalid parameter in 'Zero(0)': the dim must be >= 1", 0, "Zero(0)");
  expect_at(error_of("RatCst(1,0)"), "invalid parameter in 'RatCst(1,0)': the denominator is 0", 0, "RatCst(1,0)");
  expect_at(error_of("RatCst(-9223372036854775808,-1)"), "out of the 64-bit range", 0, "RatCst(-9223372036854775808,-1)");
  expect_at(error_of("Var(0,3,5)"), "the category must be 0 (i), 1 (j) or 2 (parameter), got 5", 0, "Var(0,3,5)");
  expect_at(error_of("Vi(0,0)"), "variable dim 0 is out of range", 0, "Vi(0,0)");
  expect_at(error_of("Vi(-1,2)"), "variable position -1 is out of range", 0, "Vi(-1,2)");
  expect_at(error_of("Zero(100000000000)"), "is too large", 0, "Zero(100000000000)");
}

TEST(ParserErrors, NumberRange) {
  expect_at(error_of("IntCst(-9223372036854775809)"), "out of the 64-bit range", 8, "IntCst(-9223372036854775809)");
  expect_at(error_of("1e99999999999999999999"), "the number '1e99999999999999999999' is beyond the range of a double",
            0, "1e99999999999999999999");
  expect_at(error_of("2*1e309"), "beyond the range of a double", 2, "2*1e309");
  EXPECT_EQ(key("0e99999999999999999999"), "IntCst(0)");
}

// Literals that are no 64-bit ratio: the nearest double and the nearest float, both correctly rounded
// (issue 10, section 3); exact ratios keep their exact form.
TEST(Parser, FloatLiterals) {
  EXPECT_EQ(key("9223372036854775808"), "FpCst(1,63,1,63)");                       // 2^63
  EXPECT_EQ(key("1180591620717411303424"), "FpCst(1,70,1,70)");                    // 2^70
  EXPECT_EQ(key("2.220446049250313e-16"), "FpCst(1,-52,1,-52)");                   // 2^-52
  EXPECT_EQ(key("5e-324"), "FpCst(1,-1074,0,0)");                                  // below the float range: 0
  EXPECT_EQ(key("1e308").substr(0, 6), "FpCst(");
  EXPECT_EQ(key("1e308").substr(key("1e308").size() - 7), ",1,128)");              // +inf in float
  EXPECT_EQ(key("1e-400"), "FpCst(0,0,0,0)");                                      // underflow: 0, as Python
  EXPECT_EQ(key("1e19"), "FpCst(19073486328125,19,9094947,40)");                   // 5^19 2^19; float rounded
  EXPECT_EQ(key("2.2204460492503130e-16"), key("2.220446049250313e-16"));
  EXPECT_EQ(key("0.30000000000000004"), "RatCst(7500000000000001,25000000000000000)");
  EXPECT_EQ(key("1e18"), "IntCst(1000000000000000000)");
  EXPECT_EQ(key("FpCst(1,-52,1,-52)"), "FpCst(1,-52,1,-52)");
  expect_at(error_of("FpCst(1,-2000,1,0)"), "must be a finite double", 0, "FpCst(1,-2000,1,0)");
  expect_at(error_of("FpCst(1,0,3,128)"), "must be a finite float", 0, "FpCst(1,0,3,128)");
}

TEST(ParserErrors, DimensionMismatch) {
  const Aliases a = {"X=Vi(3)", "Y=Vj(2)", "S=Pm(1)", "M=Pm(5)"};
  expect_at(error_of("X+Y", a), "dimension mismatch in 'X+Y': operands have dims 3 and 2", 0, "X+Y");
  expect_at(error_of("Exp(S * (X - Y))", a), "dimension mismatch in 'X - Y': operands have dims 3 and 2", 9,
            "Exp(S * (X - Y))");
  expect_at(error_of("S+(X|Y)", a), "dimension mismatch in '(X|Y)': operands have dims 3 and 2", 2, "S+(X|Y)");
  expect_at(error_of("Clamp(X,S,Y)", a), "dimension mismatch in 'Clamp(X,S,Y)': operands have dims 3, 1 and 2", 0,
            "Clamp(X,S,Y)");
  expect_at(error_of("SqDist(X,Y)", a), "dimension mismatch in 'SqDist(X,Y)': operands have dims 3 and 2", 0,
            "SqDist(X,Y)");
  expect_at(error_of("MatVecMult(M,Y)", a), "the matrix dim 5 is not a multiple of the vector dim 2", 0, "MatVecMult(M,Y)");
  expect_at(error_of("VecMatMult(X,M)", a), "the matrix dim 5 is not a multiple of the vector dim 3", 0, "VecMatMult(X,M)");
  expect_at(error_of("SumT(X,3)", a), "dimension mismatch in 'SumT(X,3)': the operand must have dim 1, got dim 3", 0,
            "SumT(X,3)");
  expect_at(error_of("ElemT(X,0,3)", a), "the operand must have dim 1", 0, "ElemT(X,0,3)");
  expect_at(error_of("WeightedSqNorm(Y,X)", a),
            "dimension mismatch in 'WeightedSqNorm(Y,X)': the weight has dim 2, expected 1, 3 or 9 for an operand of dim 3",
            0, "WeightedSqNorm(Y,X)");
  expect_at(error_of("1+WeightedSqDist(S,X,Y)", a), "dimension mismatch in 'WeightedSqDist(S,X,Y)'", 2,
            "1+WeightedSqDist(S,X,Y)");
  expect_at(error_of("Grad(Exp(X),X,Y)", a),
            "dimension mismatch in 'Grad(Exp(X),X,Y)': the gradient input has dim 2 but the formula has dim 3", 0,
            "Grad(Exp(X),X,Y)");
  expect_at(error_of("Grad(Exp(X), X+X, X)", a), "the second argument of 'Grad' must be a variable, got 'X+X'", 13,
            "Grad(Exp(X), X+X, X)");
}

TEST(ParserErrors, Aliases) {
  expect_at(error_of("X", {"X = Vk(3)"}),
            "unknown variable category 'Vk' in alias 'X = Vk(3)': expected Vi, Vj, Pm, Vx or Vy", 4, "X = Vk(3)", "alias");
  expect_at(error_of("X", {"X=Vi(3)", "Y=Vj(3)", "X=Vj(3)"}), "alias name 'X' is declared twice (aliases 0 and 2)", 0,
            "X=Vj(3)", "alias");
  expect_at(error_of("Exp", {"Exp=Vi(3)"}), "alias name 'Exp' is reserved", 0, "Exp=Vi(3)", "alias");
  expect_at(error_of("X", {"X Vi(3)"}), "expected '=', found name 'Vi'", 2, "X Vi(3)", "alias");
  expect_at(error_of("X", {"X = Vi(3) Y"}), "unexpected name 'Y' after the alias", 10, "X = Vi(3) Y", "alias");
  expect_at(error_of("X", {"X = Vi(0,1,3)"}), "wrong number of arguments for 'Vi' in alias", 4, "X = Vi(0,1,3)", "alias");
  expect_at(error_of("X", {"X = Vi(a)"}), "expects an integer literal", 7, "X = Vi(a)", "alias");
  expect_at(error_of("X", {"= Vi(3)"}), "expected an alias name", 0, "= Vi(3)", "alias");
  expect_at(error_of("X", {""}), "expected an alias name", 0, "", "alias");
  EXPECT_EQ(key("X", {"X = Var(0,3,2)"}), "Pm(0,3)");
}

TEST(ParserErrors, ConflictsAndGaps) {
  expect_at(error_of("X+Y", {"X=Vi(0,3)", "Y=Vj(0,3)"}),
            "conflicting declarations of argument 0: Vi(0,3) by alias 'X=Vi(0,3)' and Vj(0,3) by alias 'Y=Vj(0,3)'", 2,
            "Y=Vj(0,3)", "alias");
  expect_at(error_of("X+Vi(0,2)", {"X=Vi(3)"}), "conflicting declarations of argument 0", 2, "X+Vi(0,2)");
  // the same declaration twice is fine
  EXPECT_EQ(key("X+Y", {"X=Vi(0,3)", "Y=Vi(0,3)"}), "Add(Vi(0,3),Vi(0,3))");
  std::string m = error_of("X+Y", {"X=Vi(0,3)", "Y=Vi(2,3)"});
  expect_contains(m, "no variable is declared at argument position 1");
  m = error_of("Vi(1,3)");
  expect_contains(m, "no variable is declared at argument position 0");
}

TEST(ParserErrors, HostileInputDoesNotCrash) {
  const Aliases a = {"X=Vi(1)"};
  std::string deep = std::string(100000, '(') + "X" + std::string(100000, ')');
  expect_contains(error_of(deep, a), "nested too deeply");
  std::string minus = std::string(100000, '-') + "X";
  expect_contains(error_of(minus, a), "nested too deeply");
  std::string calls;
  for (int k = 0; k < 50000; ++k) calls += "Exp(";
  calls += "X" + std::string(50000, ')');
  expect_contains(error_of(calls, a), "nested too deeply");
  std::string chain = "X";
  for (int k = 0; k < 5000; ++k) chain += "+X";
  expect_contains(error_of(chain, a), "nested too deeply");
  std::string norm = "X";
  for (int k = 0; k < 40; ++k) norm = "Normalize(" + norm + ")";
  expect_contains(error_of(norm, a), "formula is too large");
  // within the limits: 250 levels of text nesting, a tree 500 deep
  std::string nested = "X";
  for (int k = 0; k < 125; ++k) nested = "Exp((" + nested + "))";
  EXPECT_EQ(parse_formula(nested, a).dim, 1);
  std::string sum = "X";
  for (int k = 0; k < 499; ++k) sum += "+X";
  EXPECT_EQ(parse_formula(sum, a).dim, 1);
  expect_contains(error_of(sum + "+X", a), "nested too deeply (more than 500 levels)");
}

TEST(ParserErrors, NullExpression) {
  EXPECT_THROW(kmr::to_key(nullptr), kmr::Error);
  EXPECT_THROW(kmr::to_cpp_type(nullptr), kmr::Error);
}

}  // namespace
