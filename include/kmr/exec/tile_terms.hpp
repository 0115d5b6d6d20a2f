// Tileable terms of a formula (host only, used by the CPU driver's inner-product path).
//
// At high dimension D, evaluating |x_i - y_j|^2 or <x_i, y_j> pair by pair costs
// D loads of x_i and y_j per pair; a block of rows times a block of j computes
// the same numbers as a small matrix product (D FMAs per pair, operands reused
// from registers: tile_gemm.hpp). This header finds, at compile time, the first
// such term of a formula F whose operands are an i-variable and a j-variable,
// and rewrites F with that term replaced by a scalar "pair" variable (category
// CAT_PAIR) that the driver reads from the tile:
//   SqDist(X,Y) = SqNorm2(X-Y), Sum((X-Y)^2) (either operand order)  -> TILE_SQDIST
//   (X|Y), Sum(X*Y)                           (either operand order)  -> TILE_DOT
// WeightedSqDist with a scalar weight is S*SqNorm2(X-Y): its SqNorm2 is found.
// Grad nodes are expanded first (their derivative is what is evaluated).
#pragma once
#include "../formula/formula.hpp"

namespace kmr {

// Category of the pair variables of a rewritten formula: one value per (i, j),
// read from the tile by the driver; never a category of a user's variable.
constexpr int CAT_PAIR = 3;

namespace tile {

enum TileKind : int { TILE_SQDIST = 0, TILE_DOT = 1 };

// A tileable term: KIND over i-variable PI and j-variable PJ of dim D.
template <int KIND, int PI, int PJ, int D_>
struct Term {
  static constexpr bool ok = true;
  static constexpr int kind = KIND, pi = PI, pj = PJ, D = D_;
};
struct NoTerm {
  static constexpr bool ok = false;
  static constexpr int kind = -1, pi = -1, pj = -1, D = 0;
};

// Pair<A, B>: an i-variable and a j-variable of the same dim, in either order, as the Term of KIND.
template <int KIND, class A, class B>
struct Pair {
  using type = NoTerm;
};
template <int KIND, int A, int B, int D>
struct Pair<KIND, Var<A, D, CAT_I>, Var<B, D, CAT_J>> {
  using type = Term<KIND, A, B, D>;
};
template <int KIND, int A, int B, int D>
struct Pair<KIND, Var<B, D, CAT_J>, Var<A, D, CAT_I>> {
  using type = Term<KIND, A, B, D>;
};

// Match<F>::type: the Term F is, or NoTerm.
template <class F>
struct Match {
  using type = NoTerm;
};
template <class A, class B>
struct Match<SqNorm2<Subtract<A, B>>> : Pair<TILE_SQDIST, A, B> {};
template <class A, class B>
struct Match<Sum<Square<Subtract<A, B>>>> : Pair<TILE_SQDIST, A, B> {};
template <class A, class B>
struct Match<Scalprod<A, B>> : Pair<TILE_DOT, A, B> {};
template <class A, class B>
struct Match<Sum<Mult<A, B>>> : Pair<TILE_DOT, A, B> {};

template <class... Ts>
struct FirstOk {
  using type = NoTerm;
};
template <class T, class... Ts>
struct FirstOk<T, Ts...> {
  using type = meta::conditional_t<T::ok, T, typename FirstOk<Ts...>::type>;
};

// Find<F>::type: the first tileable term of F, depth first, or NoTerm. The walk knows
// nodes by their template's shape: type arguments only (Unary, Binary, Scalprod...),
// or one formula and one or two ints (Pow, SumT, Extract...); leaves are the rest.
template <class F, class M = typename Match<F>::type>
struct Find {
  using type = M;
};
template <class F>
struct FindIn {
  using type = NoTerm;
};
template <class F>
struct Find<F, NoTerm> {
  using type = typename FindIn<F>::type;
};
template <template <class...> class N, class... A>
struct FindIn<N<A...>> {
  using type = typename FirstOk<typename Find<A>::type...>::type;
};
template <template <class, int> class N, class F, int K>
struct FindIn<N<F, K>> {
  using type = typename Find<F>::type;
};
template <template <class, int, int> class N, class F, int K, int L>
struct FindIn<N<F, K, L>> {
  using type = typename Find<F>::type;
};
template <class F, class V, class E>
struct FindIn<Grad<F, V, E>> {
  using type = typename Find<typename Grad<F, V, E>::Derivative>::type;
};

// Replace<F, Tm, PV>::type: F with every occurrence of the term Tm (in any of its
// written forms) replaced by the pair variable PV, and Grad nodes expanded.
template <class F, class Tm, class PV, bool = Tm::ok && meta::is_same_v<typename Match<F>::type, Tm>>
struct Replace {
  using type = PV;
};
template <class F, class Tm, class PV>
struct ReplaceIn {
  using type = F;
};
template <class F, class Tm, class PV>
struct Replace<F, Tm, PV, false> {
  using type = typename ReplaceIn<F, Tm, PV>::type;
};
template <template <class...> class N, class... A, class Tm, class PV>
struct ReplaceIn<N<A...>, Tm, PV> {
  using type = N<typename Replace<A, Tm, PV>::type...>;
};
template <template <class, int> class N, class F, int K, class Tm, class PV>
struct ReplaceIn<N<F, K>, Tm, PV> {
  using type = N<typename Replace<F, Tm, PV>::type, K>;
};
template <template <class, int, int> class N, class F, int K, int L, class Tm, class PV>
struct ReplaceIn<N<F, K, L>, Tm, PV> {
  using type = N<typename Replace<F, Tm, PV>::type, K, L>;
};
template <class F, class V, class E, class Tm, class PV>
struct ReplaceIn<Grad<F, V, E>, Tm, PV> {
  using type = typename Replace<typename Grad<F, V, E>::Derivative, Tm, PV>::type;
};

template <bool TILED, class F, class Tm, class PV>
struct ReplaceIf {
  using type = F;
};
template <class F, class Tm, class PV>
struct ReplaceIf<true, F, Tm, PV> {
  using type = typename Replace<F, Tm, PV>::type;
};

// The plan of formula F with NV variables, tiled from dimension MIN_DIM on: Tm (NoTerm
// when F is evaluated pair by pair) and FE, the formula the driver evaluates, whose
// pair variable sits at position NV.
template <class F, int NV, int MIN_DIM>
struct Plan {
  using Found = typename Find<F>::type;
  static constexpr bool TILED = Found::ok && Found::D >= MIN_DIM;
  using Tm = meta::conditional_t<TILED, Found, NoTerm>;
  using FE = typename ReplaceIf<TILED, F, Found, Var<NV, 1, CAT_PAIR>>::type;
};

}  // namespace tile
}  // namespace kmr
