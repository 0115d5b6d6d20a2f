"""LazyTensor's elementwise and vector operations (mixed into GenericLazyTensor).

Each method builds one node of the parser's op table. Where the engine has no op of KeOps's name, the
method lowers onto existing ops, exactly (same values, including at the singular points stated below):

    sinxdivx(x)   IfElse(-|x|, 1, Sin(x) / IfElse(-|x|, 1, x))    (1 at 0; the inner IfElse keeps 0/0 out
                                                                    of the gradient)
    round(x)      Sign(x) (f + Step(|x| - f - 1/2)), f = Floor(|x|)  (half away from zero, as C's round;
                                                                    round(x, d) scales by 10^d first)
    x == y ...    from Sign(x - y): == is 1 - |s|, != is |s|, > is ReLU(s), < is ReLU(-s), >= is 1 - ReLU(-s),
                  <= is 1 - ReLU(s)   (x - y is 0 exactly when x == y)
    one_hot(x, D) Concat over k of (round(x) == k)
    min/max/argmin/argmax over the vector dim (dim=-1): a fold of IfElse over the entries (first index
                  on ties)
    atan2(y, x)   Atan(y / x) + pi-corrections by the signs of x and y (quadrant-exact; the value
                  agrees with atan2 within round-off)
"""

from __future__ import annotations

import math
import numbers


def _is_num(x, val=None):
    ok = isinstance(x, numbers.Real) and not isinstance(x, bool)
    return ok and (val is None or x == val)


class LazyOps:
    # --- arithmetic ---------------------------------------------------------------------------------
    def __add__(self, other):
        if _is_num(other, 0):
            return self
        return self._op("Add", other)

    def __radd__(self, other):
        if _is_num(other, 0):
            return self
        return self._wrap(other)._op("Add", self)

    def __sub__(self, other):
        if _is_num(other, 0):
            return self
        return self._op("Subtract", other)

    def __rsub__(self, other):
        if _is_num(other, 0):
            return -self
        return self._wrap(other)._op("Subtract", self)

    def __mul__(self, other):
        if _is_num(other, 0):
            return 0
        if _is_num(other, 1):
            return self
        if _is_num(other, -1):
            return -self
        if _is_num(other) and not isinstance(other, numbers.Integral) and other < 0:
            return -(self * (-other))  # exact, and -g * D lands on Minus(Mult(G, D)) (precompiled spelling)
        return self._op("Mult", other)

    def __rmul__(self, other):
        if _is_num(other):
            return self * other
        return self._wrap(other)._op("Mult", self)

    def __truediv__(self, other):
        if _is_num(other, 1):
            return self
        return self._op("Divide", other)

    def __rtruediv__(self, other):
        if _is_num(other, 1):
            return self.inv()
        return self._wrap(other)._op("Divide", self)

    def __neg__(self):
        return self._op("Minus")

    def __pos__(self):
        return self

    def __abs__(self):
        return self._op("Abs")

    def __pow__(self, other):
        """**2 Square, **0.5 Sqrt, **-0.5 Rsqrt, **-1 Inv, **int Pow, **float or LazyTensor Powf."""
        if _is_num(other):
            if other == 2:
                return self.square()
            if other == 0.5:
                return self.sqrt()
            if other == -0.5:
                return self.rsqrt()
            if other == -1:
                return self.inv()
            if other == 1:
                return self
            if float(other).is_integer():
                n = int(other)
                return self._op("Pow", params=(n,)) if n >= 0 else self._op("Pow", params=(-n,)).inv()
        return self._op("Powf", other)

    def power(self, other):
        return self**other

    def __or__(self, other):
        """(x | y): the scalar product of the vector entries."""
        return self._op("Scalprod", other)

    def __ror__(self, other):
        return self._wrap(other)._op("Scalprod", self)

    # --- comparisons: formulas with values 0 and 1 ----------------------------------------------------
    def _sign_diff(self, other):
        return (self - other).sign() if not _is_num(other, 0) else self.sign()

    def __eq__(self, other):
        return 1 - abs(self._sign_diff(other))

    def __ne__(self, other):
        return abs(self._sign_diff(other))

    def __gt__(self, other):
        return self._sign_diff(other).relu()

    def __lt__(self, other):
        return (-self._sign_diff(other)).relu()

    def __ge__(self, other):
        return 1 - (-self._sign_diff(other)).relu()

    def __le__(self, other):
        return 1 - self._sign_diff(other).relu()

    # --- unary math ---------------------------------------------------------------------------------
    def abs(self):
        return self._op("Abs")

    def exp(self):
        return self._op("Exp")

    def log(self):
        return self._op("Log")

    def sqrt(self):
        return self._op("Sqrt")

    def rsqrt(self):
        return self._op("Rsqrt")

    def sin(self):
        return self._op("Sin")

    def cos(self):
        return self._op("Cos")

    def atan(self):
        return self._op("Atan")

    def square(self):
        return self._op("Square")

    def inv(self):
        return self._op("Inv")

    def xlogx(self):
        return self._op("XLogX")

    def sign(self):
        return self._op("Sign")

    def step(self):
        return self._op("Step")

    def relu(self):
        return self._op("ReLU")

    def floor(self):
        return self._op("Floor")

    def sinxdivx(self):
        zero = -abs(self)  # >= 0 exactly where self == 0
        safe = zero.ifelse(1, self)
        return zero.ifelse(1, self.sin() / safe)

    sinc = sinxdivx

    def atan2(self, other):
        """atan2(self, other) (self = y, other = x), in (-pi, pi]."""
        y, x = self, self._wrap(other)
        base = (y / x).atan()
        xneg = (-x.sign()).relu()  # 1 where x < 0
        ysign = 2 * y.step() - 1  # +1 for y >= 0, -1 otherwise
        return base + xneg * ysign * math.pi

    def clamp(self, lo, hi):
        return self._op("Clamp", lo, hi)

    def clampint(self, lo, hi):
        return self.clamp(lo, hi)

    def ifelse(self, a, b):
        """a where self >= 0, b elsewhere."""
        return self._op("IfElse", a, b)

    def mod(self, modulus, offset=0):
        """self - modulus * floor((self - offset) / modulus)."""
        return self._op("Mod", modulus, offset)

    def round(self, d=0):
        """Round half away from zero to d decimals (KeOps's Round)."""
        if isinstance(d, bool) or not isinstance(d, int):
            raise TypeError(f"pykmr: round(d): d must be an integer, got {d!r}")
        x = self * (10.0**d) if d else self
        a = abs(x)
        f = a.floor()
        r = x.sign() * (f + (a - f - 0.5).step())
        return r / (10.0**d) if d else r

    # --- vector ops ---------------------------------------------------------------------------------
    def sqnorm2(self):
        return self._op("SqNorm2")

    def norm2(self):
        return self._op("Norm2")

    def norm(self, dim):
        if dim not in (-1, len(self._shape) - 1):
            raise ValueError("pykmr: norm() is only available over the vector dim (dim=-1)")
        return self.norm2()

    def normalize(self):
        return self._op("Normalize")

    def sqdist(self, other):
        return self._op("SqDist", other)

    def weightedsqnorm(self, other):
        """<self, S self> for the weight S = other (dim 1, D or D*D)."""
        return self._wrap(other)._op("WeightedSqNorm", self)

    def weightedsqdist(self, g, s):
        """<self - g, S (self - g)> for the weight S = s."""
        return self._wrap(s)._op("WeightedSqDist", self, g)

    def elem(self, i):
        if isinstance(i, bool) or not isinstance(i, int):
            raise TypeError(f"pykmr: elem(i): i must be an integer, got {i!r}")
        if i < 0:
            i += self.ndim
        return self._op("Elem", params=(i,))

    def extract(self, i, d):
        return self._op("Extract", params=(i, d))

    def __getitem__(self, key):
        """x[..., k] (Elem) and x[..., a:b] (Extract) on the vector dim."""
        if isinstance(key, tuple):
            if len(key) == 2 and key[0] is Ellipsis:
                key = key[1]
            elif len(key) == len(self._shape) and all(k == slice(None) for k in key[:-1]):
                key = key[-1]
            else:
                raise IndexError("pykmr: LazyTensors are indexed on their last (vector) dim only: x[..., k]")
        if isinstance(key, int) and not isinstance(key, bool):
            return self.elem(key)
        if isinstance(key, slice):
            start, stop, step = key.indices(self.ndim)
            if step != 1 or stop <= start:
                raise IndexError(
                    f"pykmr: slice {key} of a LazyTensor of dim {self.ndim}: need step 1 and "
                    "a non-empty range"
                )
            return self.extract(start, stop - start)
        raise IndexError(f"pykmr: cannot index a LazyTensor with {key!r}")

    def concat(self, other):
        return self._op("Concat", other)

    @staticmethod
    def concatenate(tensors, axis=-1):
        if axis not in (-1,) and axis != len(tensors[0]._shape) - 1:
            raise ValueError("pykmr: LazyTensors are concatenated on the vector dim (axis=-1)")
        out = tensors[0]
        for t in tensors[1:]:
            out = out.concat(t)
        return out

    @staticmethod
    def cat(tensors, dim):
        return LazyOps.concatenate(tensors, dim)

    def matvecmult(self, other):
        return self._op("MatVecMult", other)

    def vecmatmult(self, other):
        return self._op("VecMatMult", other)

    def tensorprod(self, other):
        return self._op("TensorProd", other)

    def one_hot(self, D):
        """The one-hot vector of dim D of round(self) (self scalar): entry k is 1 where round(self) == k."""
        if self.ndim != 1:
            raise ValueError(f"pykmr: one_hot needs a scalar LazyTensor, this one has dim {self.ndim}")
        if isinstance(D, bool) or not isinstance(D, int) or D < 1:
            raise ValueError(f"pykmr: one_hot(D): D must be a positive integer, got {D!r}")
        r = self.round()
        out = None
        for k in range(D):
            e = r == k
            out = e if out is None else out.concat(e)
        return out

    def grad(self, other, gradin):
        """The gradient of <self, gradin> with respect to the variable `other` (a LazyTensor leaf)."""
        other, gradin = self._wrap(other), self._wrap(gradin)
        if other._node.var is None:
            raise ValueError(
                "pykmr: grad(other, gradin): `other` must be a variable (a LazyTensor made from "
                "a tensor or Vi/Vj/Pm), not a formula"
            )
        if gradin.ndim != self.ndim:
            raise ValueError(f"pykmr: grad: gradin has dim {gradin.ndim} but the formula has dim {self.ndim}")
        return self._op("Grad", other, gradin)

    def _vector_select(self, is_max, want_index):
        """min/max/argmin/argmax over the vector entries (dim=-1), a fold of IfElse (first index on ties)."""
        best, idx = self.elem(0), None
        if want_index:
            idx = self._wrap(0)
        for k in range(1, self.ndim):
            e = self.elem(k)
            keep = _strict_keep(best, e, is_max)
            if want_index:
                idx = keep.ifelse(idx, k)
            best = keep.ifelse(best, e)
        return idx if want_index else best


def _strict_keep(best, e, is_max):
    """A formula >= 0 where the current best is kept (ties keep the earlier entry), < 0 where e wins."""
    # e wins iff e < best (min) or e > best (max); Sign(...) in {-1, 0, 1}: keep = -ReLU(sign of e winning)
    s = (best - e).sign() if not is_max else (e - best).sign()
    return -(s.relu())
