"""pykmr on torch tensors: drop-in for pykeops.torch where they overlap, with autograd to any order.

Example::

    from pykmr.torch import Genred, generic_sum
    conv = generic_sum("Exp(-G*SqDist(X,Y)) * B", "A = Vi(2)",
                       "G = Pm(1)", "X = Vi(3)", "Y = Vj(3)", "B = Vj(2)")
    a = conv(1 / sigma**2, x, y, b)         # x: [N, 3], y: [M, 3], b: [M, 2] -> a: [N, 2], differentiable

    from pykmr.torch import LazyTensor      # KeOps's symbolic matrices (see pykmr.lazy_tensor)
    x_i, y_j = LazyTensor(x[:, None, :]), LazyTensor(y[None, :, :])
    a = (-((x_i - y_j) ** 2).sum(-1) * g).exp() @ b
"""

from pykmr import kernels as _kernels
from pykmr.kernels import Kernel
from pykmr.torch import cluster
from pykmr.torch.generic import generic_argkmin, generic_argmin, generic_logsumexp, generic_sum
from pykmr.torch.genred import Genred
from pykmr.torch.lazy_tensor import KernelSolve, LazyTensor, Pm, Vi, Vj

__all__ = ["Genred", "generic_sum", "generic_logsumexp", "generic_argmin", "generic_argkmin", "Kernel",
           "kernel_product", "LazyTensor", "Vi", "Vj", "Pm", "KernelSolve", "cluster"]


def kernel_product(params, x, y, *bs, mode="sum"):
    """a_i = sum_j K(x_i, y_j) b_j on torch tensors, differentiable (pykeops 1.x ``kernel_product``).

    x: ``[N, D]``, y: ``[M, D]`` (or tuples matching the kernel's variables), b: ``[M, E]`` -> ``[N, E]``,
    float32 or float64. Arguments and exceptions: :func:`pykmr.kernels.kernel_product`.
    """
    return _kernels.kernel_product(params, x, y, *bs, mode=mode, frontend="torch")
