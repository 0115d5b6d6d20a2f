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

namespace detail {
template <class...>
using void_t = void;
// The scalar type of a value type: float or double, or a SIMD pack's lane type.
template <class T, class = void>
struct ScalarOf {
  using type = T;
};
template <class T>
struct ScalarOf<T, void_t<typename T::value_type>> {
  using type = typename T::value_type;
};
template <class T>
KMR_HOST_DEVICE constexpr int mantissa_bits() {  // significand bits of T's scalar type: 24 (float) or 53 (double)
  return sizeof(typename ScalarOf<T>::type) == 4 ? 24 : 53;
}

// m 2^e, exact when the result is representable (each doubling or halving then is): no libm, so
// that constants are folded at compile time on the host, under nvcc and NVRTC alike.
KMR_HOST_DEVICE constexpr double scale2(double m, int e) {
  for (; e > 0; --e) m *= 2;
  for (; e < 0; ++e) m /= 2;
  return m;
}

KMR_HOST_DEVICE constexpr int bit_length(unsigned long long v) {
  int n = 0;
  for (; v != 0; v >>= 1) ++n;
  return n;
}

// p/q (0 < p, q < 2^63) rounded to the nearest value with `mant` significant bits, ties to even, as
// a double (exact in float for mant = 24): a long division with a sticky bit, hence correctly
// rounded, unlike double(p)/double(q) once p or q exceed 2^53, or a float made from that double.
KMR_HOST_DEVICE constexpr double round_ratio(unsigned long long p, unsigned long long q, int mant) {
  unsigned long long acc = p / q, r = p % q;
  int lsb = 0;  // acc 2^lsb + r/q 2^lsb = p/q
  while (bit_length(acc) < mant + 2) {  // two more bits than kept: round and guard
    r *= 2;  // r < q < 2^63: no overflow
    acc = acc * 2 + (r >= q ? 1 : 0);
    if (r >= q) r -= q;
    --lsb;
  }
  const int drop = bit_length(acc) - mant;
  const unsigned long long low = acc & ((1ULL << drop) - 1), half = 1ULL << (drop - 1);
  unsigned long long m = acc >> drop;
  if (low > half || (low == half && (r != 0 || (m & 1) != 0))) ++m;
  return scale2(double(m), lsb + drop);
}

// The constant p/q (sign apart) in T's precision, correctly rounded.
template <class T>
KMR_HOST_DEVICE constexpr double constant(bool negative, unsigned long long p, unsigned long long q) {
  const double v = p == 0 ? 0.0 : round_ratio(p, q, mantissa_bits<T>());
  return negative ? -v : v;
}
KMR_HOST_DEVICE constexpr unsigned long long magnitude(long long v) {
  return v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
}
}  // namespace detail

// The integer N (correctly rounded to T).
template <long long N>
struct IntCst {
  static constexpr int DIM = 1;
  template <class T>
  KMR_HOST_DEVICE KMR_INLINE static void eval(T* out, const T* const*) {
    constexpr double v = detail::constant<T>(N < 0, detail::magnitude(N), 1);
    out[0] = T(v);
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

// The rational P/Q (Q > 0, reduced), e.g. decimal literals 0.5 -> RatCst(1,2); correctly rounded to T.
template <long long P, long long Q>
struct RatCst {
  static constexpr int DIM = 1;
  template <class T>
  KMR_HOST_DEVICE KMR_INLINE static void eval(T* out, const T* const*) {
    constexpr double v = detail::constant<T>(P < 0, detail::magnitude(P), detail::magnitude(Q));
    out[0] = T(v);
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

// A literal that is no 64-bit ratio (2.220446049250313e-16, 1e308, 2**70...): the parser rounds it
// once, correctly, to the nearest double MD 2^ED and the nearest float MF 2^EF (EF = 128: +-inf, a
// literal beyond the float range); the key keeps both, so each precision gets its own nearest value.
template <long long MD, int ED, long long MF, int EF>
struct FpCst {
  static constexpr int DIM = 1;
  template <class T>
  KMR_HOST_DEVICE KMR_INLINE static void eval(T* out, const T* const*) {
    if (detail::mantissa_bits<T>() == 53) {
      constexpr double v = detail::scale2(double(MD), ED);
      out[0] = T(v);
    } else if (EF == 128) {
      const float big = 3.0e38f;  // folded at compile time: +-inf, outside a constant expression
      out[0] = T(MF < 0 ? -big * 10.0f : big * 10.0f);
    } else {
      constexpr float v = float(detail::scale2(double(MF), EF < 128 ? EF : 0));
      out[0] = T(v);
    }
  }
  template <class V, class G>
  using DiffT = Zero<V::DIM>;
  template <class P>
  static void print(P& p) {
    p.put("FpCst(");
    p.put_int(MD);
    p.put(",");
    p.put_int(ED);
    p.put(",");
    p.put_int(MF);
    p.put(",");
    p.put_int(EF);
    p.put(")");
  }
  template <class Tab>
  static constexpr void vars(Tab&) {}
};

}  // namespace kmr
