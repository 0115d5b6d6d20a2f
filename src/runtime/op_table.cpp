// The ops the formula parser knows: their arity, integer parameters and
// dimension rule, plus the composite ops and their expansions.
#include <cstring>
#include <string>
#include <vector>

#include "formula_internal.hpp"

namespace kmr {
namespace detail {
namespace {

using Args = std::vector<ExprPtr>;
using Params = std::vector<long long>;

DimResult ok(long long dim) {
  DimResult r;
  r.dim = dim;
  return r;
}
DimResult dim_error(std::string msg) {
  DimResult r;
  r.error = std::move(msg);
  return r;
}
DimResult param_error(std::string msg) {
  DimResult r;
  r.error = std::move(msg);
  r.param_error = true;
  return r;
}
std::string str(long long v) { return std::to_string(v); }

// "3 and 2", "3, 2 and 1"
std::string dims_list(const Args& a) {
  std::string s;
  for (size_t k = 0; k < a.size(); ++k) {
    if (k > 0) s += (k + 1 == a.size()) ? " and " : ", ";
    s += str(a[k]->dim);
  }
  return s;
}

DimResult rule_same(const Args& a, const Params&) { return ok(a[0]->dim); }
DimResult rule_scalar(const Args&, const Params&) { return ok(1); }

// Elementwise with broadcasting: every operand has the max dim or dim 1.
DimResult rule_broadcast(const Args& a, const Params&) {
  int d = 1;
  for (const auto& x : a) d = x->dim > d ? x->dim : d;
  for (const auto& x : a)
    if (x->dim != d && x->dim != 1)
      return dim_error("operands have dims " + dims_list(a));
  return ok(d);
}

DimResult rule_sumt(const Args& a, const Params& p) {
  if (a[0]->dim != 1) return dim_error("the operand must have dim 1, got dim " + str(a[0]->dim));
  if (p[0] < 1) return param_error("the output dim must be >= 1, got " + str(p[0]));
  return ok(p[0]);
}

DimResult rule_scalprod(const Args& a, const Params&) {
  if (a[0]->dim != a[1]->dim) return dim_error("operands have dims " + dims_list(a));
  return ok(1);
}

DimResult rule_concat(const Args& a, const Params&) { return ok((long long)a[0]->dim + a[1]->dim); }

DimResult rule_extract(const Args& a, const Params& p) {
  const long long n = a[0]->dim, start = p[0], d = p[1];
  if (start < 0) return param_error("start must be >= 0, got " + str(start));
  if (d < 1) return param_error("the extracted dim must be >= 1, got " + str(d));
  if (start > n || d > n - start)
    return param_error("start " + str(start) + " + dim " + str(d) + " exceeds the operand dim " + str(n));
  return ok(d);
}

DimResult rule_extractt(const Args& a, const Params& p) {
  const long long n = a[0]->dim, start = p[0], d = p[1];
  if (start < 0) return param_error("start must be >= 0, got " + str(start));
  if (d < 1) return param_error("the output dim must be >= 1, got " + str(d));
  if (start > d || n > d - start)
    return param_error("start " + str(start) + " + operand dim " + str(n) + " exceeds the output dim " + str(d));
  return ok(d);
}

DimResult rule_elem(const Args& a, const Params& p) {
  if (p[0] < 0 || p[0] >= a[0]->dim)
    return param_error("index " + str(p[0]) + " is out of range for an operand of dim " + str(a[0]->dim));
  return ok(1);
}

DimResult rule_elemt(const Args& a, const Params& p) {
  if (a[0]->dim != 1) return dim_error("the operand must have dim 1, got dim " + str(a[0]->dim));
  if (p[1] < 1) return param_error("the output dim must be >= 1, got " + str(p[1]));
  if (p[0] < 0 || p[0] >= p[1])
    return param_error("index " + str(p[0]) + " is out of range for the output dim " + str(p[1]));
  return ok(p[1]);
}

// MatVecMult(S, F): S is a (n x m) matrix stored in S.dim = n*m, F has dim m.
DimResult rule_matvec(const Args& a, const Params&) {
  const int s = a[0]->dim, f = a[1]->dim;
  if (s % f != 0)
    return dim_error("the matrix dim " + str(s) + " is not a multiple of the vector dim " + str(f));
  return ok(s / f);
}
// VecMatMult(F, S): same rule, operands the other way round.
DimResult rule_vecmat(const Args& a, const Params&) {
  const int f = a[0]->dim, s = a[1]->dim;
  if (s % f != 0)
    return dim_error("the matrix dim " + str(s) + " is not a multiple of the vector dim " + str(f));
  return ok(s / f);
}

DimResult rule_tensorprod(const Args& a, const Params&) { return ok((long long)a[0]->dim * a[1]->dim); }

// Grad(F, V, E): d/dV of <F, E>; the parser checks that V is a variable.
DimResult rule_grad(const Args& a, const Params&) {
  if (a[2]->dim != a[0]->dim)
    return dim_error("the gradient input has dim " + str(a[2]->dim) + " but the formula has dim " +
                     str(a[0]->dim));
  return ok(a[1]->dim);
}

DimResult rule_zero(const Args&, const Params& p) {
  if (p[0] < 1) return param_error("the dim must be >= 1, got " + str(p[0]));
  return ok(p[0]);
}

DimResult rule_ratcst(const Args&, const Params& p) {
  if (p[1] == 0) return param_error("the denominator is 0");
  return ok(1);
}

// FpCst(md, ed, mf, ef) = md 2^ed in double, mf 2^ef in float (ef = 128: +-inf), as the parser writes
// a literal; checked so that a hand-written one is a finite double, a float or +-inf, and nothing else.
DimResult rule_fpcst(const Args&, const Params& p) {
  const long long md = p[0], ed = p[1], mf = p[2], ef = p[3];
  auto bits = [](long long m) {
    unsigned long long v = m < 0 ? 0ULL - (unsigned long long)m : (unsigned long long)m;
    int n = 0;
    for (; v != 0; v >>= 1) ++n;
    return n;
  };
  if (bits(md) > 53 || ed < -1074 || ed + bits(md) > 1024)
    return param_error("md 2^ed must be a finite double (|md| < 2^53, -1074 <= ed, md 2^ed < 2^1024)");
  const bool inf = ef == 128 && (mf == 1 || mf == -1);
  if (!inf && (bits(mf) > 24 || ef < -149 || ef + bits(mf) > 128))
    return param_error("mf 2^ef must be a finite float (|mf| < 2^24, -149 <= ef, mf 2^ef < 2^128) or +-1 2^128");
  return ok(1);
}

const OpSpec kOps[] = {
    // leaves (variables are handled by the parser: Vi, Vj, Pm, Vx, Vy, Var)
    {"IntCst", 0, 1, "IntCst(n)", rule_scalar},
    {"RatCst", 0, 2, "RatCst(p,q)", rule_ratcst},
    {"FpCst", 0, 4, "FpCst(md,ed,mf,ef)", rule_fpcst},
    {"Zero", 0, 1, "Zero(dim)", rule_zero},
    // elementwise unary
    {"Exp", 1, 0, "Exp(F)", rule_same},
    {"Log", 1, 0, "Log(F)", rule_same},
    {"Sqrt", 1, 0, "Sqrt(F)", rule_same},
    {"Rsqrt", 1, 0, "Rsqrt(F)", rule_same},
    {"Square", 1, 0, "Square(F)", rule_same},
    {"Inv", 1, 0, "Inv(F)", rule_same},
    {"Sin", 1, 0, "Sin(F)", rule_same},
    {"Cos", 1, 0, "Cos(F)", rule_same},
    {"Atan", 1, 0, "Atan(F)", rule_same},
    {"Abs", 1, 0, "Abs(F)", rule_same},
    {"Sign", 1, 0, "Sign(F)", rule_same},
    {"Step", 1, 0, "Step(F)", rule_same},
    {"ReLU", 1, 0, "ReLU(F)", rule_same},
    {"XLogX", 1, 0, "XLogX(F)", rule_same},
    {"Floor", 1, 0, "Floor(F)", rule_same},
    {"Minus", 1, 0, "Minus(F)", rule_same},
    // elementwise binary / ternary (a dim-1 operand broadcasts)
    {"Add", 2, 0, "Add(A,B)", rule_broadcast},
    {"Subtract", 2, 0, "Subtract(A,B)", rule_broadcast},
    {"Mult", 2, 0, "Mult(A,B)", rule_broadcast},
    {"Divide", 2, 0, "Divide(A,B)", rule_broadcast},
    {"Powf", 2, 0, "Powf(A,B)", rule_broadcast},
    {"Clamp", 3, 0, "Clamp(X,A,B)", rule_broadcast},
    {"IfElse", 3, 0, "IfElse(C,A,B)", rule_broadcast},
    {"Mod", 3, 0, "Mod(X,M,O)", rule_broadcast},
    // integer power
    {"Pow", 1, 1, "Pow(F,n)", rule_same},
    // vector ops
    {"Sum", 1, 0, "Sum(F)", rule_scalar},
    {"SumT", 1, 1, "SumT(F,dim)", rule_sumt},
    {"Scalprod", 2, 0, "Scalprod(A,B)", rule_scalprod},
    {"SqNorm2", 1, 0, "SqNorm2(F)", rule_scalar},
    {"Concat", 2, 0, "Concat(A,B)", rule_concat},
    {"Extract", 1, 2, "Extract(F,start,dim)", rule_extract},
    {"ExtractT", 1, 2, "ExtractT(F,start,dim)", rule_extractt},
    {"Elem", 1, 1, "Elem(F,m)", rule_elem},
    {"ElemT", 1, 2, "ElemT(F,m,dim)", rule_elemt},
    {"MatVecMult", 2, 0, "MatVecMult(S,F)", rule_matvec},
    {"VecMatMult", 2, 0, "VecMatMult(F,S)", rule_vecmat},
    {"TensorProd", 2, 0, "TensorProd(A,B)", rule_tensorprod},
    // gradient (kept as a node; the headers differentiate)
    {"Grad", 3, 0, "Grad(F,V,E)", rule_grad},
};

// WeightedSqNorm(S, F): scalar, diagonal or full (symmetric) weight.
const char* pick_weighted_sqnorm(const std::vector<int>& d, std::string& error) {
  const long long s = d[0], f = d[1];
  if (s == 1) return "Mult($0,SqNorm2($1))";
  if (s == f) return "Sum(Mult($0,Square($1)))";
  if (s == f * f) return "Scalprod($1,MatVecMult($0,$1))";
  error = "the weight has dim " + str(s) + ", expected 1, " + str(f) + " or " + str(f * f) +
          " for an operand of dim " + str(f);
  return nullptr;
}

// Composite ops: one line each.
const CompositeSpec kComposites[] = {
    {"SqDist", 2, "SqDist(A,B)", "SqNorm2(Subtract($0,$1))", nullptr},
    {"Norm2", 1, "Norm2(F)", "Sqrt(SqNorm2($0))", nullptr},
    {"Normalize", 1, "Normalize(F)", "Mult(Rsqrt(SqNorm2($0)),$0)", nullptr},
    {"WeightedSqNorm", 2, "WeightedSqNorm(S,F)", nullptr, pick_weighted_sqnorm},
    {"WeightedSqDist", 3, "WeightedSqDist(S,A,B)", "WeightedSqNorm($0,Subtract($1,$2))", nullptr},
};

}  // namespace

const OpSpec* find_op(const std::string& name) {
  for (const auto& op : kOps)
    if (name == op.name) return &op;
  return nullptr;
}

const CompositeSpec* find_composite(const std::string& name) {
  for (const auto& c : kComposites)
    if (name == c.name) return &c;
  return nullptr;
}

int var_spelling(const std::string& name) {
  if (name == "Vi" || name == "Vx") return 0;
  if (name == "Vj" || name == "Vy") return 1;
  if (name == "Pm") return 2;
  if (name == "Var") return 3;
  return -1;
}

bool is_reserved_name(const std::string& name) {
  return find_op(name) || find_composite(name) || var_spelling(name) >= 0;
}

}  // namespace detail
}  // namespace kmr
