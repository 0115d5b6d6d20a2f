// Composite ops: alias templates, expanded the same way by the runtime parser
// (src/runtime), so that both print the same canonical key.
#pragma once
#include "elementwise.hpp"
#include "vector.hpp"

namespace kmr {

// |a - b|^2
template <class A, class B> using SqDist = SqNorm2<Subtract<A, B>>;
// |f|
template <class F> using Norm2 = Sqrt<SqNorm2<F>>;
// f / |f|
template <class F> using Normalize = Mult<Rsqrt<SqNorm2<F>>, F>;

// f^T S f with S isotropic (dim 1), diagonal (dim D) or a full D x D matrix
template <class S, class F>
using WeightedSqNorm = meta::conditional_t<
    S::DIM == 1, Mult<S, SqNorm2<F>>,
    meta::conditional_t<S::DIM == F::DIM, Sum<Mult<S, Square<F>>>, Scalprod<F, MatVecMult<S, F>>>>;

// (a - b)^T S (a - b)
template <class S, class A, class B> using WeightedSqDist = WeightedSqNorm<S, Subtract<A, B>>;

}  // namespace kmr
