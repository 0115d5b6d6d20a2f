// Generic elementwise nodes: one node per arity, one small functor per op
// (value + adjoint rule). A dim-1 operand broadcasts against a dim-D one.
#pragma once
#include "fwd.hpp"

namespace kmr {

namespace detail {
template <class P, class F>
void print_args(P& p) {
  F::print(p);
}
template <class P, class F, class G, class... Rest>
void print_args(P& p) {
  F::print(p);
  p.put(",");
  print_args<P, G, Rest...>(p);
}
// Adjoint H (dim D) sent to an operand X: summed when X was broadcast.
template <class X, int D, class H>
using Unbroadcast = meta::conditional_t<(X::DIM == 1 && D > 1), meta::conditional_t<IsZero<H>::value, Zero<1>, Sum<H>>, H>;
}  // namespace detail

template <class Op, class F>
struct Unary {
  static constexpr int DIM = F::DIM;
  template <class T>
  KMR_HOST_DEVICE KMR_INLINE static void eval(T* out, const T* const* v) {
    T a[F::DIM];
    F::eval(a, v);
    for (int k = 0; k < DIM; ++k) out[k] = Op::value(a[k]);
  }
  template <class V, class G>
  using DiffT = DiffOf<F, V, typename Op::template Adjoint<F, G>>;
  template <class P>
  static void print(P& p) {
    p.put(Op::NAME);
    p.put("(");
    F::print(p);
    p.put(")");
  }
  template <class Tab>
  static constexpr void vars(Tab& t) {
    F::vars(t);
  }
};

template <class Op, class A, class B>
struct Binary {
  static_assert(A::DIM == B::DIM || A::DIM == 1 || B::DIM == 1, "kmr: operand dims must match or be 1");
  static constexpr int DIM = meta::max_int(A::DIM, B::DIM);
  template <class T>
  KMR_HOST_DEVICE KMR_INLINE static void eval(T* out, const T* const* v) {
    T a[A::DIM], b[B::DIM];
    A::eval(a, v);
    B::eval(b, v);
    for (int k = 0; k < DIM; ++k) out[k] = Op::value(a[A::DIM == 1 ? 0 : k], b[B::DIM == 1 ? 0 : k]);
  }
  template <class V, class G>
  using DiffT = AddT<DiffOf<A, V, detail::Unbroadcast<A, DIM, typename Op::template AdjointA<A, B, G>>>,
                     DiffOf<B, V, detail::Unbroadcast<B, DIM, typename Op::template AdjointB<A, B, G>>>>;
  template <class P>
  static void print(P& p) {
    p.put(Op::NAME);
    p.put("(");
    detail::print_args<P, A, B>(p);
    p.put(")");
  }
  template <class Tab>
  static constexpr void vars(Tab& t) {
    A::vars(t);
    B::vars(t);
  }
};

template <class Op, class A, class B, class C>
struct Ternary {
  static constexpr int DIM = meta::max_int(A::DIM, meta::max_int(B::DIM, C::DIM));
  static_assert((A::DIM == DIM || A::DIM == 1) && (B::DIM == DIM || B::DIM == 1) && (C::DIM == DIM || C::DIM == 1),
                "kmr: operand dims must match or be 1");
  template <class T>
  KMR_HOST_DEVICE KMR_INLINE static void eval(T* out, const T* const* v) {
    T a[A::DIM], b[B::DIM], c[C::DIM];
    A::eval(a, v);
    B::eval(b, v);
    C::eval(c, v);
    for (int k = 0; k < DIM; ++k)
      out[k] = Op::value(a[A::DIM == 1 ? 0 : k], b[B::DIM == 1 ? 0 : k], c[C::DIM == 1 ? 0 : k]);
  }
  template <class V, class G>
  using DiffT =
      AddT<DiffOf<A, V, detail::Unbroadcast<A, DIM, typename Op::template AdjointA<A, B, C, G>>>,
           AddT<DiffOf<B, V, detail::Unbroadcast<B, DIM, typename Op::template AdjointB<A, B, C, G>>>,
                DiffOf<C, V, detail::Unbroadcast<C, DIM, typename Op::template AdjointC<A, B, C, G>>>>>;
  template <class P>
  static void print(P& p) {
    p.put(Op::NAME);
    p.put("(");
    detail::print_args<P, A, B, C>(p);
    p.put(")");
  }
  template <class Tab>
  static constexpr void vars(Tab& t) {
    A::vars(t);
    B::vars(t);
    C::vars(t);
  }
};

}  // namespace kmr
