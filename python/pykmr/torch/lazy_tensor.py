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
    def forward(solver, opts, eps, alpha, *args):
        plain = [a.detach() if isinstance(a, torch.Tensor) else a for a in args]
        b = plain[solver.varpos]
        with torch.no_grad():
            return conjugate_gradient(solver._matvec(plain, opts), b, alpha, eps)

    @staticmethod
    def setup_context(ctx, inputs, output):
        # setup_context style (forward without ctx): torch.func.grad / vjp / vmap / jacrev / jvp take it
        solver, opts, eps, alpha, *args = inputs
        ctx.solver, ctx.opts, ctx.eps = solver, opts, eps
        ctx.tensor_pos = [p for p, t in enumerate(args) if isinstance(t, torch.Tensor)]
        ctx.args = [None if isinstance(t, torch.Tensor) else t for t in args]
        ctx.alpha_is_tensor = isinstance(alpha, torch.Tensor)
        ctx.alpha = None if ctx.alpha_is_tensor else alpha
        saved = [args[p] for p in ctx.tensor_pos] + ([alpha] if ctx.alpha_is_tensor else [])
        ctx.save_for_backward(output, *saved)
        ctx.save_for_forward(output, *saved)

    @staticmethod
    def vmap(info, in_dims, solver, opts, eps, alpha, *args):
        # one solve per vmapped slice (a Python loop, not one launch): CG's stopping test is per system
        def pick(t, d, k):
            return t if d is None else t.select(d, k)

        outs = []
        for k in range(info.batch_size):
            args_k = [pick(t, d, k) for t, d in zip(args, in_dims[4:])]
            outs.append(_SolveFunction.apply(solver, opts, eps, pick(alpha, in_dims[3], k), *args_k))
        return torch.stack(outs), 0

    @staticmethod
    def jvp(ctx, _solver_t, _opts_t, _eps_t, alpha_t, *tangents):
        # da = (alpha Id + K)^-1 (db - dalpha a - dK a); dK a: K's tangent in theta at fixed a (forward_mode)
        solver = ctx.solver
        a, *saved = ctx.saved_tensors
        alpha = saved.pop() if ctx.alpha_is_tensor else ctx.alpha
        args = list(ctx.args)
        for p, t in zip(ctx.tensor_pos, saved):
            args[p] = t
        rhs = tangents[solver.varpos] if tangents[solver.varpos] is not None else torch.zeros_like(a)
        if alpha_t is not None:
            rhs = rhs - alpha_t * a
        if any(t is not None for p, t in enumerate(tangents) if p != solver.varpos):
            rhs = rhs - _partial_tangent(solver.routine, args, a, solver.varpos, tangents, ctx.opts)
        args[solver.varpos] = rhs
        return _SolveFunction.apply(solver, ctx.opts, ctx.eps, alpha, *args)

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
        if others and torch._C._are_functorch_transforms_active():
            # under torch.func (grad, vjp, jacrev...) torch.autograd.grad cannot see the saved theta: the same
            # partial derivative at fixed a straight from the Genred's backward rules, which compose with them
            gs = _partial_grads(solver.routine, args, a, solver.varpos, others, -h, ctx.opts)
        elif others:
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
        for p, gp in zip(others, gs if others else ()):
            grads[p] = gp
        galpha = None
        if ctx.needs_input_grad[3]:
            galpha = -(h * a).sum()
        return (None, None, None, galpha, *grads)


def _partial_grads(routine, args, a, varpos, others, grad_out, opts):
    """The gradients in args[p] (p in others) of <grad_out, routine(*args with a at varpos)>, by the Genred's
    own backward rules (pykmr.torch.autograd.input_grads) on the call's laid-out arguments."""
    from pykmr.common import batch_layout
    from pykmr.torch.autograd import input_grads
    from pykmr.torch.genred import TorchCall, _convert, _expand

    core = routine._core
    full = list(args)
    full[varpos] = a
    tensors, _ = _convert(core, full, opts["backend"])
    plan = core.plan_call([t.shape for t in tensors])
    tensors = batch_layout(core, plan, tensors, _expand)
    needs = [p in others for p in range(len(tensors))]
    gs = input_grads(routine, tensors, None, None, grad_out, needs, TorchCall(plan, opts["ranges"]))
    return [gs[p].reshape(args[p].shape) for p in others]


def _partial_tangent(routine, args, a, varpos, tangents, opts):
    """The tangent of routine(*args with a at varpos) along the tangents of the other arguments (a fixed)."""
    from pykmr.common import batch_layout
    from pykmr.torch.forward_mode import output_tangent
    from pykmr.torch.genred import TorchCall, _convert, _expand

    core = routine._core
    full = list(args)
    full[varpos] = a
    tensors, _ = _convert(core, full, opts["backend"])
    plan = core.plan_call([t.shape for t in tensors])
    tensors = batch_layout(core, plan, tensors, _expand)
    dts = [
        None if t is None or p == varpos else t.to(tensors[p].dtype).reshape(tensors[p].shape)
        for p, t in enumerate(tangents)
    ]
    return output_tangent(routine, tensors, dts, a, None, TorchCall(plan, opts["ranges"]))


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
