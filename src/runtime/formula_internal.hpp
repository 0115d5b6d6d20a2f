// Internal to the runtime formula parser (src/runtime): op tables, limits and
// AST helpers shared by parser.cpp, op_table.cpp and ast.cpp.
#pragma once
#include <string>
#include <vector>

#include "kmr/runtime/formula.hpp"

namespace kmr {
namespace detail {

// Limits that keep hostile input from exhausting the stack or memory.
constexpr long long kMaxDim = 1LL << 24;   // largest dimension of any node
constexpr int kMaxDepth = 500;             // depth of the expanded tree (recursion elsewhere is bounded by it)
constexpr long long kMaxNodes = 200000;    // nodes of the expanded tree

// What an op's dimension rule says about its operands and parameters.
struct DimResult {
  long long dim = 0;
  std::string error;         // empty when the node is valid
  bool param_error = false;  // the fault is an integer parameter, not a dim mismatch
};
using DimRule = DimResult (*)(const std::vector<ExprPtr>& args, const std::vector<long long>& params);

// A primitive op: `n_operands` expressions then `n_iparams` integer literals.
struct OpSpec {
  const char* name;
  int n_operands;
  int n_iparams;
  const char* signature;  // for messages: "Extract(F,start,dim)"
  DimRule rule;
};
const OpSpec* find_op(const std::string& name);

// A composite op: expanded by the parser into primitive ops, as the alias
// templates of kmr/formula do. `expansion` is a formula in which $0, $1, ...
// are the operands; `pick` (if set) chooses the expansion from the operand
// dims instead, or returns nullptr and sets `error`.
using CompositePick = const char* (*)(const std::vector<int>& dims, std::string& error);
struct CompositeSpec {
  const char* name;
  int n_operands;
  const char* signature;
  const char* expansion;
  CompositePick pick;
};
const CompositeSpec* find_composite(const std::string& name);

// Category of an inline-variable / alias spelling: 0 Vi/Vx, 1 Vj/Vy, 2 Pm,
// 3 Var (category given as third parameter), -1 otherwise.
int var_spelling(const std::string& name);

// Names that cannot be used as aliases (ops, composites, variable spellings).
bool is_reserved_name(const std::string& name);

// Immutable node constructor (no checks).
ExprPtr make_expr(std::string op, std::vector<ExprPtr> args, std::vector<long long> iparams, int dim);

// Renumbers the variables by first appearance (depth-first, left to right),
// optionally exchanging the i and j categories. Var nodes of `root` hold user
// positions; user_pos / vars receive the per-canonical-position tables.
ExprPtr canonicalize(const ExprPtr& root, bool swap_ij, std::vector<int>& user_pos, std::vector<VarInfo>& vars);

}  // namespace detail
}  // namespace kmr
