#include "reduction_table.hpp"

#include "kmr/runtime/error.hpp"

namespace kmr {
namespace {

int same(int d, int, long long) { return d; }
int twice(int d, int, long long) { return 2 * d; }
int k_times(int d, int, long long k) { return static_cast<int>(k) * d; }
int two_k_times(int d, int, long long k) { return 2 * static_cast<int>(k) * d; }
int weights_or_one(int, int d2, long long) { return d2 > 0 ? d2 : 1; }
int weights(int, int d2, long long) { return d2; }

}  // namespace

const std::vector<ReductionInfo>& all_reductions() {
  static const std::vector<ReductionInfo> table = {
      {"Sum", "SumReduction", false, false, false, false, same},
      {"Max", "MaxReduction", false, false, false, false, same},
      {"Min", "MinReduction", false, false, false, false, same},
      {"ArgMax", "ArgMaxReduction", false, false, false, false, same},
      {"ArgMin", "ArgMinReduction", false, false, false, false, same},
      {"Max_ArgMax", "Max_ArgMaxReduction", false, false, false, false, twice},
      {"Min_ArgMin", "Min_ArgMinReduction", false, false, false, false, twice},
      {"KMin", "KMinReduction", true, false, false, false, k_times},
      {"ArgKMin", "ArgKMinReduction", true, false, false, false, k_times},
      {"KMin_ArgKMin", "KMin_ArgKMinReduction", true, false, false, false, two_k_times},
      {"LogSumExp", "LogSumExpReduction", false, true, true, true, weights_or_one},
      {"SumSoftMaxWeight", "SumSoftMaxWeightReduction", false, true, false, true, weights},
  };
  return table;
}

const ReductionInfo& find_reduction(const std::string& name) {
  for (const auto& r : all_reductions())
    if (name == r.name) return r;
  std::string known;
  for (const auto& r : all_reductions()) known += std::string(known.empty() ? "" : ", ") + r.name;
  throw Error(ErrorKind::Value, "kmr: unknown reduction '" + name + "' (known: " + known + ")");
}

}  // namespace kmr
