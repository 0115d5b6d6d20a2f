// Scalar math on the value types (float, double). Ops call these names
// unqualified, so a SIMD pack type can add its own overloads (found by ADL).
#pragma once
#include "../config.hpp"

#if !defined(__CUDACC_RTC__)
#include <cmath>
#endif

namespace kmr {

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define KMR_MATH_F(name, f32, f64)                             \
  KMR_HOST_DEVICE KMR_INLINE float name(float x) { return f32(x); } \
  KMR_HOST_DEVICE KMR_INLINE double name(double x) { return f64(x); }
KMR_MATH_F(vexp, expf, exp)
KMR_MATH_F(vlog, logf, log)
KMR_MATH_F(vsqrt, sqrtf, sqrt)
KMR_MATH_F(vsin, sinf, sin)
KMR_MATH_F(vcos, cosf, cos)
KMR_MATH_F(vatan, atanf, atan)
KMR_MATH_F(vabs, fabsf, fabs)
KMR_MATH_F(vfloor, floorf, floor)
#undef KMR_MATH_F
// KeOps's convention: rsqrt(0) = 0, so that d sqrt and d|x| vanish at 0 (docs/conventions.md).
KMR_HOST_DEVICE KMR_INLINE float vrsqrt(float x) { return x == 0.0f ? 0.0f : rsqrtf(x); }
KMR_HOST_DEVICE KMR_INLINE double vrsqrt(double x) { return x == 0.0 ? 0.0 : rsqrt(x); }
KMR_HOST_DEVICE KMR_INLINE float vpow(float a, float b) { return powf(a, b); }
KMR_HOST_DEVICE KMR_INLINE double vpow(double a, double b) { return pow(a, b); }
#else
#define KMR_MATH_F(name, expr)                                 \
  KMR_INLINE float name(float x) { return expr; }              \
  KMR_INLINE double name(double x) { return expr; }
KMR_MATH_F(vexp, std::exp(x))
KMR_MATH_F(vlog, std::log(x))
KMR_MATH_F(vsqrt, std::sqrt(x))
KMR_MATH_F(vrsqrt, x == 0 ? decltype(x)(0) : 1 / std::sqrt(x))  // KeOps: rsqrt(0) = 0
KMR_MATH_F(vsin, std::sin(x))
KMR_MATH_F(vcos, std::cos(x))
KMR_MATH_F(vatan, std::atan(x))
KMR_MATH_F(vabs, std::fabs(x))
KMR_MATH_F(vfloor, std::floor(x))
#undef KMR_MATH_F
// C's pow (KeOps and torch agree): 0^0 = 1, (-2)^2 = 4, (-2)^0.5 = NaN.
KMR_INLINE float vpow(float a, float b) { return std::pow(a, b); }
KMR_INLINE double vpow(double a, double b) { return std::pow(a, b); }
#endif

// Branch-style helpers written once for scalars; packs overload them.
template <class T>
KMR_HOST_DEVICE KMR_INLINE T vstep(T x) {  // 1 if x >= 0 else 0
  return x >= T(0) ? T(1) : T(0);
}
template <class T>
KMR_HOST_DEVICE KMR_INLINE T vsign(T x) {  // -1, 0 or 1
  return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0));
}
template <class T>
KMR_HOST_DEVICE KMR_INLINE T vrelu(T x) {  // max(x, 0), NaN kept
  return x < T(0) ? T(0) : x;
}
template <class T>
KMR_HOST_DEVICE KMR_INLINE T vifelse(T c, T a, T b) {  // c >= 0 ? a : b
  return c >= T(0) ? a : b;
}
template <class T>
KMR_HOST_DEVICE KMR_INLINE T vclamp(T x, T a, T b) {  // min(max(x, a), b)
  return x < a ? a : (x > b ? b : x);
}
template <class T>
KMR_HOST_DEVICE KMR_INLINE T vinterior(T x, T a, T b) {  // 1 if a < x < b
  return (x > a && x < b) ? T(1) : T(0);
}
template <class T>
KMR_HOST_DEVICE KMR_INLINE T vnzmask(T c, T x) {  // 0 where c == 0 (even if x is inf or NaN), else x
  return c == T(0) ? T(0) : x;
}
template <class T>
KMR_HOST_DEVICE KMR_INLINE T vxlogx(T x) {  // x log x, 0 at x = 0
  return x == T(0) ? T(0) : x * vlog(x);
}

}  // namespace kmr
