// Host only: the canonical string of a formula type (the key of DESIGN decision 6).
#pragma once
#include <string>

namespace kmr {

struct StringPrinter {
  std::string s;
  void put(const char* c) { s += c; }
  void put_int(long long v) { s += std::to_string(v); }
};

template <class F>
std::string formula_string() {
  StringPrinter p;
  F::print(p);
  return p.s;
}

}  // namespace kmr
