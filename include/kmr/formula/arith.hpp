// Arithmetic: + - * / and unary minus (dim-1 operands broadcast).
#pragma once
#include "node.hpp"

namespace kmr {

// a + b
struct AddOp {
  static constexpr const char* NAME = "Add";
  template <class T> KMR_HOST_DEVICE KMR_INLINE static T value(T a, T b) { return a + b; }
  template <class A, class B, class G> using AdjointA = G;
  template <class A, class B, class G> using AdjointB = G;
};

// a - b
struct SubtractOp {
  static constexpr const char* NAME = "Subtract";
  template <class T> KMR_HOST_DEVICE KMR_INLINE static T value(T a, T b) { return a - b; }
  template <class A, class B, class G> using AdjointA = G;
  template <class A, class B, class G> using AdjointB = Minus<G>;
};

// a * b
struct MultOp {
  static constexpr const char* NAME = "Mult";
  template <class T> KMR_HOST_DEVICE KMR_INLINE static T value(T a, T b) { return a * b; }
  template <class A, class B, class G> using AdjointA = Mult<G, B>;
  template <class A, class B, class G> using AdjointB = Mult<G, A>;
};

// a / b: d/da = 1/b, d/db = -a (1/b)^2 (written with Inv, as Inv's own rule, so that the second
// derivative at b = 0 is torch's +-inf, not inf * 0)
struct DivideOp {
  static constexpr const char* NAME = "Divide";
  template <class T> KMR_HOST_DEVICE KMR_INLINE static T value(T a, T b) { return a / b; }
  template <class A, class B, class G> using AdjointA = Divide<G, B>;
  template <class A, class B, class G> using AdjointB = Minus<Mult<Mult<G, A>, Square<Inv<B>>>>;
};

// -a
struct MinusOp {
  static constexpr const char* NAME = "Minus";
  template <class T> KMR_HOST_DEVICE KMR_INLINE static T value(T a) { return -a; }
  template <class F, class G> using Adjoint = Minus<G>;
};

}  // namespace kmr
