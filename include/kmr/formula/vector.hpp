// Vector ops: reductions over coordinates, products, slicing.
#pragma once
#include "arith.hpp"
#include "vars.hpp"

namespace kmr {

namespace detail {
template <class P>
void print_ints(P&) {}
template <class P, class... Ints>
void print_ints(P& p, long long first, Ints... rest) {
  p.put(",");
  p.put_int(first);
  print_ints(p, rest...);
}
// Prints NAME(operands...,ints...).
template <class... Fs, class P, class... Ints>
void print_node(P& p, const char* name, Ints... ints) {
  p.put(name);
  p.put("(");
  print_args<P, Fs...>(p);
  print_ints(p, ints...);
  p.put(")");
}
}  // namespace detail

// sum_k f_k
template <class F>
struct Sum {
  static constexpr int DIM = 1;
  template <class T>
  KMR_HOST_DEVICE KMR_INLINE static void eval(T* out, const T* const* v) {
    T a[F::DIM];
    F::eval(a, v);
    T s = a[0];
    for (int k = 1; k < F::DIM; ++k) s = s + a[k];
    out[0] = s;
  }
  template <class V, class G> using DiffT = DiffOf<F, V, SumT<G, F::DIM>>;
  template <class P> static void print(P& p) { detail::print_node<F>(p, "Sum"); }
  template <class Tab> static constexpr void vars(Tab& t) { F::vars(t); }
};

// (f, ..., f) in R^D for a scalar f (adjoint of Sum)
template <class F, int D>
struct SumT {
  static_assert(F::DIM == 1, "kmr: SumT needs a scalar operand");
  static constexpr int DIM = D;
  template <class T>
  KMR_HOST_DEVICE KMR_INLINE static void eval(T* out, const T* const* v) {
    T a[1];
    F::eval(a, v);
    for (int k = 0; k < D; ++k) out[k] = a[0];
  }
  template <class V, class G> using DiffT = DiffOf<F, V, Sum<G>>;
  template <class P> static void print(P& p) { detail::print_node<F>(p, "SumT", D); }
  template <class Tab> static constexpr void vars(Tab& t) { F::vars(t); }
};

// <a, b> = sum_k a_k b_k
template <class A, class B>
struct Scalprod {
  static_assert(A::DIM == B::DIM, "kmr: Scalprod operands must have the same dim");
  static constexpr int DIM = 1;
  template <class T>
  KMR_HOST_DEVICE KMR_INLINE static void eval(T* out, const T* const* v) {
    T a[A::DIM], b[B::DIM];
    A::eval(a, v);
    B::eval(b, v);
    T s = a[0] * b[0];
    for (int k = 1; k < A::DIM; ++k) s = s + a[k] * b[k];
    out[0] = s;
  }
  template <class V, class G> using DiffT = AddT<DiffOf<A, V, Mult<G, B>>, DiffOf<B, V, Mult<G, A>>>;
  template <class P> static void print(P& p) { detail::print_node<A, B>(p, "Scalprod"); }
  template <class Tab> static constexpr void vars(Tab& t) { A::vars(t); B::vars(t); }
};

// |f|^2, gradient 2 f
template <class F>
struct SqNorm2 {
  static constexpr int DIM = 1;
  template <class T>
  KMR_HOST_DEVICE KMR_INLINE static void eval(T* out, const T* const* v) {
    T a[F::DIM];
    F::eval(a, v);
    T s = a[0] * a[0];
    for (int k = 1; k < F::DIM; ++k) s = s + a[k] * a[k];
    out[0] = s;
  }
  template <class V, class G> using DiffT = DiffOf<F, V, Mult<Mult<IntCst<2>, G>, F>>;
  template <class P> static void print(P& p) { detail::print_node<F>(p, "SqNorm2"); }
  template <class Tab> static constexpr void vars(Tab& t) { F::vars(t); }
};

// f^N for an integer N (N < 0: 1 / f^|N|), derivative N f^(N-1)
template <class F, int N>
struct Pow {
  static constexpr int DIM = F::DIM;
  template <class T>
  KMR_HOST_DEVICE KMR_INLINE static void eval(T* out, const T* const* v) {
    T a[F::DIM];
    F::eval(a, v);
    constexpr int M = N < 0 ? -N : N;
    for (int k = 0; k < DIM; ++k) {
      T r = T(1);
      for (int e = 0; e < M; ++e) r = r * a[k];
      out[k] = N < 0 ? T(1) / r : r;
    }
  }
  template <class V, class G>
  using DiffT = meta::conditional_t<N == 0, Zero<V::DIM>, DiffOf<F, V, Mult<G, Mult<IntCst<N>, Pow<F, N - 1>>>>>;
  template <class P> static void print(P& p) { detail::print_node<F>(p, "Pow", N); }
  template <class Tab> static constexpr void vars(Tab& t) { F::vars(t); }
};

// (a, b): concatenation
template <class A, class B>
struct Concat {
  static constexpr int DIM = A::DIM + B::DIM;
  template <class T>
  KMR_HOST_DEVICE KMR_INLINE static void eval(T* out, const T* const* v) {
    A::eval(out, v);
    B::eval(out + A::DIM, v);
  }
  template <class V, class G>
  using DiffT = AddT<DiffOf<A, V, Extract<G, 0, A::DIM>>, DiffOf<B, V, Extract<G, A::DIM, B::DIM>>>;
  template <class P> static void print(P& p) { detail::print_node<A, B>(p, "Concat"); }
  template <class Tab> static constexpr void vars(Tab& t) { A::vars(t); B::vars(t); }
};

// f[S .. S+D)
template <class F, int S, int D>
struct Extract {
  static_assert(S >= 0 && D >= 1 && S + D <= F::DIM, "kmr: Extract out of range");
  static constexpr int DIM = D;
  template <class T>
  KMR_HOST_DEVICE KMR_INLINE static void eval(T* out, const T* const* v) {
    T a[F::DIM];
    F::eval(a, v);
    for (int k = 0; k < D; ++k) out[k] = a[S + k];
  }
  template <class V, class G> using DiffT = DiffOf<F, V, ExtractT<G, S, F::DIM>>;
  template <class P> static void print(P& p) { detail::print_node<F>(p, "Extract", S, D); }
  template <class Tab> static constexpr void vars(Tab& t) { F::vars(t); }
};

// f placed at [S .. S+dim f) of a zero vector of R^D (adjoint of Extract)
template <class F, int S, int D>
struct ExtractT {
  static_assert(S >= 0 && S + F::DIM <= D, "kmr: ExtractT out of range");
  static constexpr int DIM = D;
  template <class T>
  KMR_HOST_DEVICE KMR_INLINE static void eval(T* out, const T* const* v) {
    for (int k = 0; k < D; ++k) out[k] = T(0);
    F::eval(out + S, v);
  }
  template <class V, class G> using DiffT = DiffOf<F, V, Extract<G, S, F::DIM>>;
  template <class P> static void print(P& p) { detail::print_node<F>(p, "ExtractT", S, D); }
  template <class Tab> static constexpr void vars(Tab& t) { F::vars(t); }
};

// f[M]
template <class F, int M>
struct Elem {
  static_assert(M >= 0 && M < F::DIM, "kmr: Elem index out of range");
  static constexpr int DIM = 1;
  template <class T>
  KMR_HOST_DEVICE KMR_INLINE static void eval(T* out, const T* const* v) {
    T a[F::DIM];
    F::eval(a, v);
    out[0] = a[M];
  }
  template <class V, class G> using DiffT = DiffOf<F, V, ElemT<G, M, F::DIM>>;
  template <class P> static void print(P& p) { detail::print_node<F>(p, "Elem", M); }
  template <class Tab> static constexpr void vars(Tab& t) { F::vars(t); }
};

// scalar f at index M of a zero vector of R^D (adjoint of Elem)
template <class F, int M, int D>
struct ElemT {
  static_assert(F::DIM == 1 && M >= 0 && M < D, "kmr: ElemT needs a scalar and M < D");
  static constexpr int DIM = D;
  template <class T>
  KMR_HOST_DEVICE KMR_INLINE static void eval(T* out, const T* const* v) {
    for (int k = 0; k < D; ++k) out[k] = T(0);
    F::eval(out + M, v);
  }
  template <class V, class G> using DiffT = DiffOf<F, V, Elem<G, M>>;
  template <class P> static void print(P& p) { detail::print_node<F>(p, "ElemT", M, D); }
  template <class Tab> static constexpr void vars(Tab& t) { F::vars(t); }
};

// (S f)_r = sum_c S[r*C + c] f_c, S a row-major R x C matrix, C = dim f
template <class S, class F>
struct MatVecMult {
  static_assert(S::DIM % F::DIM == 0, "kmr: MatVecMult needs dim S = R * dim f");
  static constexpr int DIM = S::DIM / F::DIM;
  template <class T>
  KMR_HOST_DEVICE KMR_INLINE static void eval(T* out, const T* const* v) {
    T s[S::DIM], f[F::DIM];
    S::eval(s, v);
    F::eval(f, v);
    for (int r = 0; r < DIM; ++r) {
      T acc = s[r * F::DIM] * f[0];
      for (int c = 1; c < F::DIM; ++c) acc = acc + s[r * F::DIM + c] * f[c];
      out[r] = acc;
    }
  }
  template <class V, class G>
  using DiffT = AddT<DiffOf<S, V, TensorProd<G, F>>, DiffOf<F, V, VecMatMult<G, S>>>;
  template <class P> static void print(P& p) { detail::print_node<S, F>(p, "MatVecMult"); }
  template <class Tab> static constexpr void vars(Tab& t) { S::vars(t); F::vars(t); }
};

// (f^T S)_c = sum_r f_r S[r*C + c], S a row-major R x C matrix, R = dim f
template <class F, class S>
struct VecMatMult {
  static_assert(S::DIM % F::DIM == 0, "kmr: VecMatMult needs dim S = dim f * C");
  static constexpr int DIM = S::DIM / F::DIM;
  template <class T>
  KMR_HOST_DEVICE KMR_INLINE static void eval(T* out, const T* const* v) {
    T f[F::DIM], s[S::DIM];
    F::eval(f, v);
    S::eval(s, v);
    for (int c = 0; c < DIM; ++c) {
      T acc = f[0] * s[c];
      for (int r = 1; r < F::DIM; ++r) acc = acc + f[r] * s[r * DIM + c];
      out[c] = acc;
    }
  }
  template <class V, class G>
  using DiffT = AddT<DiffOf<F, V, MatVecMult<S, G>>, DiffOf<S, V, TensorProd<F, G>>>;
  template <class P> static void print(P& p) { detail::print_node<F, S>(p, "VecMatMult"); }
  template <class Tab> static constexpr void vars(Tab& t) { F::vars(t); S::vars(t); }
};

// (a b^T)[r*dim b + c] = a_r b_c
template <class A, class B>
struct TensorProd {
  static constexpr int DIM = A::DIM * B::DIM;
  template <class T>
  KMR_HOST_DEVICE KMR_INLINE static void eval(T* out, const T* const* v) {
    T a[A::DIM], b[B::DIM];
    A::eval(a, v);
    B::eval(b, v);
    for (int r = 0; r < A::DIM; ++r)
      for (int c = 0; c < B::DIM; ++c) out[r * B::DIM + c] = a[r] * b[c];
  }
  template <class V, class G>
  using DiffT = AddT<DiffOf<A, V, MatVecMult<G, B>>, DiffOf<B, V, VecMatMult<A, G>>>;
  template <class P> static void print(P& p) { detail::print_node<A, B>(p, "TensorProd"); }
  template <class Tab> static constexpr void vars(Tab& t) { A::vars(t); B::vars(t); }
};

}  // namespace kmr
