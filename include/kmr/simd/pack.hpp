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

#if defined(KMR_SIMD_XSIMD)
// The widest instruction set enabled for this translation unit.
using Arch = xsimd::default_arch;
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

template <class T>
struct Mask;

template <class T>
struct Pack {
  using batch = xsimd::batch<T, Arch>;
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

  KMR_INLINE Pack& operator+=(Pack b) { return v += b.v, *this; }
  KMR_INLINE Pack& operator-=(Pack b) { return v -= b.v, *this; }
  KMR_INLINE Pack& operator*=(Pack b) { return v *= b.v, *this; }
  KMR_INLINE Pack& operator/=(Pack b) { return v /= b.v, *this; }
};

template <class T>
struct Mask {
  xsimd::batch_bool<T, Arch> m;
  KMR_INLINE friend Mask operator&&(Mask a, Mask b) { return {a.m && b.m}; }
  KMR_INLINE friend Mask operator||(Mask a, Mask b) { return {a.m || b.m}; }
  KMR_INLINE friend Mask operator!(Mask a) { return {!a.m}; }
};

template <class T> KMR_INLINE Pack<T> operator+(Pack<T> a, Pack<T> b) { return a.v + b.v; }
template <class T> KMR_INLINE Pack<T> operator-(Pack<T> a, Pack<T> b) { return a.v - b.v; }
template <class T> KMR_INLINE Pack<T> operator*(Pack<T> a, Pack<T> b) { return a.v * b.v; }
template <class T> KMR_INLINE Pack<T> operator/(Pack<T> a, Pack<T> b) { return a.v / b.v; }
template <class T> KMR_INLINE Pack<T> operator-(Pack<T> a) { return -a.v; }
template <class T> KMR_INLINE Mask<T> operator<(Pack<T> a, Pack<T> b) { return {a.v < b.v}; }
template <class T> KMR_INLINE Mask<T> operator<=(Pack<T> a, Pack<T> b) { return {a.v <= b.v}; }
template <class T> KMR_INLINE Mask<T> operator>(Pack<T> a, Pack<T> b) { return {a.v > b.v}; }
template <class T> KMR_INLINE Mask<T> operator>=(Pack<T> a, Pack<T> b) { return {a.v >= b.v}; }
template <class T> KMR_INLINE Mask<T> operator==(Pack<T> a, Pack<T> b) { return {a.v == b.v}; }
template <class T> KMR_INLINE Mask<T> operator!=(Pack<T> a, Pack<T> b) { return {a.v != b.v}; }

// c ? a : b lane by lane
template <class T> KMR_INLINE Pack<T> select(Mask<T> c, Pack<T> a, Pack<T> b) { return xsimd::select(c.m, a.v, b.v); }
template <class T> KMR_INLINE bool any(Mask<T> c) { return xsimd::any(c.m); }
template <class T> KMR_INLINE Mask<T> isnan(Pack<T> a) { return {a.v != a.v}; }
// Lanes l < n set.
template <class T>
KMR_INLINE Mask<T> first_lanes(int n) {
  return Pack<T>::iota(T(0)) < Pack<T>(T(n));
}
// Sum of the lanes.
template <class T> KMR_INLINE T hsum(Pack<T> a) { return xsimd::hadd(a.v); }
// Largest lane (NaN lanes ignored unless all are NaN).
template <class T>
KMR_INLINE T hmax(Pack<T> a) {
  alignas(64) T l[Pack<T>::size];
  a.store(l);
  T m = l[0];
  for (int k = 1; k < Pack<T>::size; ++k) m = (l[k] > m || m != m) ? l[k] : m;
  return m;
}

// The helpers of formula/math.hpp on packs (same semantics, NaN kept where they keep it).
template <class T> KMR_INLINE Pack<T> vexp(Pack<T> x) { return xsimd::exp(x.v); }
template <class T> KMR_INLINE Pack<T> vlog(Pack<T> x) { return xsimd::log(x.v); }
template <class T> KMR_INLINE Pack<T> vsqrt(Pack<T> x) { return xsimd::sqrt(x.v); }
template <class T> KMR_INLINE Pack<T> vrsqrt(Pack<T> x) { return Pack<T>(T(1)).v / xsimd::sqrt(x.v); }
template <class T> KMR_INLINE Pack<T> vsin(Pack<T> x) { return xsimd::sin(x.v); }
template <class T> KMR_INLINE Pack<T> vcos(Pack<T> x) { return xsimd::cos(x.v); }
template <class T> KMR_INLINE Pack<T> vatan(Pack<T> x) { return xsimd::atan(x.v); }
template <class T> KMR_INLINE Pack<T> vabs(Pack<T> x) { return xsimd::abs(x.v); }
template <class T> KMR_INLINE Pack<T> vfloor(Pack<T> x) { return xsimd::floor(x.v); }
template <class T>
KMR_INLINE Pack<T> vstep(Pack<T> x) {  // 1 if x >= 0 else 0
  return select(x >= Pack<T>(T(0)), Pack<T>(T(1)), Pack<T>(T(0)));
}
template <class T>
KMR_INLINE Pack<T> vsign(Pack<T> x) {  // -1, 0 or 1
  const Pack<T> z(T(0));
  return select(x > z, Pack<T>(T(1)), select(x < z, Pack<T>(T(-1)), z));
}
template <class T>
KMR_INLINE Pack<T> vrelu(Pack<T> x) {  // max(x, 0), NaN kept
  return select(x < Pack<T>(T(0)), Pack<T>(T(0)), x);
}
template <class T>
KMR_INLINE Pack<T> vifelse(Pack<T> c, Pack<T> a, Pack<T> b) {  // c >= 0 ? a : b
  return select(c >= Pack<T>(T(0)), a, b);
}
template <class T>
KMR_INLINE Pack<T> vclamp(Pack<T> x, Pack<T> a, Pack<T> b) {  // min(max(x, a), b)
  return select(x < a, a, select(x > b, b, x));
}
template <class T>
KMR_INLINE Pack<T> vinterior(Pack<T> x, Pack<T> a, Pack<T> b) {  // 1 if a < x < b
  return select((x > a) && (x < b), Pack<T>(T(1)), Pack<T>(T(0)));
}
template <class T>
KMR_INLINE Pack<T> vxlogx(Pack<T> x) {  // x log x, 0 at x = 0
  const Pack<T> z(T(0));
  return select(x == z, z, x * vlog(x));
}

#else  // no SIMD: one lane, the scalar helpers

template <class T>
struct Mask {
  bool m;
  KMR_INLINE friend Mask operator&&(Mask a, Mask b) { return {a.m && b.m}; }
  KMR_INLINE friend Mask operator||(Mask a, Mask b) { return {a.m || b.m}; }
  KMR_INLINE friend Mask operator!(Mask a) { return {!a.m}; }
};

template <class T>
struct Pack {
  static constexpr int size = 1;
  T v;
  Pack() = default;
  template <class U, class = decltype(T(U()))>
  KMR_INLINE explicit Pack(U x) : v(T(x)) {}
  static KMR_INLINE Pack load(const T* p) { return Pack(*p); }
  static KMR_INLINE Pack load_aligned(const T* p) { return Pack(*p); }
  KMR_INLINE void store(T* p) const { *p = v; }
  static KMR_INLINE Pack iota(T s) { return Pack(s); }
  KMR_INLINE Pack& operator+=(Pack b) { return v += b.v, *this; }
  KMR_INLINE Pack& operator-=(Pack b) { return v -= b.v, *this; }
  KMR_INLINE Pack& operator*=(Pack b) { return v *= b.v, *this; }
  KMR_INLINE Pack& operator/=(Pack b) { return v /= b.v, *this; }
};

template <class T> KMR_INLINE Pack<T> operator+(Pack<T> a, Pack<T> b) { return Pack<T>(a.v + b.v); }
template <class T> KMR_INLINE Pack<T> operator-(Pack<T> a, Pack<T> b) { return Pack<T>(a.v - b.v); }
template <class T> KMR_INLINE Pack<T> operator*(Pack<T> a, Pack<T> b) { return Pack<T>(a.v * b.v); }
template <class T> KMR_INLINE Pack<T> operator/(Pack<T> a, Pack<T> b) { return Pack<T>(a.v / b.v); }
template <class T> KMR_INLINE Pack<T> operator-(Pack<T> a) { return Pack<T>(-a.v); }
template <class T> KMR_INLINE Mask<T> operator<(Pack<T> a, Pack<T> b) { return {a.v < b.v}; }
template <class T> KMR_INLINE Mask<T> operator<=(Pack<T> a, Pack<T> b) { return {a.v <= b.v}; }
template <class T> KMR_INLINE Mask<T> operator>(Pack<T> a, Pack<T> b) { return {a.v > b.v}; }
template <class T> KMR_INLINE Mask<T> operator>=(Pack<T> a, Pack<T> b) { return {a.v >= b.v}; }
template <class T> KMR_INLINE Mask<T> operator==(Pack<T> a, Pack<T> b) { return {a.v == b.v}; }
template <class T> KMR_INLINE Mask<T> operator!=(Pack<T> a, Pack<T> b) { return {a.v != b.v}; }
template <class T> KMR_INLINE Pack<T> select(Mask<T> c, Pack<T> a, Pack<T> b) { return c.m ? a : b; }
template <class T> KMR_INLINE bool any(Mask<T> c) { return c.m; }
template <class T> KMR_INLINE Mask<T> isnan(Pack<T> a) { return {a.v != a.v}; }
template <class T> KMR_INLINE Mask<T> first_lanes(int n) { return {n > 0}; }
template <class T> KMR_INLINE T hsum(Pack<T> a) { return a.v; }
template <class T> KMR_INLINE T hmax(Pack<T> a) { return a.v; }

#define KMR_PACK_UNARY(name) \
  template <class T>         \
  KMR_INLINE Pack<T> name(Pack<T> x) { return Pack<T>(::kmr::name(x.v)); }
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
template <class T>
KMR_INLINE Pack<T> vifelse(Pack<T> c, Pack<T> a, Pack<T> b) { return Pack<T>(::kmr::vifelse(c.v, a.v, b.v)); }
template <class T>
KMR_INLINE Pack<T> vclamp(Pack<T> x, Pack<T> a, Pack<T> b) { return Pack<T>(::kmr::vclamp(x.v, a.v, b.v)); }
template <class T>
KMR_INLINE Pack<T> vinterior(Pack<T> x, Pack<T> a, Pack<T> b) { return Pack<T>(::kmr::vinterior(x.v, a.v, b.v)); }

#endif

}  // namespace simd
}  // namespace kmr
