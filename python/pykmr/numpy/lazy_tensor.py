"""pykmr.numpy.LazyTensor, Vi, Vj, Pm and KernelSolve (pykeops.numpy's), on pykmr.numpy.Genred (no autograd).

LazyTensors follow their arrays' dtype (float64 for numpy's default arrays); float constants take it (float16
calls compute in float32, constants included).
"""

from __future__ import annotations

import numpy as np

from pykmr.lazy_solve import KernelSolveBase, conjugate_gradient
from pykmr.lazy_tensor import GenericLazyTensor, variable
from pykmr.numpy.genred import Genred


class KernelSolve(KernelSolveBase):
    """(alpha Id + K) a = b by conjugate gradient on numpy arrays (pykeops.numpy.KernelSolve)."""

    _genred = Genred

    def __call__(self, *args, alpha=1e-10, backend="auto", device_id=-1, eps=1e-6, ranges=None):
        b = self._check(args, alpha, eps)
        opts = {"backend": backend, "device_id": device_id, "ranges": ranges}
        return conjugate_gradient(self._matvec(list(args), opts), b, alpha, eps)


class _NumpyTools:
    name = "numpy"
    Genred = Genred
    arrayname = "numpy.ndarray"
    KernelSolve = KernelSolve

    @staticmethod
    def is_array(x):
        return isinstance(x, np.ndarray)

    @staticmethod
    def dtypename(x):
        return str(x.dtype)

    @staticmethod
    def constant(values, ref):
        """A float parameter as an array of the call's dtype; in a float16 call, the numbers themselves
        (Genred makes them float32, the dtype it computes in: not rounded to half)."""
        if ref is not None and ref.dtype == np.float16:
            return values
        return np.array(values, dtype=np.float64 if ref is None else ref.dtype)


class LazyTensor(GenericLazyTensor):
    """pykeops.numpy.LazyTensor on pykmr (see pykmr.torch.LazyTensor for the constructor's forms)."""

    _tools = _NumpyTools


def Vi(x_or_ind, dim=None):
    """A variable indexed by i: Vi(x) for a 2D array (N, D), or Vi(ind, dim) symbolic."""
    return variable(LazyTensor, x_or_ind, dim, 0)


def Vj(x_or_ind, dim=None):
    """A variable indexed by j: Vj(y) for a 2D array (M, D), or Vj(ind, dim) symbolic."""
    return variable(LazyTensor, x_or_ind, dim, 1)


def Pm(x_or_ind, dim=None):
    """A parameter: Pm(p) for an array or number, or Pm(ind, dim) symbolic."""
    return variable(LazyTensor, x_or_ind, dim, 2)
