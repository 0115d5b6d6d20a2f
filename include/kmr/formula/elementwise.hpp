// Elementwise scalar ops: each is a functor with its value and adjoint rule.
// Adjoint<F, G> is the incoming gradient sent to F: G * f'(F).
#pragma once
#include "arith.hpp"
#include "vars.hpp"

namespace kmr {

#define KMR_ELEMENTWISE_NAME(op) static constexpr const char* NAME = #op;

// exp(x)' = exp(x)
struct ExpOp {
  KMR_ELEMENTWISE_NAME(Exp)
  template <class T> KMR_HOST_DEVICE KMR_INLINE static T value(T x) { return vexp(x); }
  template <class F, class G> using Adjoint = Mult<G, Exp<F>>;
};

// log(x)' = 1/x
struct LogOp {
  KMR_ELEMENTWISE_NAME(Log)
  template <class T> KMR_HOST_DEVICE KMR_INLINE static T value(T x) { return vlog(x); }
  template <class F, class G> using Adjoint = Divide<G, F>;
};

// sqrt(x)' = 1/(2 sqrt(x))
struct SqrtOp {
  KMR_ELEMENTWISE_NAME(Sqrt)
  template <class T> KMR_HOST_DEVICE KMR_INLINE static T value(T x) { return vsqrt(x); }
  template <class F, class G> using Adjoint = Mult<G, Mult<RatCst<1, 2>, Rsqrt<F>>>;
};

// rsqrt(x) = x^(-1/2), rsqrt(x)' = -1/2 rsqrt(x)^3
struct RsqrtOp {
  KMR_ELEMENTWISE_NAME(Rsqrt)
  template <class T> KMR_HOST_DEVICE KMR_INLINE static T value(T x) { return vrsqrt(x); }
  template <class F, class G> using Adjoint = Mult<G, Mult<RatCst<-1, 2>, Pow<Rsqrt<F>, 3>>>;
};

// (x^2)' = 2x
struct SquareOp {
  KMR_ELEMENTWISE_NAME(Square)
  template <class T> KMR_HOST_DEVICE KMR_INLINE static T value(T x) { return x * x; }
  template <class F, class G> using Adjoint = Mult<G, Mult<IntCst<2>, F>>;
};

// (1/x)' = -1/x^2
struct InvOp {
  KMR_ELEMENTWISE_NAME(Inv)
  template <class T> KMR_HOST_DEVICE KMR_INLINE static T value(T x) { return T(1) / x; }
  template <class F, class G> using Adjoint = Minus<Mult<G, Square<Inv<F>>>>;
};

// sin' = cos
struct SinOp {
  KMR_ELEMENTWISE_NAME(Sin)
  template <class T> KMR_HOST_DEVICE KMR_INLINE static T value(T x) { return vsin(x); }
  template <class F, class G> using Adjoint = Mult<G, Cos<F>>;
};

// cos' = -sin
struct CosOp {
  KMR_ELEMENTWISE_NAME(Cos)
  template <class T> KMR_HOST_DEVICE KMR_INLINE static T value(T x) { return vcos(x); }
  template <class F, class G> using Adjoint = Minus<Mult<G, Sin<F>>>;
};

// atan(x)' = 1/(1+x^2)
struct AtanOp {
  KMR_ELEMENTWISE_NAME(Atan)
  template <class T> KMR_HOST_DEVICE KMR_INLINE static T value(T x) { return vatan(x); }
  template <class F, class G> using Adjoint = Divide<G, Add<IntCst<1>, Square<F>>>;
};

// |x|' = sign(x)
struct AbsOp {
  KMR_ELEMENTWISE_NAME(Abs)
  template <class T> KMR_HOST_DEVICE KMR_INLINE static T value(T x) { return vabs(x); }
  template <class F, class G> using Adjoint = Mult<G, Sign<F>>;
};

// sign(x) in {-1, 0, 1}; derivative 0 a.e.
struct SignOp {
  KMR_ELEMENTWISE_NAME(Sign)
  template <class T> KMR_HOST_DEVICE KMR_INLINE static T value(T x) { return vsign(x); }
  template <class F, class G> using Adjoint = Zero<F::DIM>;
};

// step(x) = 1 if x >= 0 else 0; derivative 0 a.e.
struct StepOp {
  KMR_ELEMENTWISE_NAME(Step)
  template <class T> KMR_HOST_DEVICE KMR_INLINE static T value(T x) { return vstep(x); }
  template <class F, class G> using Adjoint = Zero<F::DIM>;
};

// floor(x); derivative 0 a.e. (used by Mod)
struct FloorOp {
  KMR_ELEMENTWISE_NAME(Floor)
  template <class T> KMR_HOST_DEVICE KMR_INLINE static T value(T x) { return vfloor(x); }
  template <class F, class G> using Adjoint = Zero<F::DIM>;
};

// relu(x) = max(x, 0), relu' = step
struct ReLUOp {
  KMR_ELEMENTWISE_NAME(ReLU)
  template <class T> KMR_HOST_DEVICE KMR_INLINE static T value(T x) { return vrelu(x); }
  template <class F, class G> using Adjoint = Mult<G, Step<F>>;
};

// x log x, derivative log x + 1
struct XLogXOp {
  KMR_ELEMENTWISE_NAME(XLogX)
  template <class T> KMR_HOST_DEVICE KMR_INLINE static T value(T x) { return vxlogx(x); }
  template <class F, class G> using Adjoint = Mult<G, Add<Log<F>, IntCst<1>>>;
};

// nzmask(c, x) = 0 where c == 0, x elsewhere (even where x is inf or NaN): the masks of the
// conventions at singular points (docs/conventions.md). The mask is constant: d/dc = 0.
struct NzMaskOp {
  KMR_ELEMENTWISE_NAME(NzMask)
  template <class T> KMR_HOST_DEVICE KMR_INLINE static T value(T c, T x) { return vnzmask(c, x); }
  template <class C, class X, class G> using AdjointA = Zero<Binary<NzMaskOp, C, X>::DIM>;
  template <class C, class X, class G> using AdjointB = NzMask<C, G>;
};

// a^b with C's pow (0^0 = 1, (-2)^2 = 4, (-2)^0.5 = NaN). Torch's derivatives at the singular
// points: d/da = b a^(b-1), 0 where b = 0; d/db = log(a) a^b, 0 where a = 0 and b >= 0.
struct PowfOp {
  KMR_ELEMENTWISE_NAME(Powf)
  template <class T> KMR_HOST_DEVICE KMR_INLINE static T value(T a, T b) { return vpow(a, b); }
  template <class A, class B, class G>
  using AdjointA = Mult<G, NzMask<B, Mult<B, Powf<A, Subtract<B, IntCst<1>>>>>>;
  template <class A, class B, class G>
  using AdjointB = Mult<G, NzMask<Add<Abs<A>, Subtract<IntCst<1>, Step<B>>>, Mult<Log<A>, Powf<A, B>>>>;
};

// clamp(x, a, b) = a if x < a, else b if x > b, else x (KeOps's value, also when a > b).
// Torch's derivatives: d/dx = [a <= x <= b], d/da = [x < a], d/db = [x >= a and x > b]:
// exactly one of the three is 1 (no double count at x = a or x = b).
struct ClampOp {
  KMR_ELEMENTWISE_NAME(Clamp)
  template <class T> KMR_HOST_DEVICE KMR_INLINE static T value(T x, T a, T b) { return vclamp(x, a, b); }
  template <class X, class A, class B, class G> using AdjointA = Mult<G, Mult<Step<Subtract<X, A>>, Step<Subtract<B, X>>>>;
  template <class X, class A, class B, class G> using AdjointB = Mult<G, Subtract<IntCst<1>, Step<Subtract<X, A>>>>;
  template <class X, class A, class B, class G>
  using AdjointC = Mult<G, Mult<Step<Subtract<X, A>>, Subtract<IntCst<1>, Step<Subtract<B, X>>>>>;
};

// ifelse(c, a, b) = a if c >= 0 else b
struct IfElseOp {
  KMR_ELEMENTWISE_NAME(IfElse)
  template <class T> KMR_HOST_DEVICE KMR_INLINE static T value(T c, T a, T b) { return vifelse(c, a, b); }
  template <class C, class A, class B, class G> using AdjointA = Zero<Ternary<IfElseOp, C, A, B>::DIM>;
  template <class C, class A, class B, class G> using AdjointB = IfElse<C, G, Zero<1>>;
  template <class C, class A, class B, class G> using AdjointC = IfElse<C, Zero<1>, G>;
};

// mod(x, m, o) = x - m floor((x - o) / m): d/dx = 1, d/dm = -floor((x-o)/m), d/do = 0 a.e.
struct ModOp {
  KMR_ELEMENTWISE_NAME(Mod)
  template <class T> KMR_HOST_DEVICE KMR_INLINE static T value(T x, T m, T o) { return x - m * vfloor((x - o) / m); }
  template <class X, class M, class O, class G> using AdjointA = G;
  template <class X, class M, class O, class G> using AdjointB = Minus<Mult<G, Floor<Divide<Subtract<X, O>, M>>>>;
  template <class X, class M, class O, class G> using AdjointC = Zero<Ternary<ModOp, X, M, O>::DIM>;
};

#undef KMR_ELEMENTWISE_NAME

}  // namespace kmr
