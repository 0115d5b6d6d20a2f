"""pykmr.numpy gives what pykmr.torch gives (same kernels: the formulas of test_reductions)."""

from __future__ import annotations

import numpy as np
import pykmr.numpy as kn
import pykmr.torch as kt
import pytest
import torch

N, M = 6, 5
ALIASES = ["X = Vi(2)", "Y = Vj(2)", "B = Vj(2)"]
CASES = [
    ("Sin(X-2*Y)", "Sum", None, None),
    ("Sin(X-2*Y)", "ArgMin", None, None),
    ("Sin(X-2*Y)", "Min_ArgMin", None, None),
    ("Sin(X-2*Y)", "KMin", None, 3),
    ("Sin(X-2*Y)", "ArgKMin", None, 3),
    ("Sin(X-2*Y)", "KMin_ArgKMin", None, 3),
    ("-SqDist(X,Y)", "LogSumExp", None, None),
    ("-SqDist(X,Y)", "LogSumExp", "Exp(X-Y)*B", None),
    ("-SqDist(X,Y)", "SumSoftMaxWeight", "Exp(X-Y)*B", None),
]


# every case in float64 on both axes; float32 (one more compile per formula) on two of them
PARAMS = [
    pytest.param(*c, axis, "float64", id=f"{c[1]}{'_w' if c[2] else ''}-axis{axis}-float64")
    for c in CASES
    for axis in (1, 0)
]
PARAMS += [
    pytest.param(*c, 1, "float32", id=f"{c[1]}-axis1-float32") for c in CASES if c[1] in ("Sum", "ArgKMin")
]


@pytest.mark.parametrize("formula, red, formula2, k, axis, dtype", PARAMS)
def test_parity_with_torch(formula, red, formula2, k, axis, dtype, seed):
    x, y, b = np.random.rand(N, 2) * 2 - 1, np.random.rand(M, 2) * 2 - 1, np.random.rand(M, 2)
    x, y, b = (a.astype(dtype) for a in (x, y, b))
    got = kn.Genred(formula, ALIASES, red, axis=axis, opt_arg=k, formula2=formula2)(x, y, b)
    want = kt.Genred(formula, ALIASES, red, axis=axis, opt_arg=k, formula2=formula2)(
        *(torch.from_numpy(a) for a in (x, y, b))
    )
    got, want = (got, want) if isinstance(got, tuple) else ((got,), (want,))
    for g, w in zip(got, want):
        assert isinstance(g, np.ndarray) and g.shape == tuple(w.shape)
        assert g.dtype == np.dtype(str(w.dtype).replace("torch.", ""))
        np.testing.assert_allclose(g, w.numpy(), rtol=1e-6 if dtype == "float32" else 1e-12, atol=1e-12)


def test_generic_and_parameters():
    x, y, b = np.random.rand(N, 3), np.random.rand(M, 3), np.random.rand(M, 3)
    conv = kn.generic_sum(
        "Exp(-G*SqDist(X,Y)) * B", "A = Vx(3)", "G = Pm(1)", "X = Vx(3)", "Y = Vy(3)", "B = Vy(3)"
    )
    want = np.exp(-2.0 * ((x[:, None] - y[None]) ** 2).sum(-1)) @ b
    for g in (2.0, np.array([2.0]), np.array(2.0), [2.0]):
        np.testing.assert_allclose(conv(g, x, y, b), want, rtol=1e-12)
    nn = kn.generic_argkmin("SqDist(X,Y)", "a = Vi(2)", "X = Vi(3)", "Y = Vj(3)")(x, y)
    assert nn.shape == (N, 2) and nn.dtype == np.int64
    np.testing.assert_array_equal(nn, ((x[:, None] - y[None]) ** 2).sum(-1).argsort(1)[:, :2])
    am = kn.generic_argmin("SqDist(X,Y)", "a = Vj(1)", "X = Vi(3)", "Y = Vj(3)")(x, y)
    assert am.shape == (M, 1)
    lse = kn.generic_logsumexp(
        "-G*SqDist(X,Y)+B", "A = Vi(1)", "G = Pm(1)", "X = Vi(3)", "Y = Vj(3)", "B = Vj(1)"
    )(np.array([2.0]), x, y, b[:, :1])
    d2 = ((x[:, None] - y[None]) ** 2).sum(-1)
    ref = np.log(np.exp(-2 * d2 + b[:, 0]).sum(1, keepdims=True))
    np.testing.assert_allclose(lse, ref, rtol=1e-12)


def test_non_contiguous_and_out():
    x = np.random.rand(3, N).T
    y, b = np.random.rand(M, 3), np.random.rand(M, 3)
    conv = kn.Genred("Exp(-G*SqDist(X,Y))*B", ["G = Pm(1)", "X = Vi(3)", "Y = Vj(3)", "B = Vj(3)"], axis=1)
    out = np.empty((N, 3))
    assert conv(2.0, x, y, b, out=out) is out
    np.testing.assert_allclose(out, np.exp(-2.0 * ((x[:, None] - y[None]) ** 2).sum(-1)) @ b, rtol=1e-12)


def test_front_ends_reject_each_others_arrays():
    x, y = np.random.rand(N, 3), np.random.rand(M, 3)
    aliases = ["X = Vi(3)", "Y = Vj(3)"]
    with pytest.raises(TypeError, match=r"argument 1 \('Y = Vj\(3\)'\) is a torch tensor.*pykmr.torch"):
        kn.Genred("SqDist(X,Y)", aliases, "Sum", axis=1)(x, torch.from_numpy(y))
    with pytest.raises(TypeError, match=r"argument 0 \('X = Vi\(3\)'\) is a numpy array.*pykmr.numpy"):
        kt.Genred("SqDist(X,Y)", aliases, "Sum", axis=1)(x, torch.from_numpy(y))
