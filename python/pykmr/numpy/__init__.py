"""pykmr on numpy arrays: the API of pykeops.numpy (Genred, generic_sum, LazyTensor...), without autograd.

Example::

    from pykmr.numpy import generic_sum
    conv = generic_sum("Exp(-G*SqDist(X,Y)) * B", "A = Vi(2)",
                       "G = Pm(1)", "X = Vi(3)", "Y = Vj(3)", "B = Vj(2)")
    a = conv(np.array([2.0]), x, y, b)      # x: [N, 3], y: [M, 3], b: [M, 2] -> a: [N, 2]
"""

from __future__ import annotations

from pykmr import kernels as _kernels
from pykmr.common import make_generics
from pykmr.kernels import Kernel
from pykmr.numpy.genred import Genred
from pykmr.numpy.lazy_tensor import KernelSolve, LazyTensor, Pm, Vi, Vj

__all__ = ["Genred", "generic_sum", "generic_logsumexp", "generic_argmin", "generic_argkmin", "Kernel",
           "kernel_product", "LazyTensor", "Vi", "Vj", "Pm", "KernelSolve", "cluster"]


generic_sum, generic_logsumexp, generic_argmin, generic_argkmin = make_generics(Genred)


def kernel_product(params, x, y, *bs, mode="sum"):
    """a_i = sum_j K(x_i, y_j) b_j on numpy arrays (pykeops 1.x ``kernel_product``, without autograd).

    x: ``[N, D]``, y: ``[M, D]`` (or tuples matching the kernel's variables), b: ``[M, E]`` -> ``[N, E]``,
    float32 or float64. Arguments and exceptions: :func:`pykmr.kernels.kernel_product`.
    """
    return _kernels.kernel_product(params, x, y, *bs, mode=mode, frontend="numpy")


def __getattr__(name):
    if name == "cluster":
        import importlib

        return importlib.import_module("pykmr.numpy.cluster")
    raise AttributeError(f"module 'pykmr.numpy' has no attribute '{name}'")
