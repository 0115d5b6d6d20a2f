"""Autograd: gradcheck and gradgradcheck in float64 on the seed kernels and on every differentiable
reduction (both axes), higher orders against dense torch."""

from __future__ import annotations

import pytest
import torch
from helpers import F64, warm_up
from pykmr.torch import Genred
from torch.autograd import gradcheck, gradgradcheck

N, M = 5, 4
GXYB = ["G = Pm(1)", "X = Vi(3)", "Y = Vj(3)", "B = Vj(3)"]  # the dims of test_examples: shared compiles

# The seed kernels, spelled as in the precompiled manifest (their first-order gradients never compile).
KERNELS = {
    "gaussian": ("Exp(-G*SqDist(X,Y))*B", GXYB),
    "cauchy": ("Inv(1+G*SqDist(X,Y))*B", GXYB),
    "laplacian": ("Exp(-Sqrt(G*SqDist(X,Y)))*B", GXYB),
    "inverse_multiquadric": ("Rsqrt(1+G*SqDist(X,Y))*B", GXYB),
    "linear": ("(X|Y)*B", GXYB[1:]),
}


def kernel_inputs(aliases):
    g = torch.tensor([0.7], dtype=F64)
    x, y, b = torch.rand(N, 3, dtype=F64), torch.rand(M, 3, dtype=F64), torch.rand(M, 3, dtype=F64)
    return [g, x, y, b] if len(aliases) == 4 else [x, y, b]


def check(fn, inputs, wrt, second_order=True):
    """gradcheck (and gradgradcheck) of fn w.r.t. the inputs whose index is in wrt."""
    inputs = [t.detach().clone().requires_grad_(k in wrt) for k, t in enumerate(inputs)]
    assert gradcheck(fn, inputs)
    if second_order:
        assert gradgradcheck(fn, inputs)


@pytest.fixture(scope="module", autouse=True)
def _compile_in_parallel():
    jobs = []
    for formula, aliases in KERNELS.values():
        r = Genred(formula, aliases, "Sum", axis=1)
        inputs = kernel_inputs(aliases)
        jobs.append(lambda r=r, inputs=inputs: check(r, inputs, range(len(inputs)), second_order=False))
    warm_up(jobs)


@pytest.mark.parametrize("name", list(KERNELS))
def test_seed_kernel_gradcheck(name, seed):
    formula, aliases = KERNELS[name]
    routine = Genred(formula, aliases, "Sum", axis=1)
    inputs = kernel_inputs(aliases)
    check(routine, inputs, wrt=range(len(inputs)), second_order=False)
    # second order w.r.t. the points (all four inputs for the Gaussian)
    nx = len(aliases) - 3
    check(routine, inputs, wrt=range(len(inputs)) if name == "gaussian" else (nx, nx + 1))


@pytest.mark.parametrize("axis", [1, 0])
def test_gaussian_axis0_gradcheck(axis, seed):
    routine = Genred("Exp(-G*SqDist(X,Y))*B", GXYB, "Sum", axis=axis)
    check(routine, kernel_inputs(GXYB), wrt=(1, 2, 3))


SCAL, VEC = "-G*SqDist(X,Y)", "Sin(G*X-2*Y)"
ALIASES = ["G = Pm(1)", "X = Vi(2)", "Y = Vj(2)", "B = Vj(2)"]


def red_inputs():
    # points spread enough that Min/Max/KMin have no near-ties (the gradient is the selected branch's)
    x = torch.rand(N, 2, dtype=F64) * 2 - 1
    y = torch.linspace(-1, 1, M, dtype=F64)[:, None] * torch.tensor([1.0, 0.7], dtype=F64)
    y = y + 0.01 * torch.rand(M, 2, dtype=F64)
    return [torch.tensor([0.8], dtype=F64), x, y, torch.rand(M, 2, dtype=F64) + 0.5]


REDS = [
    ("LogSumExp", SCAL, None, None),
    ("LogSumExp", SCAL, "Exp(X-Y)*B", None),
    ("SumSoftMaxWeight", SCAL, "Exp(X-Y)*B", None),
    ("Min", VEC, None, None),
    ("Max", VEC, None, None),
    ("KMin", VEC, None, 2),
    ("Min_ArgMin", VEC, None, None),
    ("Max_ArgMax", VEC, None, None),
    ("KMin_ArgKMin", VEC, None, 2),
]


def values_of(routine):
    def fn(*args):
        out = routine(*args)
        return out[0] if isinstance(out, tuple) else out

    return fn


RED_IDS = [f"{r[0]}{'_weights' if r[2] and r[0] == 'LogSumExp' else ''}" for r in REDS]


@pytest.mark.parametrize("axis", [1, 0])
@pytest.mark.parametrize("red, formula, formula2, k", REDS, ids=RED_IDS)
def test_reduction_gradcheck(red, formula, formula2, k, axis, seed):
    """First order w.r.t. every input (parameter included), both axes."""
    routine = Genred(formula, ALIASES, red, axis=axis, opt_arg=k, formula2=formula2)
    check(values_of(routine), red_inputs(), wrt=(0, 1, 2, 3) if formula2 else (0, 1, 2), second_order=False)


@pytest.mark.parametrize("red, formula, formula2, k", REDS, ids=RED_IDS)
def test_reduction_gradgradcheck(red, formula, formula2, k, seed):
    """Second order w.r.t. the points (each second-order formula is one more compile: kept to x, y)."""
    routine = Genred(formula, ALIASES, red, axis=1, opt_arg=k, formula2=formula2)
    check(values_of(routine), red_inputs(), wrt=(1, 2))


def test_min_gradient_is_the_selected_pairs(seed):
    """d min_j F(x_i, y_j) / dx_i = dF/dx at j* = argmin: compared with dense torch (no ties)."""
    x, y = torch.rand(N, 3, dtype=F64, requires_grad=True), torch.rand(M, 3, dtype=F64, requires_grad=True)
    routine = Genred("SqDist(X,Y)", ["X = Vi(3)", "Y = Vj(3)"], "KMin", axis=1, opt_arg=2)
    w = torch.rand(N, 2, dtype=F64)
    got = torch.autograd.grad((routine(x, y) * w).sum(), [x, y])
    d2 = ((x[:, None] - y[None]) ** 2).sum(-1)
    want = torch.autograd.grad((d2.sort(1).values[:, :2] * w).sum(), [x, y])
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


def test_third_order_against_dense(seed):
    """d^3/dx^3 of a Gaussian convolution (three nested Genred backwards) equals dense torch's."""
    x = torch.rand(N, 2, dtype=F64, requires_grad=True)
    y, b = torch.rand(M, 2, dtype=F64), torch.rand(M, 1, dtype=F64)
    routine = Genred("Exp(-G*SqDist(X,Y))*B", ["G = Pm(1)", "X = Vi(2)", "Y = Vj(2)", "B = Vj(1)"], axis=1)

    def third(fn):
        (g1,) = torch.autograd.grad(fn(x).pow(2).sum(), x, create_graph=True)
        (g2,) = torch.autograd.grad(g1.pow(2).sum(), x, create_graph=True)
        (g3,) = torch.autograd.grad(g2.sin().sum(), x)
        return g1, g2, g3

    got = third(lambda x: routine(0.6, x, y, b))
    want = third(lambda x: torch.exp(-0.6 * ((x[:, None] - y[None]) ** 2).sum(-1)) @ b)
    for a, w in zip(got, want):
        torch.testing.assert_close(a, w)


def test_parameter_gradient_summed_over_rows(seed):
    g = torch.tensor([0.9], dtype=F64, requires_grad=True)
    x, y, b = torch.rand(N, 3, dtype=F64), torch.rand(M, 3, dtype=F64), torch.rand(M, 3, dtype=F64)
    routine = Genred("Exp(-G*SqDist(X,Y))*B", GXYB, axis=1)
    (got,) = torch.autograd.grad(routine(g, x, y, b).sum(), g)
    (want,) = torch.autograd.grad((torch.exp(-g * ((x[:, None] - y[None]) ** 2).sum(-1)) @ b).sum(), g)
    assert got.shape == (1,)
    torch.testing.assert_close(got, want)


def test_index_reductions_have_no_gradient(seed):
    x = torch.rand(N, 2, dtype=F64, requires_grad=True)
    idx = Genred("SqDist(X,Y)", ["X = Vi(2)", "Y = Vj(2)"], "ArgMin", axis=1)(x, torch.rand(M, 2, dtype=F64))
    assert idx.dtype == torch.int64 and not idx.requires_grad
