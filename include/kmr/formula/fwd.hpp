// Forward declarations: derivative rules refer to ops defined in other files.
#pragma once
#include "../config.hpp"
#include "meta.hpp"
#include "math.hpp"

namespace kmr {

enum VarCat : int { CAT_I = 0, CAT_J = 1, CAT_PARAM = 2 };

template <int POS, int DIM, int CAT> struct Var;
template <int D> struct Zero;
template <long long N> struct IntCst;
template <long long P, long long Q> struct RatCst;
template <long long MD, int ED, long long MF, int EF> struct FpCst;

template <class Op, class F> struct Unary;
template <class Op, class A, class B> struct Binary;
template <class Op, class A, class B, class C> struct Ternary;

struct AddOp;
struct SubtractOp;
struct MultOp;
struct DivideOp;
template <class A, class B> using Add = Binary<AddOp, A, B>;
template <class A, class B> using Subtract = Binary<SubtractOp, A, B>;
template <class A, class B> using Mult = Binary<MultOp, A, B>;
template <class A, class B> using Divide = Binary<DivideOp, A, B>;

struct MinusOp;
template <class F> using Minus = Unary<MinusOp, F>;


// Elementwise ops (functors in elementwise.hpp).
struct ExpOp;
template <class F> using Exp = Unary<ExpOp, F>;
struct LogOp;
template <class F> using Log = Unary<LogOp, F>;
struct SqrtOp;
template <class F> using Sqrt = Unary<SqrtOp, F>;
struct RsqrtOp;
template <class F> using Rsqrt = Unary<RsqrtOp, F>;
struct SquareOp;
template <class F> using Square = Unary<SquareOp, F>;
struct InvOp;
template <class F> using Inv = Unary<InvOp, F>;
struct SinOp;
template <class F> using Sin = Unary<SinOp, F>;
struct CosOp;
template <class F> using Cos = Unary<CosOp, F>;
struct AtanOp;
template <class F> using Atan = Unary<AtanOp, F>;
struct AbsOp;
template <class F> using Abs = Unary<AbsOp, F>;
struct SignOp;
template <class F> using Sign = Unary<SignOp, F>;
struct StepOp;
template <class F> using Step = Unary<StepOp, F>;
struct ReLUOp;
template <class F> using ReLU = Unary<ReLUOp, F>;
struct XLogXOp;
template <class F> using XLogX = Unary<XLogXOp, F>;
struct FloorOp;
template <class F> using Floor = Unary<FloorOp, F>;
struct NzMaskOp;
template <class C, class X> using NzMask = Binary<NzMaskOp, C, X>;
struct PowfOp;
template <class A, class B> using Powf = Binary<PowfOp, A, B>;
struct ClampOp;
template <class A, class B, class C> using Clamp = Ternary<ClampOp, A, B, C>;
struct IfElseOp;
template <class A, class B, class C> using IfElse = Ternary<IfElseOp, A, B, C>;
struct ModOp;
template <class A, class B, class C> using Mod = Ternary<ModOp, A, B, C>;

template <class F> struct Sum;
template <class F, int D> struct SumT;
template <class A, class B> struct Scalprod;
template <class F, int N> struct Pow;
template <class A, class B> struct Concat;
template <class F, int START, int D> struct Extract;
template <class F, int START, int D> struct ExtractT;
template <class F, int M> struct Elem;
template <class F, int M, int D> struct ElemT;
template <class S, class F> struct MatVecMult;
template <class F, class S> struct VecMatMult;
template <class A, class B> struct TensorProd;
template <class F, class V, class E> struct Grad;

template <class F> struct IsZero {
  static constexpr bool value = false;
};
template <int D> struct IsZero<Zero<D>> {
  static constexpr bool value = true;
};

// X::DiffT<V, H>, short-cut to 0 when the incoming gradient H is 0.
template <class X, class V, class H, bool = IsZero<H>::value>
struct DiffOfImpl {
  using type = typename X::template DiffT<V, H>;
};
template <class X, class V, class H>
struct DiffOfImpl<X, V, H, true> {
  using type = Zero<V::DIM>;
};
template <class X, class V, class H>
using DiffOf = typename DiffOfImpl<X, V, H>::type;

// A + B with zero terms dropped (all adjoint terms of one DiffT share a dim).
template <class A, class B>
using AddT = meta::conditional_t<IsZero<A>::value, B, meta::conditional_t<IsZero<B>::value, A, Add<A, B>>>;

}  // namespace kmr
