#include "registry.hpp"

#include <unordered_map>

#include "kmr/runtime/genred.hpp"

namespace kmr {

namespace {
const std::unordered_map<std::string, kmr_kernel_fn>& registry_map() {
  static const std::unordered_map<std::string, kmr_kernel_fn> map = [] {
    std::unordered_map<std::string, kmr_kernel_fn> m;
    std::size_t n = 0;
    const PrecompiledTable* tables = precompiled_tables(&n);
    for (std::size_t t = 0; t < n; ++t)
      for (std::size_t e = 0; e < tables[t].size; ++e) m.emplace(tables[t].entries[e].key, tables[t].entries[e].fn);
    return m;
  }();
  return map;
}
}  // namespace

kmr_kernel_fn find_precompiled(const std::string& key) {
  const auto& m = registry_map();
  auto it = m.find(key);
  return it == m.end() ? nullptr : it->second;
}

std::size_t num_precompiled() { return registry_map().size(); }

}  // namespace kmr
