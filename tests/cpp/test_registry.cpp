// DESIGN decision 6: for every precompiled entry, the key printed by the C++
// templates equals the key printed by the runtime parser, and the public API
// finds the entry without compiling.
#include <gtest/gtest.h>

#include <sstream>

#include "kmr/runtime/genred.hpp"
#include "runtime/registry.hpp"

namespace {

std::vector<std::string> split_aliases(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string a;
  while (std::getline(ss, a, ';')) out.push_back(a);
  return out;
}

TEST(Registry, TemplateKeyEqualsRuntimeKeyForEveryEntry) {
  std::size_t ntables = 0;
  const kmr::PrecompiledTable* tables = kmr::precompiled_tables(&ntables);
  std::size_t checked = 0;
  for (std::size_t t = 0; t < ntables; ++t)
    for (std::size_t e = 0; e < tables[t].size; ++e) {
      const kmr::PrecompiledEntry& entry = tables[t].entries[e];
      const std::string key = entry.key;
      const std::string formula_key = key.substr(0, key.find('|'));
      EXPECT_EQ(entry.template_key(), formula_key) << "entry " << entry.formula;
      ++checked;
    }
  EXPECT_EQ(checked, kmr::num_precompiled());
}

TEST(Registry, PublicApiHitsEveryEntry) {
  std::size_t ntables = 0;
  const kmr::PrecompiledTable* tables = kmr::precompiled_tables(&ntables);
  for (std::size_t t = 0; t < ntables; ++t)
    for (std::size_t e = 0; e < tables[t].size; ++e) {
      const kmr::PrecompiledEntry& entry = tables[t].entries[e];
      kmr::GenredOptions opt;
      opt.opt_arg = 2;  // K for the KMin family, ignored by the others
      const kmr::Genred g(entry.formula, split_aliases(entry.aliases), entry.reduction, entry.axis, opt);
      const kmr::DType dt = std::string(entry.dtype) == "float" ? kmr::DType::Float32 : kmr::DType::Float64;
      EXPECT_TRUE(g.is_precompiled(dt)) << entry.key;
    }
}

TEST(Registry, AliasNamesAndOrderDoNotMatter) {
  // The Gaussian with renamed, reordered aliases still hits the precompiled kernel.
  const kmr::Genred a("Exp(-G*SqDist(X,Y))*B", {"G = Pm(1)", "X = Vi(3)", "Y = Vj(3)", "B = Vj(2)"}, "Sum", 1);
  const kmr::Genred b("Exp(-g*SqDist(p,q))*w", {"w = Vj(2)", "q = Vj(3)", "p = Vi(3)", "g = Pm(1)"}, "Sum", 1);
  EXPECT_EQ(a.key(), b.key());
  if (kmr::num_precompiled() > 0 && a.is_precompiled(kmr::DType::Float32))
    EXPECT_TRUE(b.is_precompiled(kmr::DType::Float32));
}

}  // namespace
