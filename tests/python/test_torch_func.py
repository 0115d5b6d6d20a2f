"""torch.func on pykmr.torch reductions: grad / vjp / grad_and_value (any order), vmap (one batched
launch), jacrev, forward mode (jvp, jacfwd, hessian, torch.autograd.forward_ad), against torch.func applied
to the dense float64 torch formula; LazyTensor, kernel_product, generic_* and KernelSolve through the same
transforms."""

from __future__ import annotations

import pytest
import torch
from pykmr.torch import Genred, Kernel, KernelSolve, LazyTensor, generic_argmin, kernel_product
from torch.func import grad, grad_and_value, hessian, jacfwd, jacrev, jvp, vjp, vmap

# torch's first forward-mode call imports torch._decomp.decompositions_for_jvp, which calls the deprecated
# torch.jit.script itself (torch's warning, not pykmr's; pyproject turns warnings into errors)
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

F64 = torch.float64
TOL = 1e-10  # float64: the kernels and dense torch sum in different orders (errors seen: below 1e-14)
N, M, D, E = 6, 5, 3, 2

GAUSS = ("Exp(-G*SqDist(X,Y))*B", ["G = Pm(1)", "X = Vi(3)", "Y = Vj(3)", "B = Vj(2)"])


def sqdist(x, y):
    return ((x[..., :, None, :] - y[..., None, :, :]) ** 2).sum(-1)


# name -> (Genred(...), dense(g, x, y, b) with the same output shape); g: [1], x: [N, D], y: [M, D], b: [M, E]
def _cases():
    return {
        "gauss_sum": (Genred(*GAUSS, "Sum", axis=1), lambda g, x, y, b: torch.exp(-g * sqdist(x, y)) @ b),
        "lse": (
            Genred("-G*SqDist(X,Y)", GAUSS[1][:3] + ["B = Vj(2)"], "LogSumExp", axis=1),
            lambda g, x, y, b: torch.logsumexp(-g * sqdist(x, y), -1)[..., None],
        ),
        "lse_weights": (
            Genred("-G*SqDist(X,Y)", GAUSS[1], "LogSumExp", axis=1, formula2="B"),
            lambda g, x, y, b: torch.logsumexp((-g * sqdist(x, y))[..., None] + b.log()[..., None, :, :], -2),
        ),
        "min": (
            Genred("G*SqDist(X,Y)", GAUSS[1][:3] + ["B = Vj(2)"], "Min", axis=1),
            lambda g, x, y, b: (g * sqdist(x, y)).min(-1, keepdim=True).values,
        ),
        "ssmw_axis0": (
            Genred(
                "-G*SqDist(X,Y)",
                ["G = Pm(1)", "X = Vi(3)", "Y = Vj(3)", "B = Vi(2)"],
                "SumSoftMaxWeight",
                axis=0,
                formula2="B",
            ),
            lambda g, x, y, b: torch.softmax(-g * sqdist(x, y), -2).transpose(-1, -2) @ b,
        ),
    }


CASES = _cases()


def inputs(n=N, m=M):
    g = torch.tensor([0.7], dtype=F64)
    x, y = torch.randn(n, D, dtype=F64), torch.randn(m, D, dtype=F64)
    b = torch.rand(m, E, dtype=F64) + 0.5  # positive: LogSumExp's weights
    return g, x, y, b


def case_inputs(name):
    g, x, y, b = inputs()
    if name == "ssmw_axis0":  # B is a Vi there: rows of x
        b = torch.rand(N, E, dtype=F64) + 0.5
    return g, x, y, b


def close(a, b, what, tol=TOL):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol, msg=lambda m: f"{what}: {m}")


@pytest.mark.parametrize("name", list(CASES))
def test_grad_vjp_grad_and_value(name, seed):
    """First order in every argument: torch.func.grad / vjp / grad_and_value equal dense torch.func, and
    torch.func.grad equals torch.autograd.grad on the same call bit for bit (the same backward runs)."""
    routine, dense = CASES[name]
    args = case_inputs(name)
    w = torch.randn(dense(*args).shape, dtype=F64)

    def loss(fn):
        return lambda *a: (fn(*a) * w).sum()

    argnums = (0, 1, 2, 3)
    got = grad(loss(routine), argnums=argnums)(*args)
    want = grad(loss(dense), argnums=argnums)(*args)
    for k in argnums:
        close(got[k], want[k], f"{name}: grad in argument {k}")
    leaves = [a.clone().requires_grad_() for a in args]
    for k, ga in enumerate(torch.autograd.grad(loss(routine)(*leaves), leaves)):
        assert torch.equal(got[k], ga), f"{name}: torch.func.grad differs from torch.autograd.grad ({k})"
    out, pullback = vjp(routine, *args)
    close(out, dense(*args), f"{name}: vjp's value")
    for k, (a, b) in enumerate(zip(pullback(w), vjp(dense, *args)[1](w))):
        close(a, b, f"{name}: vjp in argument {k}")
    (gx, value) = grad_and_value(loss(routine), argnums=1)(*args)
    close(value, loss(dense)(*args), f"{name}: grad_and_value's value")
    close(gx, want[1], f"{name}: grad_and_value's gradient")


@pytest.mark.parametrize("name", ["gauss_sum", "lse", "min"])
def test_grad_of_grad(name, seed):
    """Second and third order with nested torch.func.grad (x and the parameter)."""
    routine, dense = CASES[name]
    g, x, y, b = case_inputs(name)

    def second(fn):
        def inner(g, x):
            return (fn(g, x, y, b) ** 2).sum()

        return lambda g, x: (grad(inner, argnums=1)(g, x) ** 2).sum()

    for argnum in (0, 1):
        close(
            grad(second(routine), argnums=argnum)(g, x),
            grad(second(dense), argnums=argnum)(g, x),
            f"{name}: grad of grad, argument {argnum}",
        )
    third = grad(lambda x: grad(second(routine), argnums=1)(g, x).sum())(x)
    close(third, grad(lambda x: grad(second(dense), argnums=1)(g, x).sum())(x), f"{name}: third order")


@pytest.mark.parametrize("name", list(CASES))
def test_jacrev_and_hessians(name, seed):
    """jacrev (vmap of vjp), jacrev of jacrev, jacfwd, torch.func.hessian (jacfwd of jacrev) and jvp."""
    routine, dense = CASES[name]
    g, x, y, b = case_inputs(name)
    f, fd = (lambda x: routine(g, x, y, b)), (lambda x: dense(g, x, y, b))
    close(jacrev(f)(x), jacrev(fd)(x), f"{name}: jacrev")
    close(jacfwd(f)(x), jacfwd(fd)(x), f"{name}: jacfwd")
    v = torch.randn_like(x)
    out, tangent = jvp(f, (x,), (v,))
    close(out, fd(x), f"{name}: jvp's value")
    close(tangent, jvp(fd, (x,), (v,))[1], f"{name}: jvp")
    tb = torch.randn_like(b)  # a tangent in the weights (zero effect where the formula does not use B)
    close(
        jvp(lambda b: routine(g, x, y, b), (b,), (tb,))[1],
        jvp(lambda b: dense(g, x, y, b), (b,), (tb,))[1],
        f"{name}: jvp in b",
    )
    s, sd = (lambda x: (f(x) ** 2).sum()), (lambda x: (fd(x) ** 2).sum())
    want = hessian(sd)(x)
    close(jacrev(jacrev(s))(x), want, f"{name}: jacrev of jacrev")
    close(hessian(s)(x), want, f"{name}: hessian")


@pytest.mark.parametrize("name", list(CASES))
def test_jvp_in_every_argument(name, seed):
    """Forward mode with tangents on all four arguments at once, and through torch.autograd.forward_ad."""
    routine, dense = CASES[name]
    args = case_inputs(name)
    tangents = tuple(torch.randn_like(a) for a in args)
    close(jvp(routine, args, tangents)[1], jvp(dense, args, tangents)[1], f"{name}: jvp")
    import torch.autograd.forward_ad as fwad

    with fwad.dual_level():
        out = routine(*[fwad.make_dual(a, t) for a, t in zip(args, tangents)])
        tangent = fwad.unpack_dual(out).tangent
    close(tangent, jvp(dense, args, tangents)[1], f"{name}: forward_ad")


class LaunchCounter:
    """Counts the kernel launches of pykmr.torch (pykmr.common.launch, the one place kernels start, as
    pykmr.torch.genred calls it) and records the batch count of each."""

    def __init__(self, monkeypatch):
        import pykmr.torch.genred as genred

        self.nbatch = []
        real = genred.launch

        def counted(*a, **k):
            self.nbatch.append(k.get("nbatch", 1))
            return real(*a, **k)

        monkeypatch.setattr(genred, "launch", counted)


@pytest.mark.parametrize("name", list(CASES))
def test_vmap_is_one_launch(name, seed, monkeypatch):
    """vmap over x (in_dims 0) and over the parameter: one launch with the vmapped size as its batch count,
    the same values as dense torch under vmap."""
    routine, dense = CASES[name]
    g, x, y, b = case_inputs(name)
    xs = torch.randn(4, N, D, dtype=F64)
    counter = LaunchCounter(monkeypatch)
    got = vmap(routine, in_dims=(None, 0, None, None))(g, xs, y, b)
    assert counter.nbatch == [4], f"{name}: launches (batch counts) {counter.nbatch}, expected one of 4"
    close(got, vmap(dense, in_dims=(None, 0, None, None))(g, xs, y, b), f"{name}: vmap over x")
    gs = torch.rand(3, 1, dtype=F64) + 0.2
    got = vmap(routine, in_dims=(0, None, None, None))(gs, x, y, b)
    close(got, vmap(dense, in_dims=(0, None, None, None))(gs, x, y, b), f"{name}: vmap over the parameter")
    assert counter.nbatch == [4, 3]


def test_vmap_in_dims_out_dims_nested_and_batch_dims(seed, monkeypatch):
    """in_dims other than 0, out_dims, every argument vmapped, nested vmap (two batch dims, one launch),
    and vmap over a call that already has batch dims (B, N, D)."""
    routine, dense = CASES["gauss_sum"]
    g, x, y, b = inputs()
    counter = LaunchCounter(monkeypatch)
    ys = torch.randn(M, 4, D, dtype=F64)  # vmapped dim 1
    got = vmap(routine, in_dims=(None, None, 1, None), out_dims=1)(g, x, ys, b)
    close(got, vmap(dense, in_dims=(None, None, 1, None), out_dims=1)(g, x, ys, b), "in_dims=1, out_dims=1")
    assert got.shape == (N, 4, E)
    all_args = (
        torch.rand(4, 1, dtype=F64),
        torch.randn(4, N, D, dtype=F64),
        torch.randn(4, M, D, dtype=F64),
        torch.randn(4, M, E, dtype=F64),
    )
    close(vmap(routine)(*all_args), vmap(dense)(*all_args), "every argument vmapped")
    xs = torch.randn(2, 3, N, D, dtype=F64)
    nested = vmap(vmap(routine, in_dims=(None, 0, None, None)), in_dims=(None, 0, None, None))(g, xs, y, b)
    close(nested, dense(g, xs, y, b), "nested vmap")
    batched = torch.randn(3, N, D, dtype=F64)  # the call's own batch dim, vmapped over a second one
    got = vmap(lambda x: routine(g, x, y, b))(torch.stack([batched, 2 * batched]))
    close(got, dense(g, torch.stack([batched, 2 * batched]), y, b), "vmap over a batched call")
    assert counter.nbatch == [4, 4, 6, 6]


def test_vmap_of_grad_and_grad_of_vmap(seed):
    """Per-sample gradients (vmap of grad) and the gradient of a vmapped reduction."""
    routine, dense = CASES["lse"]
    g, x, y, b = inputs()
    xs = torch.randn(4, N, D, dtype=F64)

    def per_sample(fn):
        return vmap(grad(lambda x: (fn(g, x, y, b) ** 2).sum()))

    close(per_sample(routine)(xs), per_sample(dense)(xs), "vmap of grad")

    def vmapped(fn):
        return grad(lambda xs: (vmap(lambda x: fn(g, x, y, b))(xs) ** 2).sum())

    close(vmapped(routine)(xs), vmapped(dense)(xs), "grad of vmap")


def test_argmin_under_vmap(seed):
    """An index reduction under vmap: the dense argmin of each slice (no gradient, as in KeOps)."""
    routine = generic_argmin("SqDist(X,Y)", "I = Vi(1)", "X = Vi(3)", "Y = Vj(3)")
    xs, y = torch.randn(4, N, D, dtype=F64), torch.randn(M, D, dtype=F64)
    got = vmap(lambda x: routine(x, y))(xs)
    assert torch.equal(got.reshape(4, N), sqdist(xs, y).argmin(-1))


def test_lazy_tensor_reduction(seed):
    """A LazyTensor Gaussian convolution: grad, jacrev, jvp and vmap against dense torch."""
    _, x, y, b = inputs()

    def lazy(x):
        d2 = ((LazyTensor(x[:, None, :]) - LazyTensor(y[None, :, :])) ** 2).sum(-1)
        return (-d2).exp() @ b

    def dense(x):
        return torch.exp(-sqdist(x, y)) @ b

    close(grad(lambda x: lazy(x).sum())(x), grad(lambda x: dense(x).sum())(x), "LazyTensor grad")
    close(jacrev(lazy)(x), jacrev(dense)(x), "LazyTensor jacrev")
    v = torch.randn_like(x)
    close(jvp(lazy, (x,), (v,))[1], jvp(dense, (x,), (v,))[1], "LazyTensor jvp")
    xs = torch.randn(3, N, D, dtype=F64)
    close(vmap(lazy)(xs), vmap(dense)(xs), "LazyTensor vmap")


def test_kernel_product(seed):
    """kernel_product (pykeops 1.x) through grad, vmap and jacrev."""
    _, x, y, b = inputs()
    params = {"id": Kernel("gaussian(x,y)"), "gamma": torch.tensor([0.5], dtype=F64)}

    def kp(x):
        return kernel_product(params, x, y, b)

    def dense(x):
        return torch.exp(-0.5 * sqdist(x, y)) @ b

    close(kp(x), dense(x), "kernel_product value")
    close(
        grad(lambda x: (kp(x) ** 2).sum())(x), grad(lambda x: (dense(x) ** 2).sum())(x), "kernel_product grad"
    )
    xs = torch.randn(3, N, D, dtype=F64)
    close(vmap(kp)(xs), vmap(dense)(xs), "kernel_product vmap")
    close(jacrev(kp)(x), jacrev(dense)(x), "kernel_product jacrev")


def test_kernel_solve(seed):
    """KernelSolve: grad in x and b (second order too), jacrev, vmap (one solve per slice), jvp, hessian."""
    n = 7
    x, b = torch.randn(n, 2, dtype=F64), torch.randn(n, 1, dtype=F64)
    solver = KernelSolve("Exp(-SqDist(X,Y))*B", ["X = Vi(2)", "Y = Vj(2)", "B = Vj(1)"], "B", axis=1)
    alpha = 0.5

    def solve(x, b):
        return solver(x, x, b, alpha=alpha, eps=1e-14)

    def dense(x, b):
        return torch.linalg.solve(alpha * torch.eye(n, dtype=F64) + torch.exp(-sqdist(x, x)), b)

    tol = 1e-8  # CG to eps 1e-14 relative residual, conditioning of alpha Id + K included
    for argnum in (0, 1):
        close(
            grad(lambda x, b: (solve(x, b) ** 3).sum(), argnums=argnum)(x, b),
            grad(lambda x, b: (dense(x, b) ** 3).sum(), argnums=argnum)(x, b),
            f"solve grad {argnum}",
            tol,
        )
    gg = grad(lambda x: grad(lambda x: (solve(x, b) ** 3).sum())(x).sum())(x)
    close(gg, grad(lambda x: grad(lambda x: (dense(x, b) ** 3).sum())(x).sum())(x), "solve grad of grad", tol)
    close(jacrev(solve)(x, b), jacrev(dense)(x, b), "solve jacrev", tol)
    bs = torch.randn(3, n, 1, dtype=F64)
    close(vmap(solve, in_dims=(None, 0))(x, bs), vmap(dense, in_dims=(None, 0))(x, bs), "solve vmap", tol)
    tangents = (torch.randn_like(x), torch.randn_like(b))
    close(jvp(solve, (x, b), tangents)[1], jvp(dense, (x, b), tangents)[1], "solve jvp", tol)
    close(
        hessian(lambda x: (solve(x, b) ** 2).sum())(x),
        hessian(lambda x: (dense(x, b) ** 2).sum())(x),
        "solve hessian",
        tol,
    )


def test_ranges(seed):
    """ranges: grad and jvp honour them (block-diagonal = the dense result on each block); vmap refuses
    (ranges are not combined with batch dims, as in KeOps) with a clear error."""
    routine, dense = CASES["gauss_sum"]
    g, x, y, b = inputs(n=6, m=6)
    i32 = torch.int32  # two diagonal blocks: rows 0..2 with columns 0..2, rows 3..5 with columns 3..5
    blocks = torch.tensor([[0, 3], [3, 6]], dtype=i32)
    ranges = (
        blocks,
        torch.tensor([1, 2], dtype=i32),
        blocks,
        blocks,
        torch.tensor([1, 2], dtype=i32),
        blocks,
    )

    def blockwise(fn, g, x, y, b):
        return torch.cat([fn(g, x[:3], y[:3], b[:3]), fn(g, x[3:], y[3:], b[3:])])

    def sparse(x):
        return routine(g, x, y, b, ranges=ranges)

    close(sparse(x), blockwise(dense, g, x, y, b), "ranges value")
    close(
        grad(lambda x: (sparse(x) ** 2).sum())(x),
        grad(lambda x: (blockwise(dense, g, x, y, b) ** 2).sum())(x),
        "ranges grad",
    )
    v = torch.randn_like(x)
    close(
        jvp(sparse, (x,), (v,))[1], jvp(lambda x: blockwise(dense, g, x, y, b), (x,), (v,))[1], "ranges jvp"
    )
    with pytest.raises(ValueError, match="vmap over a reduction with ranges"):
        vmap(sparse)(torch.randn(2, 6, D, dtype=F64))
    with pytest.raises(ValueError, match="vmap over a reduction with ranges"):
        jacrev(sparse)(x)  # jacrev vmaps the backward


def test_out_refused_under_transforms(seed):
    routine, _ = CASES["gauss_sum"]
    g, x, y, b = inputs()
    out = torch.empty(N, E, dtype=F64)
    with pytest.raises(RuntimeError, match="out= does not support"):
        grad(lambda x: routine(g, x, y, b, out=out).sum())(x)
