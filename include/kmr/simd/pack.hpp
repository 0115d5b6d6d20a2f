// kmr::simd::Pack<T>: a pack of T lanes (the widest SIMD register of the
// target this translation unit is compiled for), the value type the CPU
// driver evaluates formulas with (DESIGN decision 5). Host only: never
// included by the device-safe formula/ and reduction/ headers.
//
// The ops of formula/ are generic over their value type and call the helpers
// of formula/math.hpp unqualified; the overloads below, in the pack's own
// namespace, are found by argument-dependent lookup. Vector math comes from
// xsimd; without it (KMR_NO_SIMD, or a target xsimd does not know) a pack is
// one scalar lane evaluated with the scalar helpers.
#pragma once
#include <cstddef>
#include <cstdint>

#include "../config.hpp"
#include "../formula/math.hpp"

#if !defined(KMR_NO_SIMD) && __has_include(<xsimd/xsimd.hpp>)
#include <xsimd/xsimd.hpp>
#if XSIMD_WITH_SSE2 || XSIMD_WITH_NEON || XSIMD_WITH_NEON64
#define KMR_SIMD_XSIMD 1
#endif
#endif

namespace kmr {
namespace simd {

// The widest instruction set enabled for this translation unit. It is a template
// argument of Pack (default), so that code compiled for different instruction
// sets has different symbol names: a baseline and an AVX-512 translation unit
// linked into one library never share an instantiation.
#if defined(KMR_SIMD_XSIMD)
using Arch = xsimd::default_arch;
#else
struct ScalarArch {};
using Arch = ScalarArch;
#endif

// Name of the instruction set packs use in this translation unit ("scalar" without SIMD).
inline const char* isa_name() {
#if defined(KMR_SIMD_XSIMD)
  return Arch::name();
#else
  return "scalar";
#endif
}

#if defined(KMR_SIMD_XSIMD)

template <class T, class A>
struct Mask;

template <class T, class A = Arch>
struct Pack {
  using value_type = T;
  using batch = xsimd::batch<T, A>;
  using mask = Mask<T, A>;
  static constexpr int size = int(batch::size);
  batch v;

  Pack() = default;
  KMR_INLINE Pack(batch b) : v(b) {}
  template <class U, class = decltype(T(U()))>
  KMR_INLINE explicit Pack(U x) : v(T(x)) {}

  static KMR_INLINE Pack load(const T* p) { return Pack(batch::load_unaligned(p)); }
  static KMR_INLINE Pack load_aligned(const T* p) { return Pack(batch::load_aligned(p)); }
  KMR_INLINE void store(T* p) const { v.store_unaligned(p); }
  // Lanes 0, 1, ..., size - 1 (plus s).
  static KMR_INLINE Pack iota(T s) {
    alignas(64) T a[size];
    for (int l = 0; l < size; ++l) a[l] = s + T(l);
    return load(a);
  }
  // Lanes l < n set.
  static KMR_INLINE mask first_lanes(int n) { return {iota(T(0)).v < batch(T(n))}; }

  KMR_INLINE Pack& operator+=(Pack b) { return v += b.v, *this; }
  KMR_INLINE Pack& operator-=(Pack b) { return v -= b.v, *this; }
  KMR_INLINE Pack& operator*=(Pack b) { return v *= b.v, *this; }
  KMR_INLINE Pack& operator/=(Pack b) { return v /= b.v, *this; }
};

template <class T, class A>
struct Mask {
  xsimd::batch_bool<T, A> m;
  KMR_INLINE friend Mask operator&&(Mask a, Mask b) { return {a.m && b.m}; }
  KMR_INLINE friend Mask operator||(Mask a, Mask b) { return {a.m || b.m}; }
  KMR_INLINE friend Mask operator!(Mask a) { return {!a.m}; }
};

template <class T, class A>
KMR_INLINE Pack<T, A> operator+(Pack<T, A> a, Pack<T, A> b) {
  return a.v + b.v;
}
template <class T, class A>
KMR_INLINE Pack<T, A> operator-(Pack<T, A> a, Pack<T, A> b) {
  return a.v - b.v;
}
template <class T, class A>
KMR_INLINE Pack<T, A> operator*(Pack<T, A> a, Pack<T, A> b) {
  return a.v * b.v;
}
template <class T, class A>
KMR_INLINE Pack<T, A> operator/(Pack<T, A> a, Pack<T, A> b) {
  return a.v / b.v;
}
template <class T, class A>
KMR_INLINE Pack<T, A> operator-(Pack<T, A> a) {
  return -a.v;
}
template <class T, class A>
KMR_INLINE Mask<T, A> operator<(Pack<T, A> a, Pack<T, A> b) {
  return {a.v < b.v};
}
template <class T, class A>
KMR_INLINE Mask<T, A> operator<=(Pack<T, A> a, Pack<T, A> b) {
  return {a.v <= b.v};
}
template <class T, class A>
KMR_INLINE Mask<T, A> operator>(Pack<T, A> a, Pack<T, A> b) {
  return {a.v > b.v};
}
template <class T, class A>
KMR_INLINE Mask<T, A> operator>=(Pack<T, A> a, Pack<T, A> b) {
  return {a.v >= b.v};
}
template <class T, class A>
KMR_INLINE Mask<T, A> operator==(Pack<T, A> a, Pack<T, A> b) {
  return {a.v == b.v};
}
// As in C++, true when either is NaN (xsimd's != is an ordered comparison on some targets).
template <class T, class A>
KMR_INLINE Mask<T, A> operator!=(Pack<T, A> a, Pack<T, A> b) {
  return {!(a.v == b.v)};
}

// c ? a : b lane by lane
template <class T, class A>
KMR_INLINE Pack<T, A> select(Mask<T, A> c, Pack<T, A> a, Pack<T, A> b) {
  return xsimd::select(c.m, a.v, b.v);
}
// a * b + c, one rounding where the target has FMA (the inner-product tiles' only op).
template <class T, class A>
KMR_INLINE Pack<T, A> fmadd(Pack<T, A> a, Pack<T, A> b, Pack<T, A> c) {
  return xsimd::fma(a.v, b.v, c.v);
}
template <class T, class A>
KMR_INLINE bool any(Mask<T, A> c) {
  return xsimd::any(c.m);
}
template <class T, class A>
KMR_INLINE Mask<T, A> isnan(Pack<T, A> a) {
  return {xsimd::isnan(a.v)};
}
// Sum of the lanes.
template <class T, class A>
KMR_INLINE T hsum(Pack<T, A> a) {
  return xsimd::hadd(a.v);
}
// Largest lane (NaN lanes ignored unless all are NaN).
template <class T, class A>
KMR_INLINE T hmax(Pack<T, A> a) {
  alignas(64) T l[Pack<T, A>::size];
  a.store(l);
  T m = l[0];
  for (int k = 1; k < Pack<T, A>::size; ++k) m = (l[k] > m || m != m) ? l[k] : m;
  return m;
}

// The helpers of formula/math.hpp on packs (same semantics, NaN kept where they keep it).
template <class T, class A>
KMR_INLINE Pack<T, A> vexp(Pack<T, A> x) {
  return xsimd::exp(x.v);
}
template <class T, class A>
KMR_INLINE Pack<T, A> vlog(Pack<T, A> x) {
  return xsimd::log(x.v);
}
template <class T, class A>
KMR_INLINE Pack<T, A> vsqrt(Pack<T, A> x) {
  return xsimd::sqrt(x.v);
}
template <class T, class A>
KMR_INLINE Pack<T, A> vrsqrt(Pack<T, A> x) {  // KeOps: rsqrt(0) = 0
  const Pack<T, A> z(T(0));
  return select(x == z, z, Pack<T, A>(Pack<T, A>(T(1)).v / xsimd::sqrt(x.v)));
}
template <class T, class A>
KMR_INLINE Pack<T, A> vpow(Pack<T, A> a, Pack<T, A> b) {
  // C's pow. xsimd's differs at a = 0 (0 for b < 0, NaN for b = 0): there, exp(b log 0) gives C's
  // 0 (b > 0), +inf (b < 0), NaN (b NaN), and b = 0 gives 1 whatever a is.
  const Pack<T, A> z(T(0));
  const Pack<T, A> p = select(a == z, Pack<T, A>(xsimd::exp(b.v * xsimd::log(a.v))), Pack<T, A>(xsimd::pow(a.v, b.v)));
  return select(b == z, Pack<T, A>(T(1)), p);
}
template <class T, class A>
KMR_INLINE Pack<T, A> vsin(Pack<T, A> x) {
  return xsimd::sin(x.v);
}
template <class T, class A>
KMR_INLINE Pack<T, A> vcos(Pack<T, A> x) {
  return xsimd::cos(x.v);
}
template <class T, class A>
KMR_INLINE Pack<T, A> vatan(Pack<T, A> x) {
  return xsimd::atan(x.v);
}
template <class T, class A>
KMR_INLINE Pack<T, A> vabs(Pack<T, A> x) {
  return xsimd::abs(x.v);
}
template <class T, class A>
KMR_INLINE Pack<T, A> vfloor(Pack<T, A> x) {
  return xsimd::floor(x.v);
}
template <class T, class A>
KMR_INLINE Pack<T, A> vstep(Pack<T, A> x) {  // 1 if x >= 0 else 0
  return select(x >= Pack<T, A>(T(0)), Pack<T, A>(T(1)), Pack<T, A>(T(0)));
}
template <class T, class A>
KMR_INLINE Pack<T, A> vsign(Pack<T, A> x) {  // -1, 0 or 1
  const Pack<T, A> z(T(0));
  return select(x > z, Pack<T, A>(T(1)), select(x < z, Pack<T, A>(T(-1)), z));
}
template <class T, class A>
KMR_INLINE Pack<T, A> vrelu(Pack<T, A> x) {  // max(x, 0), NaN kept
  return select(x < Pack<T, A>(T(0)), Pack<T, A>(T(0)), x);
}
template <class T, class A>
KMR_INLINE Pack<T, A> vifelse(Pack<T, A> c, Pack<T, A> a, Pack<T, A> b) {  // c >= 0 ? a : b
  return select(c >= Pack<T, A>(T(0)), a, b);
}
template <class T, class A>
KMR_INLINE Pack<T, A> vclamp(Pack<T, A> x, Pack<T, A> a, Pack<T, A> b) {  // min(max(x, a), b)
  return select(x < a, a, select(x > b, b, x));
}
template <class T, class A>
KMR_INLINE Pack<T, A> vinterior(Pack<T, A> x, Pack<T, A> a, Pack<T, A> b) {  // 1 if a < x < b
  return select((x > a) && (x < b), Pack<T, A>(T(1)), Pack<T, A>(T(0)));
}
template <class T, class A>
KMR_INLINE Pack<T, A> vxlogx(Pack<T, A> x) {  // x log x, 0 at x = 0
  const Pack<T, A> z(T(0));
  return select(x == z, z, x * vlog(x));
}

#else  // no SIMD: one lane, the scalar helpers

template <class T, class A>
struct Mask {
  bool m;
  KMR_INLINE friend Mask operator&&(Mask a, Mask b) { return {a.m && b.m}; }
  KMR_INLINE friend Mask operator||(Mask a, Mask b) { return {a.m || b.m}; }
  KMR_INLINE friend Mask operator!(Mask a) { return {!a.m}; }
};

template <class T, class A = Arch>
struct Pack {
  using value_type = T;
  using mask = Mask<T, A>;
  static constexpr int size = 1;
  T v;
  Pack() = default;
  template <class U, class = decltype(T(U()))>
  KMR_INLINE explicit Pack(U x) : v(T(x)) {}
  static KMR_INLINE Pack load(const T* p) { return Pack(*p); }
  static KMR_INLINE Pack load_aligned(const T* p) { return Pack(*p); }
  KMR_INLINE void store(T* p) const { *p = v; }
  static KMR_INLINE Pack iota(T s) { return Pack(s); }
  static KMR_INLINE mask first_lanes(int n) { return {n > 0}; }
  KMR_INLINE Pack& operator+=(Pack b) { return v += b.v, *this; }
  KMR_INLINE Pack& operator-=(Pack b) { return v -= b.v, *this; }
  KMR_INLINE Pack& operator*=(Pack b) { return v *= b.v, *this; }
  KMR_INLINE Pack& operator/=(Pack b) { return v /= b.v, *this; }
};

template <class T, class A>
KMR_INLINE Pack<T, A> operator+(Pack<T, A> a, Pack<T, A> b) {
  return Pack<T, A>(a.v + b.v);
}
template <class T, class A>
KMR_INLINE Pack<T, A> operator-(Pack<T, A> a, Pack<T, A> b) {
  return Pack<T, A>(a.v - b.v);
}
template <class T, class A>
KMR_INLINE Pack<T, A> operator*(Pack<T, A> a, Pack<T, A> b) {
  return Pack<T, A>(a.v * b.v);
}
template <class T, class A>
KMR_INLINE Pack<T, A> operator/(Pack<T, A> a, Pack<T, A> b) {
  return Pack<T, A>(a.v / b.v);
}
template <class T, class A>
KMR_INLINE Pack<T, A> operator-(Pack<T, A> a) {
  return Pack<T, A>(-a.v);
}
template <class T, class A>
KMR_INLINE Mask<T, A> operator<(Pack<T, A> a, Pack<T, A> b) {
  return {a.v < b.v};
}
template <class T, class A>
KMR_INLINE Mask<T, A> operator<=(Pack<T, A> a, Pack<T, A> b) {
  return {a.v <= b.v};
}
template <class T, class A>
KMR_INLINE Mask<T, A> operator>(Pack<T, A> a, Pack<T, A> b) {
  return {a.v > b.v};
}
template <class T, class A>
KMR_INLINE Mask<T, A> operator>=(Pack<T, A> a, Pack<T, A> b) {
  return {a.v >= b.v};
}
template <class T, class A>
KMR_INLINE Mask<T, A> operator==(Pack<T, A> a, Pack<T, A> b) {
  return {a.v == b.v};
}
template <class T, class A>
KMR_INLINE Mask<T, A> operator!=(Pack<T, A> a, Pack<T, A> b) {
  return {a.v != b.v};
}
template <class T, class A>
KMR_INLINE Pack<T, A> select(Mask<T, A> c, Pack<T, A> a, Pack<T, A> b) {
  return c.m ? a : b;
}
template <class T, class A>
KMR_INLINE Pack<T, A> fmadd(Pack<T, A> a, Pack<T, A> b, Pack<T, A> c) {
  return Pack<T, A>(a.v * b.v + c.v);
}
template <class T, class A>
KMR_INLINE bool any(Mask<T, A> c) {
  return c.m;
}
template <class T, class A>
KMR_INLINE Mask<T, A> isnan(Pack<T, A> a) {
  return {a.v != a.v};
}
template <class T, class A>
KMR_INLINE T hsum(Pack<T, A> a) {
  return a.v;
}
template <class T, class A>
KMR_INLINE T hmax(Pack<T, A> a) {
  return a.v;
}

#define KMR_PACK_UNARY(name)                 \
  template <class T, class A>                \
  KMR_INLINE Pack<T, A> name(Pack<T, A> x) { \
    return Pack<T, A>(::kmr::name(x.v));     \
  }
KMR_PACK_UNARY(vexp)
KMR_PACK_UNARY(vlog)
KMR_PACK_UNARY(vsqrt)
KMR_PACK_UNARY(vrsqrt)
KMR_PACK_UNARY(vsin)
KMR_PACK_UNARY(vcos)
KMR_PACK_UNARY(vatan)
KMR_PACK_UNARY(vabs)
KMR_PACK_UNARY(vfloor)
KMR_PACK_UNARY(vstep)
KMR_PACK_UNARY(vsign)
KMR_PACK_UNARY(vrelu)
KMR_PACK_UNARY(vxlogx)
#undef KMR_PACK_UNARY
template <class T, class A>
KMR_INLINE Pack<T, A> vifelse(Pack<T, A> c, Pack<T, A> a, Pack<T, A> b) {
  return Pack<T, A>(::kmr::vifelse(c.v, a.v, b.v));
}
template <class T, class A>
KMR_INLINE Pack<T, A> vclamp(Pack<T, A> x, Pack<T, A> a, Pack<T, A> b) {
  return Pack<T, A>(::kmr::vclamp(x.v, a.v, b.v));
}
template <class T, class A>
KMR_INLINE Pack<T, A> vinterior(Pack<T, A> x, Pack<T, A> a, Pack<T, A> b) {
  return Pack<T, A>(::kmr::vinterior(x.v, a.v, b.v));
}
template <class T, class A>
KMR_INLINE Pack<T, A> vpow(Pack<T, A> a, Pack<T, A> b) {
  return Pack<T, A>(::kmr::vpow(a.v, b.v));
}

#endif

// 0 where c == 0 (even if x is inf or NaN), else x; written once for both pack kinds.
template <class T, class A>
KMR_INLINE Pack<T, A> vnzmask(Pack<T, A> c, Pack<T, A> x) {
  const Pack<T, A> z(T(0));
  return select(c == z, z, x);
}

}  // namespace simd
}  // namespace kmr
