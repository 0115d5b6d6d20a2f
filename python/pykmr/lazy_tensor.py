"""LazyTensor: KeOps's symbolic matrix API (pykeops.torch.LazyTensor / pykeops.numpy.LazyTensor).

    x_i = LazyTensor(x[:, None, :])       # (N, 1, D): a variable indexed by i
    y_j = LazyTensor(y[None, :, :])       # (1, M, D): a variable indexed by j
    D_ij = ((x_i - y_j) ** 2).sum(-1)     # (N, M) symbolic: nothing is computed
    a = (-D_ij * g).exp() @ b             # one kernel reduction: a_i = sum_j exp(-g |x_i - y_j|^2) b_j

A LazyTensor is a small expression tree (pykmr.lazy_tree) plus KeOps's bookkeeping (ni, nj, batch dims,
dtype, ranges, backend). A reduction lowers the tree once to a formula string and aliases, gets the
Genred for them from a cache, and calls it with the tensors; gradients are those of Genred (any order).
The front ends (pykmr.torch.LazyTensor, pykmr.numpy.LazyTensor) only supply a `_tools` object.
The elementwise ops and methods live in pykmr.lazy_ops (mixed into this class).
"""

from __future__ import annotations

import numbers
import operator

from pykmr import lazy_tree as T
from pykmr.lazy_ops import LazyOps

_REDUCTION_OPTIONS = {
    "backend",
    "device_id",
    "dtype_acc",
    "sum_scheme",
    "use_double_acc",
    "enable_chunks",
    "ranges",
    "dtype",
    "cuda_type",
    "optional_flags",
    "use_fast_math",
    "rec_multVar_highdim",
}


class GenericLazyTensor(LazyOps):
    """A symbolic (..., N, M, D) array; see the module doc. Not an array type: arithmetic and comparisons
    with it build formulas (never booleans), and array libraries defer to it (__array_ufunc__ = None)."""

    _tools = None  # set by the front ends
    __array_ufunc__ = None
    __array_priority__ = 1000

    def __init__(self, x=None, axis=None):
        self.ni = self.nj = None
        self.batchdims = None
        self._dtype = None
        self.ranges = None
        self.backend = None
        self.symbolic = False
        if x is None:
            self._node = None
            return
        tools = self._tools
        if isinstance(x, tuple):
            if len(x) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) for v in x):
                raise ValueError("pykmr: LazyTensor((ind, dim, cat)) takes a triplet of integers")
            if axis is not None:
                raise ValueError("pykmr: 'axis' must not be given with LazyTensor((ind, dim, cat))")
            ind, dim, cat = x
            if cat not in (0, 1, 2) or dim < 1 or ind < 0:
                raise ValueError(f"pykmr: LazyTensor({x}): expected ind >= 0, dim >= 1, cat in 0, 1, 2")
            self._node = T.Node("Var", var=T.Var(cat, dim, None, ind))
            self.symbolic = True
            return
        if isinstance(x, bool):
            raise TypeError("pykmr: LazyTensor of a bool: use an int or a float")
        if isinstance(x, numbers.Integral) and not tools.is_array(x):
            self._node = T.intcst(int(x))
            return
        if isinstance(x, numbers.Real) and not tools.is_array(x):
            x = [float(x)]
        if isinstance(x, list):
            if axis not in (None, 2):
                raise ValueError("pykmr: a list of numbers is a parameter: axis must be None or 2")
            if not x or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in x):
                raise TypeError("pykmr: LazyTensor(list) takes a non-empty list of numbers")
            self._node = T.Node("Var", var=T.Var(2, len(x), tuple(float(v) for v in x)))
            return
        if not tools.is_array(x):
            raise TypeError(
                f"pykmr: LazyTensor takes a {tools.arrayname}, a number, a list of numbers or a "
                f"triplet (ind, dim, cat), got {type(x).__name__}"
            )
        self._dtype = tools.dtypename(x)
        shape = tuple(x.shape)
        if len(shape) == 0:
            x, shape = x.reshape(1), (1,)
        if len(shape) >= 3:
            if axis is not None:
                raise ValueError("pykmr: 'axis' must not be given for a 3D+ tensor (its shape says it)")
            if len(shape) > 3:
                self.batchdims = shape[:-3]
            if shape[-3] == 1 and shape[-2] == 1:
                x, axis = x.reshape(shape[:-3] + shape[-1:]), 2
            elif shape[-3] == 1:
                x, axis = x.reshape(shape[:-3] + shape[-2:]), 1
            elif shape[-2] == 1:
                x, axis = x.reshape(shape[:-3] + (shape[-3], shape[-1])), 0
            else:
                raise ValueError(
                    f"pykmr: a 3D+ LazyTensor needs shape (..., N, 1, D), (..., 1, M, D) or "
                    f"(..., 1, 1, D), got {shape}"
                )
        if len(x.shape) >= 2 and axis != 2:
            if axis not in (0, 1):
                raise ValueError(
                    f"pykmr: a 2D array needs axis=0 (indexed by i) or axis=1 (by j), got axis={axis!r}"
                )
            if axis == 0:
                self.ni = x.shape[-2]
            else:
                self.nj = x.shape[-2]
        elif len(x.shape) == 1 or axis == 2:
            if axis not in (None, 2):
                raise ValueError("pykmr: a 0D or 1D array is a parameter: axis must be None or 2")
            axis = 2
        self._node = T.Node("Var", var=T.Var(axis, x.shape[-1], x))

    # -----------------------------------------------------------------------------------------------------
    # Construction helpers
    # -----------------------------------------------------------------------------------------------------
    @classmethod
    def _new(cls, node, *parents):
        """A LazyTensor for `node`, with the merged bookkeeping of its parents (checked for agreement)."""
        res = cls.__new__(cls)
        GenericLazyTensor.__init__(res)
        res._node = node
        for p in parents:
            for attr in ("ni", "nj", "_dtype", "backend"):
                a, b = getattr(res, attr), getattr(p, attr)
                if b is not None:
                    if a is not None and a != b:
                        what = {
                            "ni": "numbers of i-rows",
                            "nj": "numbers of j-rows",
                            "_dtype": "dtypes",
                            "backend": "backends",
                        }[attr]
                        raise ValueError(f"pykmr: LazyTensors with different {what}: {a} and {b}")
                    setattr(res, attr, b)
            if p.ranges is not None:
                res.ranges = p.ranges
            res.batchdims = _broadcast_batch(res.batchdims, p.batchdims)
            res.symbolic = res.symbolic or p.symbolic
        return res

    def _wrap(self, other):
        """Turns an operand into a LazyTensor: numbers become constants (int exact, float a parameter of
        the call's dtype), arrays are wrapped by their shape (KeOps's rule)."""
        if isinstance(other, GenericLazyTensor):
            if other._tools is not self._tools:
                raise TypeError("pykmr: cannot mix torch and numpy LazyTensors")
            return other
        if isinstance(other, (numbers.Real, list)) or self._tools.is_array(other):
            return type(self)(other)
        raise TypeError(f"pykmr: cannot combine a LazyTensor with {type(other).__name__}")

    def _op(self, op, *others, params=()):
        others = [self._wrap(o) for o in others]
        if getattr(self, "_reduced", False) or any(getattr(o, "_reduced", False) for o in others):
            raise ValueError("pykmr: a reduced LazyTensor takes no further operation")
        node = T.make(op, self._node, *(o._node for o in others), params=params)
        return self._new(node, self, *others)

    # -----------------------------------------------------------------------------------------------------
    # Shapes (KeOps's): _shape = batch + (ni, nj, D); shape drops a trailing 1
    # -----------------------------------------------------------------------------------------------------
    @property
    def ndim(self):
        """The formula's vector dim (KeOps's attribute of that name)."""
        return self._node.dim

    @property
    def _shape(self):
        return (self.batchdims or ()) + (self.ni or 1, self.nj or 1, self._node.dim)

    @property
    def shape(self):
        s = self._shape
        return s[:-1] if s[-1] == 1 else s

    def dim(self):
        return len(self._shape)

    @property
    def nbatchdims(self):
        return len(self.batchdims or ())

    @property
    def dtype(self):
        return self._dtype

    @property
    def formula(self):
        return T.to_str(self._node)

    def __str__(self):
        return f"KeOps LazyTensor\n    formula: {self.formula}\n    shape: {self.shape}"

    __repr__ = __str__

    def __bool__(self):
        raise TypeError("pykmr: the truth value of a LazyTensor is symbolic; reduce it first")

    def __hash__(self):
        return id(self)

    # -----------------------------------------------------------------------------------------------------
    # .t() / .T: swap i and j
    # -----------------------------------------------------------------------------------------------------
    def t(self):
        res = self._new(T.swap_ij(self._node), self)
        res.ni, res.nj = self.nj, self.ni
        return res

    @property
    def T(self):
        return self.t()

    # -----------------------------------------------------------------------------------------------------
    # Reductions
    # -----------------------------------------------------------------------------------------------------
    def _axis(self, axis, dim, name, allow_vector):
        """KeOps's dim/axis for a reduction: returns 0 (over i), 1 (over j) or -1 (the vector dim)."""
        if dim is not None:
            axis = dim
        nb = self.nbatchdims
        if axis is None:
            raise ValueError(f"pykmr: {name}() needs dim=0 (over i) or dim=1 (over j)")
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise TypeError(f"pykmr: {name}(dim=...) must be an integer, got {axis!r}")
        if axis in (-1, nb + 2):
            if allow_vector:
                return -1
            raise ValueError(
                f"pykmr: {name}() over the vector dim is not supported: use dim={nb} (over i) "
                f"or dim={nb + 1} (over j)"
            )
        if axis in (nb, -3):
            return 0
        if axis in (nb + 1, -2):
            return 1
        raise ValueError(
            f"pykmr: {name}(dim={axis}): expected {nb} (over i), {nb + 1} (over j)"
            + (" or -1 (the vector dim)" if allow_vector else "")
        )

    def _reduce(self, reduction, axis, opt_arg=None, weight=None, call=True, **kwargs):
        unknown = set(kwargs) - _REDUCTION_OPTIONS
        if unknown:
            raise TypeError(f"pykmr: unexpected keyword arguments {sorted(unknown)}")
        if getattr(self, "_reduced", False):
            raise ValueError("pykmr: this LazyTensor is already reduced")
        if weight is not None:
            weight = self._wrap(weight)
        red = Reduced(self, reduction, axis, opt_arg, weight, kwargs)
        if call and not red.symbolic:
            return red()
        return red

    def sum(self, axis=-1, dim=None, weight=None, **kwargs):
        """sum(-1): the in-formula sum of the vector entries; sum(dim=0|1): Sum reduction over i or j
        (with `weight`: of self * weight). Returns (N, D) for dim=1, (M, D) for dim=0 (batch dims first)."""
        a = self._axis(axis, dim, "sum", True)
        if a == -1:
            if weight is not None:
                raise ValueError("pykmr: sum(-1) takes no weight")
            return self._op("Sum")
        f = self if weight is None else self * weight
        return f._reduce("Sum", a, **kwargs)

    def sum_reduction(self, axis=None, dim=None, **kwargs):
        return self._reduce("Sum", self._axis(axis, dim, "sum_reduction", False), **kwargs)

    def logsumexp(self, axis=None, dim=None, weight=None, **kwargs):
        """log sum_j exp(F_ij) (times weight_j inside the sum when given). F of dim D > 1: coordinate by
        coordinate, (N, D) (with a weight of dim D, coordinate by coordinate too)."""
        return self._reduce("LogSumExp", self._axis(axis, dim, "logsumexp", False), weight=weight, **kwargs)

    logsumexp_reduction = logsumexp

    def sumsoftmaxweight(self, weight, axis=None, dim=None, **kwargs):
        """sum_j exp(F_ij) w_j / sum_j exp(F_ij): F scalar and w of any dim, or F and w both of dim D
        (coordinate by coordinate)."""
        return self._reduce(
            "SumSoftMaxWeight", self._axis(axis, dim, "sumsoftmaxweight", False), weight=weight, **kwargs
        )

    sumsoftmaxweight_reduction = sumsoftmaxweight

    def _select(self, name, red, axis, dim, kwargs, vector=None):
        a = self._axis(axis, dim, name, vector is not None)
        if a == -1:
            return vector()
        return self._reduce(red, a, **kwargs)

    def min(self, axis=-1, dim=None, **kwargs):
        return self._select("min", "Min", axis, dim, kwargs, lambda: self._vector_select(False, False))

    def max(self, axis=-1, dim=None, **kwargs):
        return self._select("max", "Max", axis, dim, kwargs, lambda: self._vector_select(True, False))

    def argmin(self, axis=-1, dim=None, **kwargs):
        return self._select("argmin", "ArgMin", axis, dim, kwargs, lambda: self._vector_select(False, True))

    def argmax(self, axis=-1, dim=None, **kwargs):
        return self._select("argmax", "ArgMax", axis, dim, kwargs, lambda: self._vector_select(True, True))

    def min_reduction(self, axis=None, dim=None, **kwargs):
        return self._select("min_reduction", "Min", axis, dim, kwargs)

    def max_reduction(self, axis=None, dim=None, **kwargs):
        return self._select("max_reduction", "Max", axis, dim, kwargs)

    def argmin_reduction(self, axis=None, dim=None, **kwargs):
        return self._select("argmin_reduction", "ArgMin", axis, dim, kwargs)

    def argmax_reduction(self, axis=None, dim=None, **kwargs):
        return self._select("argmax_reduction", "ArgMax", axis, dim, kwargs)

    def min_argmin(self, axis=None, dim=None, **kwargs):
        return self._select("min_argmin", "Min_ArgMin", axis, dim, kwargs)

    def max_argmax(self, axis=None, dim=None, **kwargs):
        return self._select("max_argmax", "Max_ArgMax", axis, dim, kwargs)

    min_argmin_reduction = min_argmin
    max_argmax_reduction = max_argmax

    def _k(self, K):
        try:
            k = operator.index(K)  # ints, numpy ints and integer 0-d tensors (TorchDR passes one)
        except TypeError:
            k = None
        if isinstance(K, bool) or k is None or k < 1:
            raise ValueError(f"pykmr: K must be a positive integer, got {K!r}")
        return k

    def Kmin(self, K, axis=None, dim=None, **kwargs):
        return self._reduce("KMin", self._axis(axis, dim, "Kmin", False), opt_arg=self._k(K), **kwargs)

    def argKmin(self, K, axis=None, dim=None, **kwargs):
        return self._reduce("ArgKMin", self._axis(axis, dim, "argKmin", False), opt_arg=self._k(K), **kwargs)

    def Kmin_argKmin(self, K, axis=None, dim=None, **kwargs):
        return self._reduce(
            "KMin_ArgKMin", self._axis(axis, dim, "Kmin_argKmin", False), opt_arg=self._k(K), **kwargs
        )

    Kmin_reduction = Kmin
    argKmin_reduction = argKmin
    Kmin_argKmin_reduction = Kmin_argKmin

    def __matmul__(self, v):
        """K @ v = sum_j K_ij v_j for a scalar K and a dense v of shape (M,) or (M, E) (batch dims first);
        (M,) gives (N,)."""
        if self.ndim != 1:
            raise ValueError(f"pykmr: K @ v needs a scalar LazyTensor K, this one has dim {self.ndim}")
        if not self._tools.is_array(v):
            raise TypeError(f"pykmr: K @ v takes a dense {self._tools.arrayname}, got {type(v).__name__}")
        nb = self.nbatchdims
        vec = len(v.shape) == 1 + nb
        v2 = v.reshape(tuple(v.shape) + (1,)) if vec else v  # (..., M, E)
        vj = type(self)(v2.reshape(tuple(v2.shape[:-2]) + (1,) + tuple(v2.shape[-2:])))  # (..., 1, M, E)
        out = (self * vj).sum(dim=self.nbatchdims + 1)
        return out.reshape(out.shape[:-1]) if vec else out

    def solve(self, other, var=None, call=True, alpha=1e-10, eps=1e-6, **kwargs):
        """Solves (alpha Id + K) a = b by conjugate gradient (KeOps's KernelSolve), K = self (symmetric,
        positive), b = `other` (a LazyTensor indexed by i, or an array (N, D)).
        var=None: a_j multiplies self (sum_j K_ij a_j = ... ); var = a symbolic j-variable (``Vj(0, D)``,
        ``LazyTensor((0, D, 1))``) that self is linear in: sum_j self_ij(a) = b_i is solved for a (KeOps's
        ``solve(var=)``). Returns a (N, D) (differentiable in torch); call=False returns a callable.
        Raises TypeError/ValueError for a var that is not a symbolic Vj, dims that differ, or other symbolic
        variables left in self. pykeops: ``LazyTensor.solve``."""
        from pykmr.lazy_solve import solve

        return solve(self, other, var, call, alpha, eps, kwargs)


def _broadcast_batch(a, b):
    if a is None or a == b:
        return b if a is None else a
    if b is None:
        return a
    if len(a) != len(b) or any(x != y and 1 not in (x, y) for x, y in zip(a, b)):
        raise ValueError(f"pykmr: batch dims {a} and {b} do not broadcast (same number of dims, equal or 1)")
    return tuple(max(x, y) for x, y in zip(a, b))


# ---------------------------------------------------------------------------------------------------------
# A reduction: lowered once, its Genred cached; callable with symbolic arguments
# ---------------------------------------------------------------------------------------------------------
_GENRED_CACHE = {}


class Reduced:
    """A reduction of a LazyTensor (KeOps's "reduced LazyTensor"): called with no argument it runs on the
    LazyTensor's own tensors; with symbolic variables (Vi(0, 3)...) it takes them as arguments, in the
    order of their indices. Its `ranges` and `backend` attributes may be set before the call."""

    _reduced = True

    def __init__(self, lt, reduction, axis, opt_arg, weight, options):
        self.lt, self.reduction, self.axis, self.opt_arg, self.options = lt, reduction, axis, opt_arg, options
        nodes = [lt._node] + ([weight._node] if weight is not None else [])
        if weight is not None:
            lt = lt._new(lt._node, lt, weight)
            self.lt = lt
        (self.formula, *f2), self.aliases, self.vars = T.lower(nodes)
        self.formula2 = f2[0] if f2 else None
        self.symbolic = lt.symbolic
        self.ranges = options.get("ranges", lt.ranges)
        self.backend = options.get("backend", lt.backend)

    def _genred(self):
        opts = {
            k: v
            for k, v in self.options.items()
            if k in ("dtype_acc", "sum_scheme", "use_double_acc", "enable_chunks")
        }
        tools = self.lt._tools
        key = (
            tools.name,
            self.formula,
            tuple(self.aliases),
            self.reduction,
            self.axis,
            self.opt_arg,
            self.formula2,
            tuple(sorted(opts.items())),
        )
        g = _GENRED_CACHE.get(key)
        if g is None:
            g = tools.Genred(
                self.formula,
                self.aliases,
                reduction_op=self.reduction,
                axis=self.axis,
                opt_arg=self.opt_arg,
                formula2=self.formula2,
                **opts,
            )
            _GENRED_CACHE[key] = g
        return g

    def __call__(self, *args, **kwargs):
        tools = self.lt._tools
        nsym = sum(1 for v in self.vars if v.data is None)
        if len(args) != nsym:
            raise TypeError(
                f"pykmr: this reduction takes {nsym} arguments (its symbolic variables), got {len(args)}"
            )
        unknown = set(kwargs) - {"backend", "device_id", "ranges"}
        if unknown:
            raise TypeError(f"pykmr: unexpected keyword arguments {sorted(unknown)}")
        arrays = list(args)
        ref = next((a for a in arrays if tools.is_array(a)), None)
        if ref is None:
            ref = next((v.data for v in self.vars if v.data is not None and tools.is_array(v.data)), None)
        for v in self.vars[nsym:]:
            arrays.append(tools.constant(v.data, ref) if isinstance(v.data, tuple) else v.data)
        backend = kwargs.get("backend", self.backend) or "auto"
        ranges = kwargs.get("ranges", self.ranges)
        device_id = kwargs.get("device_id", self.options.get("device_id", -1))
        backend = {"GPU_1D": "GPU", "GPU_2D": "GPU"}.get(backend, backend)
        batch = self.lt.batchdims
        if batch and all(b == 1 for b in batch) and ranges is None:
            # size-1 batch dims only (GeomLoss's (1, N, D) clouds): one plain launch, the same numbers
            nb = len(batch)
            arrays = [
                a.reshape(tuple(a.shape[nb:])) if tools.is_array(a) and len(a.shape) > nb else a
                for a in arrays
            ]
            out = self._genred()(*arrays, backend=backend, device_id=device_id, ranges=ranges)
            if isinstance(out, tuple):
                return tuple(o.reshape(batch + tuple(o.shape)) for o in out)
            return out.reshape(batch + tuple(out.shape))
        return self._genred()(*arrays, backend=backend, device_id=device_id, ranges=ranges)


def variable(lazy_cls, x, dim, cat):
    """Vi (cat 0), Vj (1) and Pm (2) of both front ends: x an array of the front end's type (2D (rows, dim)
    for Vi/Vj; any for Pm) or a number (Pm), or (ind, dim) a symbolic variable (x = ind). Raises TypeError
    for a dim with an array, ValueError for an i/j-variable that is not a 2D array."""
    tools = lazy_cls._tools
    if isinstance(x, int) and not isinstance(x, bool) and dim is not None:
        return lazy_cls((x, dim, cat))
    if dim is not None:
        raise TypeError(f"pykmr: Vi/Vj/Pm(x) takes a {tools.arrayname}, or (ind, dim) for a symbolic one")
    if cat == 2:
        return lazy_cls(x, axis=2) if tools.is_array(x) else lazy_cls(x)
    if not tools.is_array(x) or len(x.shape) != 2:
        raise ValueError(f"pykmr: Vi(x)/Vj(x) take a 2D {tools.arrayname} (rows, dim)")
    return lazy_cls(x, axis=cat)
