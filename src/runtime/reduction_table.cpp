#include "reduction_table.hpp"

#include "kmr/runtime/error.hpp"

namespace kmr {
namespace {

int same(int d, int, long long) { return d; }
int none(int, int, long long) { return 0; }
int k_times(int d, int, long long k) { return static_cast<int>(k) * d; }
int weights_or_same(int d, int d2, long long) { return d2 > 0 ? d2 : d; }
int weights(int, int d2, long long) { return d2; }

}  // namespace

const std::vector<ReductionInfo>& all_reductions() {
  static const std::vector<ReductionInfo> table = {
      {"Sum", "SumReduction", false, false, false, false, same, none},
      {"Max", "MaxReduction", false, false, false, false, same, none},
      {"Min", "MinReduction", false, false, false, false, same, none},
      {"ArgMax", "ArgMaxReduction", false, false, false, false, none, same},
      {"ArgMin", "ArgMinReduction", false, false, false, false, none, same},
      {"Max_ArgMax", "Max_ArgMaxReduction", false, false, false, false, same, same},
      {"Min_ArgMin", "Min_ArgMinReduction", false, false, false, false, same, same},
      {"KMin", "KMinReduction", true, false, false, false, k_times, none},
      {"ArgKMin", "ArgKMinReduction", true, false, false, false, none, k_times},
      {"KMin_ArgKMin", "KMin_ArgKMinReduction", true, false, false, false, k_times, k_times},
      {"LogSumExp", "LogSumExpReduction", false, true, true, true, weights_or_same, none},
      {"SumSoftMaxWeight", "SumSoftMaxWeightReduction", false, true, false, true, weights, none},
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
