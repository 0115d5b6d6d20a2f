"""LogSumExp and SumSoftMaxWeight of a vector formula, coordinate by coordinate (issue 10, section 7; KeOps
refuses it, its issue 125 asks for it): out[i, k] = log sum_j exp(F_ijk), and sum_j exp(F_ijk) V_ijk /
sum_j exp(F_ijk). References: dense torch float64. Few formulas, so that the JIT compiles little (a
LazyTensor, numpy and partial states reuse the Genred's kernels)."""

from __future__ import annotations

import numpy as np
import pykmr.numpy as kn
import pytest
import torch
from pykmr.torch import Genred, LazyTensor

F64 = torch.float64
NEG_INF = float("-inf")
D = 3
ALIASES = ["X = Vi(3)", "Y = Vj(3)", "B = Vj(3)", "V = Vj(3)"]
F = "X*Y+B"  # elementwise: F_ijk = x_ik y_jk + b_jk


def _data(n=7, m=11, dtype=F64, seed=0, holes=True):
    g = torch.Generator().manual_seed(seed)
    x, y, b, v = (torch.randn(r, D, dtype=F64, generator=g).to(dtype) for r in (n, m, m, m))
    if holes and m > 2:
        b[2] = NEG_INF  # a j with no mass in any coordinate
        b[:, 1] = NEG_INF  # coordinate 1: no mass at all (-inf for LogSumExp, never NaN)
    return x, y, b, v


def _dense(x, y, b):
    """F as [n, m, D] in float64."""
    return x.double()[:, None, :] * y.double()[None] + b.double()[None]


def _tol(dtype):
    return dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("axis", [1, 0])
def test_logsumexp_values(dtype, axis):
    x, y, b, _ = _data(dtype=dtype)
    routine = Genred(F, ALIASES[:3], reduction_op="LogSumExp", axis=axis)
    out = routine(x, y, b)
    want = torch.logsumexp(_dense(x, y, b), dim=axis)  # axis=1: over j, [n, D]; axis=0: over i, [m, D]
    assert out.shape == want.shape and out.dtype == dtype
    torch.testing.assert_close(out.double(), want, **_tol(dtype))
    if axis == 1:
        assert torch.isneginf(out[:, 1]).all()
    assert not torch.isnan(out).any()
    # M = 0 (axis=1: no j): every coordinate is -inf, never NaN
    empty = routine(x, y[:0], b[:0]) if axis == 1 else routine(x[:0], y, b)
    assert torch.isneginf(empty).all() and empty.shape == ((x if axis == 1 else y).shape[0], D)


def test_issue_example():
    """Genred("Fi+Gj", ..., "LogSumExp", axis=1) gives f_i + logsumexp_j(g_j) per coordinate."""
    g = torch.Generator().manual_seed(1)
    fi, gj = torch.randn(5, 4, generator=g), torch.randn(9, 4, generator=g)
    out = Genred("Fi+Gj", ["Fi = Vi(4)", "Gj = Vj(4)"], "LogSumExp", axis=1)(fi, gj)
    torch.testing.assert_close(out, fi + torch.logsumexp(gj, dim=0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_sumsoftmaxweight_values(dtype):
    x, y, b, v = _data(dtype=dtype)
    b[:, 1] = 0.0  # SumSoftMaxWeight of a coordinate with no mass is NaN (0/0), as the scalar one
    out = Genred(F, ALIASES, reduction_op="SumSoftMaxWeight", axis=1, formula2="V")(x, y, b, v)
    want = (torch.softmax(_dense(x, y, b), dim=1) * v.double()[None]).sum(1)
    assert out.shape == (x.shape[0], D)
    torch.testing.assert_close(out.double(), want, **_tol(dtype))


def test_weighted_logsumexp_values():
    """LogSumExp with weights of a vector F: the weights must have F's dim, coordinate by coordinate."""
    x, y, b, v = _data()
    out = Genred(F, ALIASES, reduction_op="LogSumExp", axis=1, formula2="Exp(V)")(x, y, b, v)
    want = torch.logsumexp(_dense(x, y, b) + v[None], dim=1)  # log sum exp(F) exp(V)
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)


def test_gradients_against_dense():
    """First-order gradients with -inf entries: equal to dense torch's, zero (not NaN) on the coordinate
    that has no mass."""
    x, y, b, _ = _data()
    args = [t.clone().requires_grad_(True) for t in (x, y, b)]
    out = Genred(F, ALIASES[:3], reduction_op="LogSumExp", axis=1)(*args)
    keep = [0, 2]  # coordinate 1 has no mass: out of the loss
    w = torch.rand(x.shape[0], len(keep), dtype=F64)
    got = torch.autograd.grad((out[:, keep] * w).sum(), args)
    ref = [t.clone().requires_grad_(True) for t in (x, y, b)]
    want_out = torch.logsumexp(_dense(*ref)[..., keep], dim=1)
    want = torch.autograd.grad((want_out * w).sum(), ref)
    for k, (g, r) in enumerate(zip(got, want)):
        assert not torch.isnan(g).any(), f"NaN in the gradient of argument {k}"
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


def test_gradcheck_logsumexp():
    x, y, b, _ = (t.requires_grad_(True) for t in _data(n=4, m=5, holes=False))
    routine = Genred(F, ALIASES[:3], reduction_op="LogSumExp", axis=1)
    assert torch.autograd.gradcheck(routine, (x, y, b))
    # second order through y only (each extra input is one more compiled gradient formula)
    x, b = x.detach(), b.detach()
    assert torch.autograd.gradgradcheck(lambda t: routine(x, t, b), (y,))


def test_gradcheck_sumsoftmaxweight():
    x, y, b, v = (t.requires_grad_(True) for t in _data(n=4, m=5, holes=False))
    routine = Genred(F, ALIASES, reduction_op="SumSoftMaxWeight", axis=1, formula2="V")
    x, b = x.detach(), b.detach()
    assert torch.autograd.gradcheck(lambda t, u: routine(x, t, b, u), (y, v))


def test_gradcheck_weighted_logsumexp():
    x, y, b, v = (t.requires_grad_(True) for t in _data(n=4, m=5, holes=False))
    routine = Genred(F, ALIASES, reduction_op="LogSumExp", axis=1, formula2="Exp(V)")
    x, b = x.detach(), b.detach()
    assert torch.autograd.gradcheck(lambda t, u: routine(x, t, b, u), (y, v))


def test_lazy_tensor():
    x, y, b, v = _data()
    xi, yj, bj, vj = LazyTensor(x[:, None, :]), LazyTensor(y[None]), LazyTensor(b[None]), LazyTensor(v[None])
    f = xi * yj + bj
    torch.testing.assert_close(
        f.logsumexp(dim=1), torch.logsumexp(_dense(x, y, b), dim=1), rtol=1e-12, atol=0
    )
    b2 = b.clone()
    b2[:, 1] = 0.0
    f2 = xi * yj + LazyTensor(b2[None])
    want = (torch.softmax(_dense(x, y, b2), dim=1) * v[None]).sum(1)
    torch.testing.assert_close(f2.sumsoftmaxweight(vj, dim=1), want, rtol=1e-12, atol=1e-12)


def test_numpy_and_partial_states():
    x, y, b, _ = (t.numpy() for t in _data())
    routine = kn.Genred(F, ALIASES[:3], reduction_op="LogSumExp", axis=1)
    out = routine(x, y, b)
    want = torch.logsumexp(_dense(*(torch.from_numpy(t) for t in (x, y, b))), dim=1).numpy()
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=0)
    # partial states: one (m, s) pair per coordinate, merged in any order, equal the direct call
    states = [routine.partial(x, y[a:c], b[a:c], offset=a) for a, c in [(0, 3), (3, 3), (3, 11)]]
    assert states[0].acc.shape == (x.shape[0], 2 * D)
    np.testing.assert_allclose(routine.finalize(routine.merge(states[::-1])), out, rtol=1e-13, atol=0)


def test_errors():
    with pytest.raises(
        ValueError,
        match=r"coordinate by coordinate .*'X\*Y\+B' has dim 3, formula2 'Sum\(V\)' has "
        r"dim 1",
    ):
        Genred(F, ALIASES, reduction_op="SumSoftMaxWeight", axis=1, formula2="Sum(V)")
    with pytest.raises(ValueError, match=r"formula2 'Concat\(V,V\)' has dim 6"):
        Genred(F, ALIASES, reduction_op="LogSumExp", axis=1, formula2="Concat(V,V)")
    # a scalar F keeps its meaning: weights of any dim
    assert (
        Genred("Sum(X*Y)", ALIASES, reduction_op="SumSoftMaxWeight", formula2="Concat(V,V)")._core.out_dim
        == 6
    )
