// AST helpers: node construction, canonical renumbering, canonical key and
// C++ type printers.
#include <climits>
#include <string>
#include <unordered_map>
#include <vector>

#include "formula_internal.hpp"

namespace kmr {
namespace detail {

ExprPtr make_expr(std::string op, std::vector<ExprPtr> args, std::vector<long long> iparams, int dim) {
  auto e = std::make_shared<Expr>();
  e->op = std::move(op);
  e->args = std::move(args);
  e->iparams = std::move(iparams);
  e->dim = dim;
  return e;
}

namespace {

void check_var(const Expr& e) {
  if (e.iparams.size() != 3 || e.iparams[2] < 0 || e.iparams[2] > 2)
    throw Error(ErrorKind::Value, "kmr: malformed Var node (expected iparams pos,dim,cat)");
}

struct Renumber {
  bool swap_ij;
  std::vector<int>& user_pos;
  std::vector<VarInfo>& vars;
  std::unordered_map<long long, int> canon;  // user position -> canonical position
  std::unordered_map<const Expr*, ExprPtr> done;  // keeps shared subtrees shared

  // Recursive: keep the frame small (the Var case is out of line).
  ExprPtr run(const ExprPtr& e) {
    auto it = done.find(e.get());
    if (it != done.end()) return it->second;
    ExprPtr out;
    if (e->op == "Var") {
      out = var(*e);
    } else {
      std::vector<ExprPtr> args;
      args.reserve(e->args.size());
      for (const auto& a : e->args) args.push_back(run(a));
      out = make_expr(e->op, std::move(args), e->iparams, e->dim);
    }
    done.emplace(e.get(), out);
    return out;
  }

#if defined(_MSC_VER)
  __declspec(noinline)
#else
  __attribute__((noinline))
#endif
  ExprPtr var(const Expr& e) {
    check_var(e);
    const long long upos = e.iparams[0];
    int cat = (int)e.iparams[2];
    if (swap_ij && cat != 2) cat = 1 - cat;
    auto c = canon.find(upos);
    int pos;
    if (c == canon.end()) {
      pos = (int)vars.size();
      canon.emplace(upos, pos);
      vars.push_back(VarInfo{cat, e.dim});
      user_pos.push_back((int)upos);
    } else {
      pos = c->second;
    }
    return make_expr("Var", {}, {pos, e.iparams[1], cat}, e.dim);
  }
};

// Integer as C++ source: LLONG_MIN has no literal.
std::string cpp_int(long long v) {
  if (v == LLONG_MIN) return "(-9223372036854775807-1)";
  return std::to_string(v);
}

void print_key(const Expr& e, std::string& s) {
  if (e.op == "Var") {
    check_var(e);
    static const char* const kSpell[3] = {"Vi(", "Vj(", "Pm("};
    s += kSpell[e.iparams[2]];
    s += std::to_string(e.iparams[0]);
    s += ',';
    s += std::to_string(e.iparams[1]);
    s += ')';
    return;
  }
  s += e.op;
  s += '(';
  bool first = true;
  for (const auto& a : e.args) {
    if (!first) s += ',';
    first = false;
    print_key(*a, s);
  }
  for (long long p : e.iparams) {
    if (!first) s += ',';
    first = false;
    s += std::to_string(p);
  }
  s += ')';
}

void print_cpp(const Expr& e, std::string& s) {
  if (e.op == "Var") check_var(e);
  s += "kmr::";
  s += e.op;
  s += '<';
  bool first = true;
  for (const auto& a : e.args) {
    if (!first) s += ',';
    first = false;
    print_cpp(*a, s);
  }
  for (long long p : e.iparams) {  // Var: pos,dim,cat as in kmr::Var<POS,DIM,CAT>
    if (!first) s += ',';
    first = false;
    s += cpp_int(p);
  }
  s += '>';
}

}  // namespace

ExprPtr canonicalize(const ExprPtr& root, bool swap_ij, std::vector<int>& user_pos, std::vector<VarInfo>& vars) {
  user_pos.clear();
  vars.clear();
  Renumber r{swap_ij, user_pos, vars, {}, {}};
  return r.run(root);
}

}  // namespace detail

std::string to_key(const ExprPtr& e) {
  if (!e) throw Error(ErrorKind::Value, "kmr: to_key of a null expression");
  std::string s;
  detail::print_key(*e, s);
  return s;
}

std::string to_cpp_type(const ExprPtr& e) {
  if (!e) throw Error(ErrorKind::Value, "kmr: to_cpp_type of a null expression");
  std::string s;
  detail::print_cpp(*e, s);
  return s;
}

}  // namespace kmr
