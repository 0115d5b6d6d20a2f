"""Rows with no mass (issue 10, section 2): a row of LogSumExp (with or without weights) or SumSoftMaxWeight
whose terms are all -inf, an empty reduction (M = 0), and the Min/Max/KMin gathers with nothing to select
contribute exactly zero to every gradient and NaN to none. References: dense torch float64 on the rows
that have mass (the others do not enter the loss)."""

from __future__ import annotations

import pytest
import torch
from pykmr.torch import Genred

F64 = torch.float64
NEG_INF = float("-inf")


def test_issue_instance_logsumexp():
    routine = Genred(
        "A-SqDist(X,Y)", ["A = Vi(1)", "X = Vi(2)", "Y = Vj(2)"], reduction_op="LogSumExp", axis=1
    )
    for dtype in (torch.float32, F64):
        x = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=dtype, requires_grad=True)
        a = torch.tensor([[NEG_INF], [0.0]], dtype=dtype, requires_grad=True)
        y = torch.tensor([[0.0, 0.0]], dtype=dtype, requires_grad=True)
        out = routine(a, x, y)
        assert out[0, 0].item() == NEG_INF and out[1, 0].item() == -2.0
        da, dx, dy = torch.autograd.grad(out[1].sum(), [a, x, y])
        assert torch.equal(dx, torch.tensor([[0.0, 0.0], [-2.0, -2.0]], dtype=dtype))
        assert torch.equal(dy, torch.tensor([[2.0, 2.0]], dtype=dtype))
        assert torch.equal(da, torch.tensor([[0.0], [1.0]], dtype=dtype))


def test_issue_instance_transposed():
    """Same, reduced over i (axis=0): the empty row is now a j."""
    routine = Genred(
        "B-SqDist(X,Y)", ["B = Vj(1)", "X = Vi(2)", "Y = Vj(2)"], reduction_op="LogSumExp", axis=0
    )
    y = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=F64, requires_grad=True)
    b = torch.tensor([[NEG_INF], [0.0]], dtype=F64, requires_grad=True)
    x = torch.tensor([[0.0, 0.0]], dtype=F64, requires_grad=True)
    out = routine(b, x, y)
    db, dx, dy = torch.autograd.grad(out[1].sum(), [b, x, y])
    assert torch.equal(dy, torch.tensor([[0.0, 0.0], [-2.0, -2.0]], dtype=F64))
    assert torch.equal(dx, torch.tensor([[2.0, 2.0]], dtype=F64))


def _data(n=6, m=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, dtype=F64, generator=g)
    y = torch.randn(m, 2, dtype=F64, generator=g)
    a = torch.randn(n, 1, dtype=F64, generator=g)
    b = torch.randn(m, 1, dtype=F64, generator=g)
    v = torch.randn(m, 3, dtype=F64, generator=g)
    if n > 2:
        a[2] = NEG_INF  # row 2 has no mass
    if m > 4:
        b[4] = NEG_INF  # column 4 has no mass: a zero weight inside every row
    return [t.requires_grad_(True) for t in (x, y, a, b, v)]


ALIASES = ["X = Vi(2)", "Y = Vj(2)", "A = Vi(1)", "B = Vj(1)", "V = Vj(3)"]
F = "A+B-SqDist(X,Y)"


def _dense_f(x, y, a, b):
    return a + b.T - ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)


def _check(out, want_rows, args, keep):
    """out: pykmr's [n, d]; want_rows: the dense reference on the rows `keep`; compares the output on those
    rows and the gradients of a random linear loss that ignores the other rows."""
    torch.testing.assert_close(out[keep], want_rows, rtol=1e-10, atol=1e-12)
    w = torch.rand_like(want_rows)
    got = torch.autograd.grad((out[keep] * w).sum(), args, allow_unused=True, materialize_grads=True)
    want = torch.autograd.grad((want_rows * w).sum(), args, allow_unused=True, materialize_grads=True)
    for k, (g, r) in enumerate(zip(got, want)):
        assert not torch.isnan(g).any(), f"NaN in the gradient of argument {k}"
        torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-12, msg=lambda s, k=k: f"argument {k}: {s}")


KEEP = [0, 1, 3, 4, 5]


def test_logsumexp_empty_row():
    x, y, a, b, v = args = _data()
    out = Genred(F, ALIASES[:4], reduction_op="LogSumExp", axis=1)(x, y, a, b)
    assert out[2, 0].item() == NEG_INF
    want = torch.logsumexp(_dense_f(x, y, a, b)[KEEP], dim=1, keepdim=True)
    _check(out, want, args[:4], KEEP)


def test_logsumexp_weights_empty_row():
    x, y, a, b, v = args = _data()
    vp = v.abs() + 0.1  # positive weights: log(sum exp(f) v) is real
    out = Genred(F, ALIASES, reduction_op="LogSumExp", axis=1, formula2="Abs(V)+0.1")(x, y, a, b, v)
    assert torch.isneginf(out[2]).all()
    want = torch.log((torch.exp(_dense_f(x, y, a, b))[KEEP][:, :, None] * vp[None]).sum(1))
    _check(out, want, args, KEEP)


def test_sumsoftmaxweight_empty_row():
    x, y, a, b, v = args = _data()
    out = Genred(F, ALIASES, reduction_op="SumSoftMaxWeight", axis=1, formula2="V")(x, y, a, b, v)
    want = (torch.softmax(_dense_f(x, y, a, b)[KEEP], dim=1)[:, :, None] * v[None]).sum(1)
    _check(out, want, args, KEEP)


@pytest.mark.parametrize(
    "reduction, formula2", [("LogSumExp", None), ("LogSumExp", "Abs(V)+0.1"), ("SumSoftMaxWeight", "V")]
)
def test_empty_reduction_m0(reduction, formula2):
    """M = 0: every row is empty; gradients are zero (own and parameter-like variables) or empty."""
    x, y, a, b, v = _data(m=0)
    args = [x, y, a, b, v]
    out = Genred(F, ALIASES, reduction_op=reduction, axis=1, formula2=formula2)(*args)
    loss = torch.where(torch.isfinite(out), out, torch.zeros_like(out)).sum()
    grads = torch.autograd.grad(loss, args, allow_unused=True, materialize_grads=True)
    for t, g in zip(args, grads):
        assert g.shape == t.shape and torch.equal(g, torch.zeros_like(t))


@pytest.mark.parametrize("reduction", ["Min", "Max", "Min_ArgMin"])
def test_selection_empty(reduction):
    """Min/Max with M = 0: nothing is selected (values +-inf); the gradient is exactly zero."""
    x, y, *_ = _data(m=0)
    out = Genred("SqDist(X,Y)", ALIASES[:2], reduction_op=reduction, axis=1)(x, y)
    out = out[0] if isinstance(out, tuple) else out
    assert torch.isinf(out).all()
    (gx,) = torch.autograd.grad(torch.where(torch.isfinite(out), out, 0.0).sum(), x)
    assert torch.equal(gx, torch.zeros_like(x))
