// Grad(F, V, E): the adjoint derivative d<F, E>/dV, resolved by the compiler
// from the ops' DiffT rules. Prints as itself so that keys stay short.
#pragma once
#include "fwd.hpp"

namespace kmr {

template <class F, class V, class E>
struct Grad {
  static_assert(E::DIM == F::DIM, "kmr: Grad(F, V, E) needs dim E == dim F");
  using Derivative = typename F::template DiffT<V, E>;
  static constexpr int DIM = V::DIM;
  static_assert(Derivative::DIM == DIM, "kmr: internal error, derivative has the wrong dim");
  template <class T>
  KMR_HOST_DEVICE KMR_INLINE static void eval(T* out, const T* const* v) {
    Derivative::eval(out, v);
  }
  template <class V2, class G> using DiffT = typename Derivative::template DiffT<V2, G>;
  template <class P>
  static void print(P& p) {
    p.put("Grad(");
    F::print(p);
    p.put(",");
    V::print(p);
    p.put(",");
    E::print(p);
    p.put(")");
  }
  template <class Tab>
  static constexpr void vars(Tab& t) {
    F::vars(t);
    V::vars(t);
    E::vars(t);
  }
};

}  // namespace kmr
