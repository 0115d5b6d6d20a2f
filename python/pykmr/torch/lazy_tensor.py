"""pykmr.torch.LazyTensor, Vi, Vj, Pm and KernelSolve (pykeops.torch's), on pykmr.torch.Genred."""

from __future__ import annotations

import torch

from pykmr.lazy_solve import KernelSolveBase, conjugate_gradient
from pykmr.lazy_tensor import GenericLazyTensor, variable
from pykmr.torch.genred import Genred


class KernelSolve(KernelSolveBase):
    """(alpha Id + K) a = b by conjugate gradient, differentiable in b, alpha and K's other arguments
    (pykeops.torch.KernelSolve; see pykmr.lazy_solve.KernelSolveBase for the arguments)."""

    _genred = Genred

    def __call__(self, *args, alpha=1e-10, backend="auto", device_id=-1, eps=1e-6, ranges=None):
        self._check(args, alpha, eps)
        opts = {"backend": backend, "device_id": device_id, "ranges": ranges}
        alpha_t = alpha if isinstance(alpha, torch.Tensor) else None
        alpha_v = float(alpha) if alpha_t is None else alpha_t
        return _SolveFunction.apply(self, opts, eps, alpha_v, *args)


class _SolveFunction(torch.autograd.Function):
    """a = (alpha Id + K(theta))^-1 b. Its backward is made of differentiable pieces (this function again for
    h = (alpha Id + K)^-1 g, and the Genred's own gradient for -<h, dK/dtheta a>), so that gradients of any
    order follow (create_graph=True: gradgradcheck in tests/python/test_lazy_tensor.py)."""

    @staticmethod
    def forward(ctx, solver, opts, eps, alpha, *args):
        plain = [a.detach() if isinstance(a, torch.Tensor) else a for a in args]
        b = plain[solver.varpos]
        with torch.no_grad():
            a = conjugate_gradient(solver._matvec(plain, opts), b, alpha, eps)
        ctx.solver, ctx.opts, ctx.eps = solver, opts, eps
        ctx.tensor_pos = [p for p, t in enumerate(args) if isinstance(t, torch.Tensor)]
        ctx.args = [None if isinstance(t, torch.Tensor) else t for t in args]
        ctx.alpha_is_tensor = isinstance(alpha, torch.Tensor)
        ctx.alpha = None if ctx.alpha_is_tensor else alpha
        saved = [args[p] for p in ctx.tensor_pos] + ([alpha] if ctx.alpha_is_tensor else [])
        ctx.save_for_backward(a, *saved)
        return a

    @staticmethod
    def backward(ctx, g):
        solver = ctx.solver
        a, *saved = ctx.saved_tensors
        alpha = saved.pop() if ctx.alpha_is_tensor else ctx.alpha
        args = list(ctx.args)
        for p, t in zip(ctx.tensor_pos, saved):
            args[p] = t
        create = torch.is_grad_enabled()  # True under backward(create_graph=True)
        if not create:
            args = [t.detach() if isinstance(t, torch.Tensor) else t for t in args]
            a = a.detach()
        # h = (alpha Id + K)^-1 g: the same solve, differentiable again when the graph is kept
        args_h = list(args)
        args_h[solver.varpos] = g
        h = _SolveFunction.apply(solver, ctx.opts, ctx.eps, alpha, *args_h)
        needs = ctx.needs_input_grad[4:]
        grads = [None] * len(args)
        grads[solver.varpos] = h if needs[solver.varpos] else None
        others = [p for p, need in enumerate(needs) if need and p != solver.varpos]
        if others:
            with torch.enable_grad():
                # the partial derivative in theta at fixed a: theta enters K through a fresh node (a view
                # under create_graph, which keeps the result differentiable in theta; a leaf otherwise), so
                # the path theta -> a -> K a is not counted
                if create:
                    full = [x.view_as(x) if p in others else x for p, x in enumerate(args)]
                else:
                    full = [
                        x.detach().requires_grad_(p in others) if isinstance(x, torch.Tensor) else x
                        for p, x in enumerate(args)
                    ]
                full[solver.varpos] = a
                ka = solver.routine(*full, **ctx.opts)
                gs = torch.autograd.grad(
                    ka, [full[p] for p in others], grad_outputs=-h, create_graph=create, allow_unused=True
                )
            for p, gp in zip(others, gs):
                grads[p] = gp
        galpha = None
        if ctx.needs_input_grad[3]:
            galpha = -(h * a).sum()
        return (None, None, None, galpha, *grads)


class _TorchTools:
    name = "torch"
    arrayname = "torch.Tensor"
    Genred = Genred
    KernelSolve = KernelSolve

    @staticmethod
    def is_array(x):
        return isinstance(x, torch.Tensor)

    @staticmethod
    def dtypename(x):
        return str(x.dtype).replace("torch.", "")

    @staticmethod
    def constant(values, ref):
        """A float parameter as a tensor of the call's dtype and device; in a float16/bfloat16 call, the
        numbers themselves (Genred makes them float32, the dtype it computes in: not rounded to half)."""
        if ref is None:
            return torch.tensor(values, dtype=torch.get_default_dtype())
        if ref.dtype in (torch.float16, torch.bfloat16):
            return values
        return torch.tensor(values, dtype=ref.dtype, device=ref.device)


class LazyTensor(GenericLazyTensor):
    """pykeops.torch.LazyTensor on pykmr: LazyTensor(x[:, None, :]) (i), LazyTensor(y[None, :, :]) (j),
    LazyTensor(p) for a 0D/1D tensor or a float (parameter), LazyTensor(x, axis=0|1) for a 2D tensor, an
    int for an exact constant, (ind, dim, cat) for a symbolic variable. See pykmr.lazy_tensor."""

    _tools = _TorchTools


def Vi(x_or_ind, dim=None):
    """A variable indexed by i: Vi(x) for a 2D tensor (N, D), or Vi(ind, dim) symbolic (KeOps's Vi)."""
    return variable(LazyTensor, x_or_ind, dim, 0)


def Vj(x_or_ind, dim=None):
    """A variable indexed by j: Vj(y) for a 2D tensor (M, D), or Vj(ind, dim) symbolic."""
    return variable(LazyTensor, x_or_ind, dim, 1)


def Pm(x_or_ind, dim=None):
    """A parameter: Pm(p) for a tensor or number, or Pm(ind, dim) symbolic."""
    return variable(LazyTensor, x_or_ind, dim, 2)
