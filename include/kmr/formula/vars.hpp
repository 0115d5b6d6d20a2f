// Leaves: variables and constants.
#pragma once
#include "fwd.hpp"

namespace kmr {

// x = v[POS][0..DIM): an i-variable, a j-variable or a parameter.
template <int POS, int DIM_, int CAT>
struct Var {
  static constexpr int DIM = DIM_;
  static constexpr int pos = POS;
  static constexpr int cat = CAT;
  template <class T>
  KMR_HOST_DEVICE KMR_INLINE static void eval(T* out, const T* const* v) {
    for (int k = 0; k < DIM; ++k) out[k] = v[POS][k];
  }
  // d<x, G>/dV = G if V is this variable, else 0.
  template <class V, class G>
  using DiffT = meta::conditional_t<meta::is_same_v<V, Var>, G, Zero<V::DIM>>;
  template <class P>
  static void print(P& p) {
    p.put(CAT == CAT_I ? "Vi(" : CAT == CAT_J ? "Vj(" : "Pm(");
    p.put_int(POS);
    p.put(",");
    p.put_int(DIM);
    p.put(")");
  }
  template <class Tab>
  static constexpr void vars(Tab& t) {
    t.add(POS, DIM, CAT);
  }
};

// 0 in R^D.
template <int D>
struct Zero {
  static constexpr int DIM = D;
  template <class T>
  KMR_HOST_DEVICE KMR_INLINE static void eval(T* out, const T* const*) {
    for (int k = 0; k < DIM; ++k) out[k] = T(0);
  }
  template <class V, class G>
  using DiffT = Zero<V::DIM>;
  template <class P>
  static void print(P& p) {
    p.put("Zero(");
    p.put_int(D);
    p.put(")");
  }
  template <class Tab>
  static constexpr void vars(Tab&) {}
};

// The integer N.
template <long long N>
struct IntCst {
  static constexpr int DIM = 1;
  template <class T>
  KMR_HOST_DEVICE KMR_INLINE static void eval(T* out, const T* const*) {
    out[0] = T(double(N));
  }
  template <class V, class G>
  using DiffT = Zero<V::DIM>;
  template <class P>
  static void print(P& p) {
    p.put("IntCst(");
    p.put_int(N);
    p.put(")");
  }
  template <class Tab>
  static constexpr void vars(Tab&) {}
};

// The rational P/Q (Q > 0, reduced), e.g. decimal literals 0.5 -> RatCst(1,2).
template <long long P, long long Q>
struct RatCst {
  static constexpr int DIM = 1;
  template <class T>
  KMR_HOST_DEVICE KMR_INLINE static void eval(T* out, const T* const*) {
    out[0] = T(double(P) / double(Q));
  }
  template <class V, class G>
  using DiffT = Zero<V::DIM>;
  template <class P_>
  static void print(P_& p) {
    p.put("RatCst(");
    p.put_int(P);
    p.put(",");
    p.put_int(Q);
    p.put(")");
  }
  template <class Tab>
  static constexpr void vars(Tab&) {}
};

}  // namespace kmr
