// Minimal type-level helpers: NVRTC has no <type_traits> by default.
#pragma once

namespace kmr {
namespace meta {

template <bool C, class A, class B>
struct Conditional {
  using type = A;
};
template <class A, class B>
struct Conditional<false, A, B> {
  using type = B;
};
template <bool C, class A, class B>
using conditional_t = typename Conditional<C, A, B>::type;

template <class A, class B>
struct IsSame {
  static constexpr bool value = false;
};
template <class A>
struct IsSame<A, A> {
  static constexpr bool value = true;
};
template <class A, class B>
constexpr bool is_same_v = IsSame<A, B>::value;

constexpr int max_int(int a, int b) { return a > b ? a : b; }

}  // namespace meta

// Compile-time table of the variables of a formula (filled by F::vars).
struct VarTable {
  static constexpr int MAX_VARS = 64;
  int n = 0;
  int dim[MAX_VARS] = {};
  int cat[MAX_VARS] = {};
  constexpr void add(int pos, int d, int c) {
    dim[pos] = d;
    cat[pos] = c;
    if (pos + 1 > n) n = pos + 1;
  }
};

template <class F>
constexpr VarTable var_table() {
  VarTable t;
  F::vars(t);
  return t;
}

}  // namespace kmr
