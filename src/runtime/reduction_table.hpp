// What the runtime must know of each reduction before running it: the C++
// template that implements it (include/kmr/reduction) and its output size.
#pragma once
#include <string>
#include <vector>

namespace kmr {

struct ReductionInfo {
  const char* name;      // as the user writes it ("Sum", "ArgKMin", ...)
  const char* cpp;       // C++ template in namespace kmr, instantiated as <TA, DIMF>
  bool needs_k;          // KMin family: opt_arg K
  bool weighted;         // formula2 is concatenated to the formula: f = slot 0, weights = the rest
  bool weights_optional; // LogSumExp: formula2 may be absent
  bool per_coordinate;   // LogSumExp, SumSoftMaxWeight: a formula of dim D > 1 is reduced coordinate by
                         // coordinate (formula2, when given, must then have dim D too)
  int (*out_dim)(int dimf, int dim2, long long k);      // values per output row
  int (*out_idx_dim)(int dimf, int dim2, long long k);  // int64 indices per output row
};

// Throws kmr::Error naming the known reductions when `name` is unknown.
const ReductionInfo& find_reduction(const std::string& name);
const std::vector<ReductionInfo>& all_reductions();

}  // namespace kmr
