"""Every reduction, on both axes, against dense torch float64; output shapes and dtypes as pykeops
(int64 indices, (values, indices) pairs, [n, K, D] for K-min); edge cases of the call."""

from __future__ import annotations

import pytest
import torch
from helpers import F64, warm_up
from pykmr.torch import Genred

N, M, K = 6, 5, 3
ALIASES = ["X = Vi(2)", "Y = Vj(2)", "B = Vj(2)"]
VEC = "Sin(X-2*Y)"  # a vector formula (dim 2): Min/Max/KMin work per coordinate
SCAL = "-SqDist(X,Y)"  # a scalar one for LogSumExp and SumSoftMaxWeight
WEIGHTS = "Exp(X-Y)*B"  # formula2 (dim 2, positive)


def dense(x, y, b):
    """The dense [N, M, D] versions of VEC, SCAL, WEIGHTS."""
    d = x[:, None, :] - y[None, :, :]
    return torch.sin(x[:, None] - 2 * y[None]), -(d**2).sum(-1, keepdim=True), torch.exp(d) * b[None]


def kmin(f, dim, k):
    s = f.sort(dim=dim, stable=True)
    take = (slice(None),) * dim + (slice(0, k),)
    vals, idx = s.values[take], s.indices[take]
    return vals.movedim(dim, 1) if dim == 0 else vals, idx.movedim(dim, 1) if dim == 0 else idx


def reference(red, f, fs, w, r):
    """The expected result, reducing [N, M, D] over dim r (r = axis: 1 sums over j)."""
    if red == "Sum":
        return f.sum(r)
    if red in ("Min", "Max", "ArgMin", "ArgMax", "Min_ArgMin", "Max_ArgMax"):
        v = f.min(r) if "Min" in red else f.max(r)
        return {"Min": v.values, "Max": v.values, "ArgMin": v.indices, "ArgMax": v.indices}.get(red, tuple(v))
    if red in ("KMin", "ArgKMin", "KMin_ArgKMin"):
        vals, idx = kmin(f, r, K)  # [n, K, D]
        return {"KMin": vals, "ArgKMin": idx}.get(red, (vals, idx))
    if red == "LogSumExp":
        return torch.logsumexp(fs, r)
    if red == "LogSumExp_w":
        return torch.log((torch.exp(fs) * w).sum(r))
    if red == "SumSoftMaxWeight":
        return (torch.softmax(fs, r) * w).sum(r)
    raise AssertionError(red)


CASES = ["Sum", "Min", "Max", "ArgMin", "ArgMax", "Min_ArgMin", "Max_ArgMax", "KMin", "ArgKMin",
         "KMin_ArgKMin", "LogSumExp", "LogSumExp_w", "SumSoftMaxWeight"]


def routine(red, axis):
    if red in ("LogSumExp", "LogSumExp_w", "SumSoftMaxWeight"):
        f2 = WEIGHTS if red != "LogSumExp" else None
        return Genred(SCAL, ALIASES, red.replace("_w", ""), axis=axis, formula2=f2)
    return Genred(VEC, ALIASES, red, axis=axis, opt_arg=K if "KMin" in red else None)


def data(dtype=F64):
    x, y = torch.rand(N, 2, dtype=dtype) * 2 - 1, torch.rand(M, 2, dtype=dtype) * 2 - 1
    return x, y, torch.rand(M, 2, dtype=dtype)


@pytest.fixture(scope="module", autouse=True)
def _compile_in_parallel():
    warm_up([lambda r=r, a=a: routine(r, a)(*data()) for r in CASES for a in (0, 1)])


@pytest.mark.parametrize("axis", [1, 0])
@pytest.mark.parametrize("red", CASES)
def test_reduction(red, axis, seed):
    x, y, b = data()
    got = routine(red, axis)(x, y, b)
    want = reference(red, *dense(x, y, b), r=axis)
    if red in ("KMin", "ArgKMin"):  # pykeops squeezes D only when D == 1: here [n, K, 2]
        assert got.shape == (N if axis else M, K, 2)
    got, want = (got, want) if isinstance(want, tuple) else ((got,), (want,))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype, (g.dtype, w.dtype)
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-10)


def test_keops_layout_scalar_formula(seed):
    """Scalar formulas as pykeops returns them: [N, 1] values and int64 indices, [N, K] for K-min."""
    x, y, b = data()
    f = Genred("SqDist(X,Y)", ["X = Vi(2)", "Y = Vj(2)"], "ArgKMin", axis=1, opt_arg=K)(x, y)
    assert f.shape == (N, K) and f.dtype == torch.int64
    d2 = ((x[:, None] - y[None]) ** 2).sum(-1)
    torch.testing.assert_close(f, d2.argsort(dim=1, stable=True)[:, :K])
    v, i = Genred("SqDist(X,Y)", ["X = Vi(2)", "Y = Vj(2)"], "Min_ArgMin", axis=1)(x, y)
    assert v.shape == (N, 1) and v.dtype == F64 and i.shape == (N, 1) and i.dtype == torch.int64
    lse = Genred("-SqDist(X,Y)", ["X = Vi(2)", "Y = Vj(2)"], "LogSumExp", axis=1)(x, y)
    assert lse.shape == (N, 1)


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_float32_and_float64(dtype, tol, seed):
    """The precompiled Gaussian convolution, ArgKMin and LogSumExp in both dtypes."""
    x, y, b = data(dtype)
    xd, yd, bd = x.double(), y.double(), b.double()
    d2 = ((xd[:, None] - yd[None]) ** 2).sum(-1)
    conv = Genred("Exp(-G*SqDist(X,Y))*B", ["G = Pm(1)", "X = Vi(2)", "Y = Vj(2)", "B = Vj(2)"], axis=1)
    out = conv(torch.tensor([0.5], dtype=dtype), x, y, b)
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), torch.exp(-0.5 * d2) @ bd, rtol=tol, atol=tol)
    knn = Genred("SqDist(X,Y)", ["X = Vi(2)", "Y = Vj(2)"], "ArgKMin", axis=1, opt_arg=2)(x, y)
    torch.testing.assert_close(knn, d2.argsort(1)[:, :2])
    lse = Genred("-G*SqDist(X,Y)+B", ["G = Pm(1)", "X = Vi(2)", "Y = Vj(2)", "B = Vj(1)"], "LogSumExp",
                 axis=1)
    out = lse(2.0, x, y, b[:, :1])
    assert out.dtype == dtype
    want = torch.logsumexp(-2 * d2 + bd[:, 0], 1, keepdim=True)
    torch.testing.assert_close(out.double(), want, rtol=tol, atol=tol)


SUM = Genred("Exp(-G*SqDist(X,Y))*B", ["G = Pm(1)", "X = Vi(2)", "Y = Vj(2)", "B = Vj(2)"], axis=1)


def gauss_ref(g, x, y, b):
    return torch.exp(-g * ((x[:, None] - y[None]) ** 2).sum(-1)) @ b


def test_python_number_and_tensor_parameters(seed):
    x, y, b = data()
    want = gauss_ref(0.5, x, y, b)
    for g in (0.5, torch.tensor(0.5, dtype=F64), torch.tensor([0.5], dtype=F64),
              torch.tensor([[0.5]], dtype=F64)):
        torch.testing.assert_close(SUM(g, x, y, b), want)
    x32, y32, b32 = x.float(), y.float(), b.float()
    assert SUM(0.5, x32, y32, b32).dtype == torch.float32  # the number takes the tensors' dtype


def test_non_contiguous_inputs(seed):
    x = torch.rand(2, N, dtype=F64).t()  # [N, 2], transposed storage
    y = torch.rand(M, 4, dtype=F64)[:, ::2]  # every other column
    b = torch.rand(M, 2, dtype=F64)
    assert not x.is_contiguous() and not y.is_contiguous()
    torch.testing.assert_close(SUM(0.5, x, y, b), gauss_ref(0.5, x, y, b))


def test_empty_sides():
    x, y, b = data()
    out = SUM(0.5, x[:0], y, b)
    assert out.shape == (0, 2)
    torch.testing.assert_close(SUM(0.5, x, y[:0], b[:0]), torch.zeros(N, 2, dtype=F64))  # empty sum: 0
    v, i = Genred(VEC, ALIASES, "Min_ArgMin", axis=1)(x, y[:0], b[:0])
    assert torch.isinf(v).all() and v.gt(0).all() and (i == -1).all()  # min of nothing: +inf, index -1
    lse = Genred(SCAL, ALIASES, "LogSumExp", axis=1)(x, y[:0], b[:0])
    assert lse.shape == (N, 1) and torch.isneginf(lse).all()
    # gradients through empty reductions are zeros
    xg = x.clone().requires_grad_()
    SUM(0.5, xg, y[:0], b[:0]).sum().backward()
    torch.testing.assert_close(xg.grad, torch.zeros_like(x))


def test_out_argument(seed):
    x, y, b = data()
    out = torch.empty(N, 2, dtype=F64)
    res = SUM(0.5, x, y, b, out=out)
    assert res is out
    torch.testing.assert_close(out, gauss_ref(0.5, x, y, b))
    pair = (torch.empty(N, 2, dtype=F64), torch.empty(N, 2, dtype=torch.int64))
    Genred(VEC, ALIASES, "Min_ArgMin", axis=1)(x, y, b, out=pair)
    f = dense(x, y, b)[0]
    torch.testing.assert_close(pair[1], f.argmin(1))
    with pytest.raises(ValueError, match="out= has shape"):
        SUM(0.5, x, y, b, out=torch.empty(N, 3, dtype=F64))
    with pytest.raises(RuntimeError, match="out= does not support automatic differentiation"):
        SUM(0.5, x.requires_grad_(), y, b, out=out)


def test_routine_is_reusable_across_sizes_and_dtypes(seed):
    for n, m, dtype in [(3, 4, F64), (50, 7, torch.float32), (1, 1, F64), (300, 200, F64)]:
        x, y, b = torch.rand(n, 2, dtype=dtype), torch.rand(m, 2, dtype=dtype), torch.rand(m, 2, dtype=dtype)
        tol = 1e-5 if dtype == torch.float32 else 1e-10
        torch.testing.assert_close(SUM(0.5, x, y, b), gauss_ref(0.5, x, y, b), rtol=tol, atol=tol)


def test_no_j_variable_reduces_over_one_point(seed):
    """With no j-variable the reduced side has size 1 (and symmetrically for i)."""
    x = torch.rand(N, 2, dtype=F64)
    out = Genred("Exp(X)", ["X = Vi(2)"], "Sum", axis=1)(x)
    torch.testing.assert_close(out, torch.exp(x))
