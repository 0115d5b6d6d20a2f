"""Every LazyTensor operation against dense torch: values and gradients, float32 and float64.

Each case is a pair of functions of (x_i, y_j, p): one on LazyTensors (x_i (N,1,D), y_j (1,M,D), p a
parameter), one on the dense broadcast tensors, returning a formula of shape (N, M, E). Both are reduced
by a Sum over j (and, for the gradient, contracted with the same random weights); the dense reference runs
in float64. Tolerances: float64 1e-9 relative, float32 2e-4 relative (of the result's max).
"""

from __future__ import annotations

import math

import pytest
import torch
from helpers import warm_up
from pykmr.torch import LazyTensor

N, M, D = 7, 9, 3
TOL = {torch.float32: 2e-4, torch.float64: 1e-9}


def _dense_round(x):
    return torch.sign(x) * torch.floor(torch.abs(x) + 0.5)


def _dense_one_hot(r, n):
    return torch.cat([(r == k).to(r.dtype) for k in range(n)], -1)


def _dense_cmp(fn):
    return lambda x, y, p: fn(x.sum(-1, keepdim=True), y.sum(-1, keepdim=True)).to(x.dtype)


# name: (lazy(x, y, p), dense(x, y, p), domain of x and y: "any" in [-1, 1], "pos" in [0.5, 1.5])
CASES = {
    "add": (lambda x, y, p: x + y, lambda x, y, p: x + y, "any"),
    "sub": (lambda x, y, p: x - y, lambda x, y, p: x - y, "any"),
    "mul": (lambda x, y, p: x * y, lambda x, y, p: x * y, "any"),
    "div": (lambda x, y, p: x / y, lambda x, y, p: x / y, "pos"),
    "neg": (lambda x, y, p: -(x * y), lambda x, y, p: -(x * y), "any"),
    "int_const": (lambda x, y, p: 3 * x - y / 2, lambda x, y, p: 3 * x - y / 2, "any"),
    "float_const": (lambda x, y, p: 0.3 * x + y * -1.7, lambda x, y, p: 0.3 * x + y * -1.7, "any"),
    "param": (lambda x, y, p: p * x + y, lambda x, y, p: p * x + y, "any"),
    "abs": (lambda x, y, p: abs(x - y), lambda x, y, p: abs(x - y), "any"),
    "exp": (lambda x, y, p: (x * y).exp(), lambda x, y, p: (x * y).exp(), "any"),
    "log": (lambda x, y, p: (x * y).log(), lambda x, y, p: (x * y).log(), "pos"),
    "sqrt": (lambda x, y, p: (x + y).sqrt(), lambda x, y, p: (x + y).sqrt(), "pos"),
    "rsqrt": (lambda x, y, p: (x + y).rsqrt(), lambda x, y, p: (x + y).rsqrt(), "pos"),
    "sin": (lambda x, y, p: (x * y).sin(), lambda x, y, p: (x * y).sin(), "any"),
    "cos": (lambda x, y, p: (x * y).cos(), lambda x, y, p: (x * y).cos(), "any"),
    "atan": (lambda x, y, p: (x * y).atan(), lambda x, y, p: (x * y).atan(), "any"),
    "atan2": (lambda x, y, p: (x - y).atan2(x + y), lambda x, y, p: torch.atan2(x - y, x + y), "any"),
    "sign": (lambda x, y, p: (x - y).sign() * x, lambda x, y, p: (x - y).sign() * x, "any"),
    "step": (lambda x, y, p: (x - y).step() * y, lambda x, y, p: (x - y >= 0).to(x.dtype) * y, "any"),
    "relu": (lambda x, y, p: (x - y).relu(), lambda x, y, p: (x - y).relu(), "any"),
    "clamp": (lambda x, y, p: (x * y).clamp(-0.3, 0.4), lambda x, y, p: (x * y).clamp(-0.3, 0.4), "any"),
    "ifelse": (
        lambda x, y, p: (x - y).ifelse(x * y, x + y),
        lambda x, y, p: torch.where(x - y >= 0, x * y, x + y),
        "any",
    ),
    "mod": (
        lambda x, y, p: (3 * x * y).mod(0.7, 0.1),
        lambda x, y, p: 3 * x * y - 0.7 * torch.floor((3 * x * y - 0.1) / 0.7),
        "any",
    ),
    "round": (lambda x, y, p: (5 * x * y).round() * x, lambda x, y, p: _dense_round(5 * x * y) * x, "any"),
    "round_d": (
        lambda x, y, p: (x * y).round(1) + x,
        lambda x, y, p: _dense_round(x * y * 10) / 10 + x,
        "any",
    ),
    "square": (lambda x, y, p: (x - y).square(), lambda x, y, p: (x - y) ** 2, "any"),
    "pow2": (lambda x, y, p: (x - y) ** 2, lambda x, y, p: (x - y) ** 2, "any"),
    "pow3": (lambda x, y, p: (x - y) ** 3, lambda x, y, p: (x - y) ** 3, "any"),
    "pow_half": (lambda x, y, p: (x + y) ** 0.5, lambda x, y, p: (x + y) ** 0.5, "pos"),
    "pow_mhalf": (lambda x, y, p: (x + y) ** -0.5, lambda x, y, p: (x + y) ** -0.5, "pos"),
    "pow_m2": (lambda x, y, p: (x + y) ** -2, lambda x, y, p: (x + y) ** -2, "pos"),
    "powf": (lambda x, y, p: (x * y).power(1.3), lambda x, y, p: (x * y) ** 1.3, "pos"),
    "powf_lazy": (lambda x, y, p: x**y, lambda x, y, p: x**y, "pos"),
    "inv": (lambda x, y, p: (x + y).inv(), lambda x, y, p: 1 / (x + y), "pos"),
    "rdiv": (lambda x, y, p: 2 / (x + y), lambda x, y, p: 2 / (x + y), "pos"),
    "xlogx": (lambda x, y, p: (x * y).xlogx(), lambda x, y, p: (x * y) * (x * y).log(), "pos"),
    "sinxdivx": (
        lambda x, y, p: (3 * (x - y)).sinxdivx(),
        lambda x, y, p: torch.sinc(3 * (x - y) / math.pi),
        "any",
    ),
    "sum_vec": (lambda x, y, p: (x * y).sum(-1), lambda x, y, p: (x * y).sum(-1, keepdim=True), "any"),
    "sqnorm2": (
        lambda x, y, p: (x - y).sqnorm2(),
        lambda x, y, p: ((x - y) ** 2).sum(-1, keepdim=True),
        "any",
    ),
    "norm2": (lambda x, y, p: (x - y).norm2(), lambda x, y, p: (x - y).norm(dim=-1, keepdim=True), "any"),
    "normalize": (
        lambda x, y, p: (x - y).normalize(),
        lambda x, y, p: (x - y) / (x - y).norm(dim=-1, keepdim=True),
        "any",
    ),
    "sqdist": (lambda x, y, p: x.sqdist(y), lambda x, y, p: ((x - y) ** 2).sum(-1, keepdim=True), "any"),
    "wsqnorm_scalar": (
        lambda x, y, p: (x - y).weightedsqnorm(p.elem(0)),
        lambda x, y, p: p[0] * ((x - y) ** 2).sum(-1, keepdim=True),
        "any",
    ),
    "wsqnorm_diag": (
        lambda x, y, p: (x - y).weightedsqnorm(p),
        lambda x, y, p: (p * (x - y) ** 2).sum(-1, keepdim=True),
        "any",
    ),
    "wsqdist": (
        lambda x, y, p: x.weightedsqdist(y, y * y),
        lambda x, y, p: (y * y * (x - y) ** 2).sum(-1, keepdim=True),
        "any",
    ),
    "scalprod": (lambda x, y, p: x | y, lambda x, y, p: (x * y).sum(-1, keepdim=True), "any"),
    "matvecmult": (
        lambda x, y, p: x.tensorprod(y).matvecmult(y),
        lambda x, y, p: x * (y * y).sum(-1, keepdim=True),
        "any",
    ),
    "vecmatmult": (
        lambda x, y, p: y.vecmatmult(x.tensorprod(y)),
        lambda x, y, p: y * (x * y).sum(-1, keepdim=True),
        "any",
    ),
    "tensorprod": (
        lambda x, y, p: x.tensorprod(y),
        lambda x, y, p: (x[..., :, None] * y[..., None, :]).flatten(-2),
        "any",
    ),
    "concat": (
        lambda x, y, p: x.concat(y * x),
        lambda x, y, p: torch.cat(torch.broadcast_tensors(x, y * x), -1),
        "any",
    ),
    "elem": (lambda x, y, p: (x * y).elem(1), lambda x, y, p: (x * y)[..., 1:2], "any"),
    "getitem": (lambda x, y, p: (x * y)[..., 2], lambda x, y, p: (x * y)[..., 2:3], "any"),
    "extract": (lambda x, y, p: (x - y).extract(1, 2), lambda x, y, p: (x - y)[..., 1:3], "any"),
    "slice": (lambda x, y, p: (x - y)[..., :2], lambda x, y, p: (x - y)[..., :2], "any"),
    "one_hot": (
        lambda x, y, p: (2 * (x * y).sum(-1) + 3).one_hot(6) * x.sum(-1),
        lambda x, y, p: (
            _dense_one_hot(_dense_round(2 * (x * y).sum(-1, keepdim=True) + 3), 6) * x.sum(-1, keepdim=True)
        ),
        "any",
    ),
    "eq": (
        lambda x, y, p: ((x.sum(-1) == y.sum(-1)) + (x.sum(-1) == x.sum(-1))) * x,
        lambda x, y, p: (x.sum(-1, keepdim=True) == y.sum(-1, keepdim=True)).to(x.dtype) * x + x,
        "any",
    ),
    "ne": (lambda x, y, p: (x.sum(-1) != y.sum(-1)) * 1, _dense_cmp(torch.ne), "any"),
    "lt": (lambda x, y, p: (x.sum(-1) < y.sum(-1)) * 1, _dense_cmp(torch.lt), "any"),
    "gt": (lambda x, y, p: (x.sum(-1) > y.sum(-1)) * 1, _dense_cmp(torch.gt), "any"),
    "le": (lambda x, y, p: (x.sum(-1) <= y.sum(-1)) * 1, _dense_cmp(torch.le), "any"),
    "ge": (lambda x, y, p: (x.sum(-1) >= y.sum(-1)) * 1, _dense_cmp(torch.ge), "any"),
    "vec_min": (lambda x, y, p: (x - y).min(-1), lambda x, y, p: (x - y).min(-1, keepdim=True).values, "any"),
    "vec_max": (lambda x, y, p: (x - y).max(-1), lambda x, y, p: (x - y).max(-1, keepdim=True).values, "any"),
    "vec_argmin": (
        lambda x, y, p: (x - y).argmin(-1) * x,
        lambda x, y, p: (x - y).argmin(-1, keepdim=True).to(x.dtype) * x,
        "any",
    ),
    "vec_argmax": (
        lambda x, y, p: (x - y).argmax(-1) * x,
        lambda x, y, p: (x - y).argmax(-1, keepdim=True).to(x.dtype) * x,
        "any",
    ),
    "grad": (
        lambda x, y, p: ((x - y) ** 2).sum(-1).exp().grad(x, y.elem(0)),
        lambda x, y, p: 2 * (x - y) * ((x - y) ** 2).sum(-1, keepdim=True).exp() * y[..., 0:1],
        "any",
    ),
}


def _data(dtype, domain, gen):
    def r(*shape):
        t = torch.rand(shape, dtype=torch.float64, generator=gen)
        return (2 * t - 1) if domain == "any" else t + 0.5

    x, y, p, w = r(N, D), r(M, D), r(D), torch.randn(N, 9, dtype=torch.float64, generator=gen)
    return [t.to(dtype).requires_grad_() for t in (x, y, p)], w


def _run(name, dtype, seed):
    lazy_fn, dense_fn, domain = CASES[name]
    gen = torch.Generator().manual_seed(seed)
    (x, y, p), w = _data(dtype, domain, gen)
    out = lazy_fn(LazyTensor(x[:, None, :]), LazyTensor(y[None, :, :]), LazyTensor(p)).sum(dim=1)
    x64, y64, p64 = (t.detach().double().requires_grad_() for t in (x, y, p))
    ref = dense_fn(x64[:, None, :], y64[None, :, :], p64).sum(1)
    return out, ref, (x, y, p), (x64, y64, p64), w[:, : ref.shape[1]]


def _check(out, ref, tol, what):
    assert out.shape == ref.shape, f"{what}: shape {tuple(out.shape)} vs {tuple(ref.shape)}"
    scale = max(ref.abs().max().item(), 1.0)
    err = (out.double() - ref).abs().max().item()
    assert err <= tol * scale, f"{what}: max error {err:.3g} > {tol:.1g} * {scale:.3g}"


def test_warm_up():
    """Compiles the cases' formulas in parallel (the tests below then only run them)."""
    jobs = []
    for name in CASES:
        for dtype in (torch.float32, torch.float64):

            def job(name=name, dtype=dtype):
                out, _, args, _, w = _run(name, dtype, 0)
                torch.autograd.grad((out * w.to(dtype)).sum(), args, allow_unused=True)

            jobs.append(job)
    warm_up(jobs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", list(CASES))
def test_op(name, dtype, seed):
    out, ref, args, args64, w = _run(name, dtype, seed)
    tol = TOL[dtype]
    _check(out, ref, tol, f"{name} value")
    g = torch.autograd.grad((out * w.to(dtype)).sum(), args, allow_unused=True)
    # (a piecewise-constant reference, e.g. a comparison, has no graph: its gradient is zero everywhere)
    g64 = (
        torch.autograd.grad((ref * w).sum(), args64, allow_unused=True) if ref.requires_grad else (None,) * 3
    )
    for label, a, b in zip("xyp", g, g64):
        if b is None:
            assert a is None or a.abs().max() == 0, f"{name}: gradient in {label} should be zero"
            continue
        if a is None:
            a = torch.zeros_like(b)
        _check(a, b, tol * 10, f"{name} gradient in {label}")
