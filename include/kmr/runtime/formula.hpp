// Runtime formula strings: parser, immutable AST, canonical key and the C++
// type that instantiates the same formula from the headers of kmr/formula.
//
//   ParsedFormula f = kmr::parse_formula("Exp(-G*SqDist(X,Y))*B",
//                                        {"G = Pm(1)", "X = Vi(3)", "Y = Vj(3)", "B = Vj(2)"});
//   f.key == "Mult(Exp(Minus(Mult(Pm(0,1),SqNorm2(Subtract(Vi(1,3),Vj(2,3)))))),Vj(3,2))"
//
// Every user error (syntax, unknown name, dimension, parameter range) throws
// kmr::Error with kind ErrorKind::Value and a message that shows where.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "error.hpp"

namespace kmr {

struct VarInfo {
  int cat;  // 0 = i, 1 = j, 2 = parameter (kmr::CAT_I, CAT_J, CAT_PARAM of formula/fwd.hpp)
  int dim;
};

// One immutable node. Composite ops (SqDist, Norm2, ...) never appear: the
// parser expands them into the ops below, as the C++ alias templates do.
struct Expr {
  std::string op;  // "Var", "IntCst", "RatCst", "Zero", "Add", "Exp", "Pow", "Grad", ...
  std::vector<std::shared_ptr<const Expr>> args;
  // Integer parameters, in the order they are written after the operands:
  // Var: pos,dim,cat; IntCst: n; RatCst: p,q (q > 1, reduced); Zero: d; Pow: n;
  // Extract: start,dim; ExtractT: start,dim; Elem: m; ElemT: m,dim; SumT: d.
  std::vector<long long> iparams;
  int dim;  // output dimension
};
using ExprPtr = std::shared_ptr<const Expr>;

struct ParsedFormula {
  ExprPtr root;                   // canonical: variables renumbered 0.. by first appearance
  std::string key;                // to_key(root)
  std::vector<VarInfo> vars;      // per canonical position (categories after swap_ij)
  std::vector<int> user_pos;      // user_pos[canonical pos] = index in the user's argument list
  std::vector<VarInfo> user_args; // per user argument position, as declared (before swap_ij)
  int dim;                        // output dim of the formula
};

// Parses `formula` with the given aliases ("X = Vi(3)", "Y=Vj(1,3)", "G = Pm(1)",
// "X = Vx(3)"). An alias without an explicit position takes its index in
// `aliases`. swap_ij exchanges the i and j categories before canonicalization
// (axis = 0 reductions). Throws kmr::Error(ErrorKind::Value, ...) on bad input.
ParsedFormula parse_formula(const std::string& formula, const std::vector<std::string>& aliases,
                            bool swap_ij = false);

// Canonical string of an expression (function form, no spaces). It is itself a
// formula string: parse_formula(to_key(e), {}) gives back the same key.
std::string to_key(const ExprPtr& e);

// The C++ type of kmr/formula that evaluates `e`, e.g.
// "kmr::Mult<kmr::Exp<kmr::Var<0,3,0>>,kmr::Var<1,2,1>>".
std::string to_cpp_type(const ExprPtr& e);

}  // namespace kmr
