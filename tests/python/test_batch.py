"""Batch dimensions in Genred (KeOps's batch support): (..., N, D) / (..., M, D) / (..., D) arguments,
broadcast batch dims, one launch, against a dense float64 torch loop over the batches; gradients."""

import numpy as np
import pytest
import torch
from pykmr.torch import Genred
from ranges_reference import masked_reduce

TOL = {torch.float32: dict(rtol=2e-4, atol=2e-5), torch.float64: dict(rtol=1e-10, atol=1e-12)}

# formula, reduction, opt_arg, formula2 (aliases: G = Pm(1), X = Vi(3), Y = Vj(3), B = Vj(2))
CASES = {
    "Sum": ("Exp(-G*SqDist(X,Y))*B", "Sum", None, None),
    "LogSumExp": ("-G*SqDist(X,Y)", "LogSumExp", None, None),
    "Min_ArgMin": ("G*SqDist(X,Y)", "Min_ArgMin", None, None),
    "KMin": ("G*SqDist(X,Y)", "KMin", 2, None),
    "ArgKMin": ("G*SqDist(X,Y)", "ArgKMin", 2, None),
    "SumSoftMaxWeight": ("-G*SqDist(X,Y)", "SumSoftMaxWeight", None, "B"),
}
ALIASES = ["G = Pm(1)", "X = Vi(3)", "Y = Vj(3)", "B = Vj(2)"]


def routine_of(name, axis=1):
    formula, red, k, f2 = CASES[name]
    return Genred(formula, ALIASES, reduction_op=red, axis=axis, opt_arg=k, formula2=f2)


def reference(name, g, x, y, b, axis=1):
    """Dense float64, batched by torch broadcasting: [*batch, rows, ...]."""
    formula, red, k, _ = CASES[name]
    g, x, y, b = g.double(), x.double(), y.double(), b.double()
    d2 = ((x.unsqueeze(-2) - y.unsqueeze(-3)) ** 2).sum(-1, keepdim=True)  # [*batch, n, m, 1]
    gg = g.unsqueeze(-1).unsqueeze(-1)  # [*batch, 1, 1, 1]
    if name == "Sum":
        f = torch.exp(-gg * d2) * b.unsqueeze(-3)
    elif name in ("LogSumExp", "SumSoftMaxWeight"):
        f = -gg * d2
    else:
        f = gg * d2
    if axis == 0:
        f = f.transpose(-3, -2)
    batch = f.shape[:-3]
    f = f.reshape((-1,) + f.shape[-3:])
    bb = b.unsqueeze(-3).expand(batch + (f.shape[-3],) + b.shape[-2:])
    bb = bb.reshape((-1, f.shape[-3]) + b.shape[-2:])
    outs = []
    for t in range(f.shape[0]):
        mask = torch.ones(f.shape[1:3], dtype=torch.bool)
        outs.append(masked_reduce(red, f[t], mask, g=bb[t], k=k))
    if isinstance(outs[0], tuple):
        return tuple(torch.stack(o).reshape(batch + o[0].shape) for o in zip(*outs))
    return torch.stack(outs).reshape(batch + outs[0].shape)


def check(got, want, dtype):
    if isinstance(want, tuple):
        assert isinstance(got, tuple)
        for a, w in zip(got, want):
            check(a, w, dtype)
        return
    assert got.shape == want.shape, (got.shape, want.shape)
    if want.dtype == torch.int64:
        assert torch.equal(got, want)
    else:
        torch.testing.assert_close(got.double(), want, **TOL[dtype])


SHAPES = [  # g, x, y, b
    ((2, 1), (2, 7, 3), (2, 9, 3), (2, 9, 2)),  # one batch dim, all full
    ((1,), (3, 7, 3), (9, 3), (1, 9, 2)),  # shared parameter, shared y (no batch dim), b of batch 1
    ((2, 1, 1), (2, 1, 7, 3), (1, 3, 9, 3), (2, 3, 9, 2)),  # two batch dims, partial broadcasts
]


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("shapes", SHAPES, ids=["full", "shared", "two-dims"])
def test_batched_against_dense_loop(seed, name, shapes):
    dtype = torch.float64
    g = torch.rand(shapes[0], dtype=dtype) + 0.2
    x, y, b = (torch.randn(s, dtype=dtype) for s in shapes[1:])
    got = routine_of(name)(g, x, y, b)
    check(got, reference(name, g, x, y, b), dtype)


def test_batched_axis0_and_float32(seed):
    g = torch.tensor([[0.5], [1.5]])
    x, y = torch.randn(2, 11, 3), torch.randn(1, 13, 3)
    b = torch.randn(2, 13, 2)
    routine = Genred("Exp(-G*SqDist(X,Y))*B", ["G = Pm(1)", "X = Vi(3)", "Y = Vj(3)", "B = Vi(2)"], axis=0)
    got = routine(g, x, y, torch.randn(2, 11, 2))
    assert got.shape == (2, 13, 2)
    # reference: axis 0 = sum over i
    bi = torch.randn(2, 11, 2)
    got = routine(g, x, y, bi)
    d2 = ((x.double().unsqueeze(-2) - y.double().unsqueeze(-3)) ** 2).sum(-1)
    want = (torch.exp(-g.double().unsqueeze(-1) * d2).unsqueeze(-1) * bi.double().unsqueeze(-2)).sum(-3)
    torch.testing.assert_close(got.double(), want, **TOL[torch.float32])
    del b


def test_many_batches_one_call_matches_the_2d_calls(seed):
    """100 batches in one call agree with 100 separate 2-D calls (float32, bit for bit: same kernel)."""
    routine = routine_of("Sum")
    g = torch.rand(100, 1) + 0.1
    x, y, b = torch.randn(100, 20, 3), torch.randn(100, 30, 3), torch.randn(100, 30, 2)
    got = routine(g, x, y, b)
    for t in range(0, 100, 17):
        assert torch.equal(got[t], routine(g[t], x[t], y[t], b[t]))


@pytest.mark.parametrize("name", ["Sum", "LogSumExp", "Min_ArgMin", "KMin", "SumSoftMaxWeight"])
def test_batched_gradients(seed, name):
    """gradcheck with broadcast arguments: their gradients are summed over the broadcast batch dims."""
    dtype = torch.float64
    g = (torch.rand(1, 3, 1, dtype=dtype) + 0.2).requires_grad_(True)  # partial broadcast (expand)
    x = torch.randn(2, 3, 5, 3, dtype=dtype, requires_grad=True)
    y = torch.randn(6, 3, dtype=dtype, requires_grad=True)  # shared by every batch
    b = torch.randn(2, 1, 6, 2, dtype=dtype, requires_grad=True)
    routine = routine_of(name)

    def fn(*a):
        out = routine(*a)
        return out[0] if isinstance(out, tuple) else out

    assert torch.autograd.gradcheck(fn, (g, x, y, b), atol=1e-6, rtol=1e-5)
    out = fn(g, x, y, b)
    w = torch.randn_like(out)
    grads = torch.autograd.grad((out * w).sum(), (g, x, y, b), allow_unused=True)
    ref = reference(name, g, x, y, b)
    ref = ref[0] if isinstance(ref, tuple) else ref
    ref_grads = torch.autograd.grad((ref * w).sum(), (g, x, y, b), allow_unused=True)
    for a, r, t in zip(grads, ref_grads, (g, x, y, b)):
        if r is None:
            assert a is None or bool((a == 0).all())
            continue
        assert a.shape == t.shape
        torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-10)


def test_empty_batch_and_numpy(seed):
    routine = routine_of("Sum")
    out = routine(torch.ones(1), torch.randn(0, 4, 3), torch.randn(0, 5, 3), torch.randn(0, 5, 2))
    assert out.shape == (0, 4, 2)
    from pykmr.numpy import Genred as NGenred

    formula, red, k, f2 = CASES["Sum"]
    conv = NGenred(formula, ALIASES, reduction_op=red, axis=1)
    g = np.array([[0.5], [1.0]])
    x, y, b = np.random.randn(2, 6, 3), np.random.randn(1, 8, 3), np.random.randn(8, 2)
    got = conv(g, x, y, b)
    want = reference("Sum", *(torch.from_numpy(a) for a in (g, x, y, b)))
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-12, atol=1e-14)


def test_batch_errors(seed):
    routine = routine_of("Sum")
    g = torch.ones(1)
    with pytest.raises(ValueError, match="do not broadcast"):
        routine(g, torch.randn(2, 4, 3), torch.randn(3, 5, 3), torch.randn(5, 2))
    with pytest.raises(ValueError, match="parameter of dim 1 with 1 batch dims"):
        routine(torch.ones(2, 2), torch.randn(2, 4, 3), torch.randn(2, 5, 3), torch.randn(5, 2))
    with pytest.raises(ValueError, match="same number of rows"):
        routine(g, torch.randn(2, 4, 3), torch.randn(2, 5, 3), torch.randn(2, 6, 2))
