"""Large dimensions and resource limits (issue 10, section 5): formulas of dimension 2e4 and 1e5 compute the
right value and gradient (their rows run on threads with the stack they need, instead of overflowing a pool
thread's); every other limit is a clear error at construction, never a crash. Reference: dense torch
float64."""

from __future__ import annotations

import pytest
import torch
from pykmr.torch import Genred

F64 = torch.float64


def _dense_sqdist(x, y):
    return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1, keepdim=True)


def test_issue_instance_sqdist_dim_20000():
    torch.manual_seed(0)
    routine = Genred("SqDist(X,Y)", ["X = Vi(20000)", "Y = Vj(20000)"], reduction_op="Sum", axis=1)
    x = torch.randn(4, 20000, dtype=F64, requires_grad=True)
    y = torch.randn(5, 20000, dtype=F64, requires_grad=True)
    out = routine(x, y)
    want = _dense_sqdist(x, y).sum(1)
    torch.testing.assert_close(out, want, rtol=1e-12, atol=0)
    w = torch.randn(4, 1, dtype=F64)
    gx, gy = torch.autograd.grad((out * w).sum(), [x, y])
    wx, wy = torch.autograd.grad((want * w).sum(), [x, y])
    torch.testing.assert_close(gx, wx, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gy, wy, rtol=1e-12, atol=1e-12)


def test_dim_100000_value_and_gradient():
    torch.manual_seed(1)
    d = 100_000
    routine = Genred("Exp(-SqDist(X,Y)/100000)*B", [f"X = Vi({d})", f"Y = Vj({d})", "B = Vj(1)"], axis=1)
    x = torch.rand(3, d, dtype=torch.float32, requires_grad=True)
    y = torch.rand(17, d, dtype=torch.float32)
    b = torch.randn(17, 1, dtype=torch.float32)
    out = routine(x, y, b)
    x64, y64, b64 = x.detach().double().requires_grad_(True), y.double(), b.double()
    want = (torch.exp(-_dense_sqdist(x64, y64) / d) * b64[None]).sum(1)
    torch.testing.assert_close(out.double(), want, rtol=1e-4, atol=1e-5)  # float32: sums of 1e5 terms
    (gx,) = torch.autograd.grad(out.sum(), x)
    (wx,) = torch.autograd.grad(want.sum(), x64)
    torch.testing.assert_close(gx.double(), wx, rtol=1e-3, atol=1e-7)


def test_more_than_64_variables_is_a_clear_error():
    names = [f"X{k}" for k in range(65)]
    with pytest.raises(ValueError, match="65 variables; at most 64"):
        Genred("+".join(names), [f"{n} = Vi(1)" for n in names], reduction_op="Sum", axis=1)


def test_output_size_overflow_is_a_clear_error():
    with pytest.raises(ValueError, match="at most 2\\^30"):
        Genred("X-Y", ["X = Vi(1000)", "Y = Vj(1000)"], reduction_op="KMin", axis=1, opt_arg=2**21)


def test_absurd_dimension_is_a_clear_error():
    with pytest.raises(ValueError, match="too large dimensions|too large"):
        Genred("SqDist(TensorProd(X,X),TensorProd(Y,Y))", ["X = Vi(100000)", "Y = Vj(100000)"], axis=1)
