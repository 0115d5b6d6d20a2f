"""Every op of the formula language against a dense torch float64 reference: value and gradients.

One table row per op: the formula, its aliases, the dense reference on broadcast views (i-variables
[N, 1, d], j-variables [1, M, d], parameters [d]) returning [N, M, dim F], the variables whose gradient is
checked, and the domain of the random data. The test sums over j with pykmr and with torch.
"""

from __future__ import annotations

import pytest
import torch
from helpers import F64, broadcast, make_data, warm_up
from pykmr.torch import Genred

N, M = 7, 5
XY = ["X = Vi(3)", "Y = Vj(3)"]


def op(id_, formula, ref, aliases=XY, grads=("X", "Y"), domain="any"):
    return pytest.param(formula, aliases, ref, grads, domain, id=id_)


def sq(a):
    return (a * a).sum(-1, keepdim=True)


def place(v, start, dim):  # v at [start, start + dim v) of a zero vector of R^dim
    shape = v.shape[:-1] + (dim,)
    z = torch.zeros(shape, dtype=v.dtype)
    return torch.cat([z[..., :start], v, z[..., start + v.shape[-1]:]], -1)


OPS = [
    # arithmetic, constants, broadcasting of dim-1 operands
    op("add", "X+Y", lambda v: v["X"] + v["Y"]),
    op("subtract", "X-Y", lambda v: v["X"] - v["Y"]),
    op("mult", "X*Y", lambda v: v["X"] * v["Y"]),
    op("divide", "X/Y", lambda v: v["X"] / v["Y"], domain="pos"),
    op("minus", "-X*Y", lambda v: -v["X"] * v["Y"], grads=("X",)),
    op("minus_factor", "Y*-X", lambda v: -v["X"] * v["Y"], grads=("X",)),
    op("broadcast", "S*X-Y/S", lambda v: v["S"] * v["X"] - v["Y"] / v["S"], ["S = Vj(1)"] + XY,
       grads=("S", "X"), domain="pos"),
    op("intcst", "3*X+Y/2", lambda v: 3 * v["X"] + v["Y"] / 2, grads=("X",)),
    op("ratcst", "0.5*X-0.25*Y", lambda v: 0.5 * v["X"] - 0.25 * v["Y"], grads=("X",)),
    op("zero", "Zero(3)+X*Y", lambda v: v["X"] * v["Y"], grads=("X",)),
    # elementwise unary
    op("exp", "Exp(X-Y)", lambda v: torch.exp(v["X"] - v["Y"]), grads=("X",)),
    op("log", "Log(X+Y)", lambda v: torch.log(v["X"] + v["Y"]), grads=("X",), domain="pos"),
    op("sqrt", "Sqrt(X+Y)", lambda v: torch.sqrt(v["X"] + v["Y"]), grads=("X",), domain="pos"),
    op("rsqrt", "Rsqrt(X+Y)", lambda v: torch.rsqrt(v["X"] + v["Y"]), grads=("X",), domain="pos"),
    op("square", "Square(X-Y)", lambda v: (v["X"] - v["Y"]) ** 2, grads=("X",)),
    op("inv", "Inv(X+Y)", lambda v: 1 / (v["X"] + v["Y"]), grads=("X",), domain="pos"),
    op("sin", "Sin(X-Y)", lambda v: torch.sin(v["X"] - v["Y"]), grads=("X",)),
    op("cos", "Cos(X-Y)", lambda v: torch.cos(v["X"] - v["Y"]), grads=("X",)),
    op("atan", "Atan(X-Y)", lambda v: torch.atan(v["X"] - v["Y"]), grads=("X",)),
    op("abs", "Abs(X-Y)", lambda v: torch.abs(v["X"] - v["Y"]), grads=("X",)),
    op("sign", "Sign(X-Y)*X", lambda v: torch.sign(v["X"] - v["Y"]) * v["X"], grads=("X",)),
    op("step", "Step(X-Y)*X", lambda v: (v["X"] >= v["Y"]).to(F64) * v["X"], grads=("X",)),
    op("relu", "ReLU(X-Y)", lambda v: torch.relu(v["X"] - v["Y"]), grads=("X",)),
    op("xlogx", "XLogX(X+Y)", lambda v: (v["X"] + v["Y"]) * torch.log(v["X"] + v["Y"]), grads=("X",),
       domain="pos"),
    op("floor", "Floor(3*X-Y)*X", lambda v: torch.floor(3 * v["X"] - v["Y"]) * v["X"], grads=("X",)),
    op("pow", "Pow(X-Y,3)", lambda v: (v["X"] - v["Y"]) ** 3, grads=("X",)),
    op("pow_negative", "Pow(X+Y,-2)", lambda v: (v["X"] + v["Y"]) ** -2, grads=("X",), domain="pos"),
    # elementwise binary and ternary
    op("powf", "Powf(X+Y,Y)", lambda v: (v["X"] + v["Y"]) ** v["Y"], domain="pos"),
    op("clamp", "Clamp(X,Y-0.5,Y+0.5)",
       lambda v: torch.minimum(torch.maximum(v["X"], v["Y"] - 0.5), v["Y"] + 0.5)),
    op("ifelse", "IfElse(X-Y,X*Y,X+Y)",
       lambda v: torch.where(v["X"] >= v["Y"], v["X"] * v["Y"], v["X"] + v["Y"])),
    op("mod", "Mod(3*X,Y,0.25)", lambda v: 3 * v["X"] - v["Y"] * torch.floor((3 * v["X"] - 0.25) / v["Y"]),
       aliases=["X = Vi(3)", "Y = Vj(3)"], domain="pos"),
    # vector ops
    op("sum", "Sum(X*Y)", lambda v: (v["X"] * v["Y"]).sum(-1, keepdim=True), grads=("X",)),
    op("sumt", "SumT(Sum(X-Y),4)", lambda v: (v["X"] - v["Y"]).sum(-1, keepdim=True).expand(N, M, 4),
       grads=("X",)),
    op("scalprod", "(X|Y)", lambda v: (v["X"] * v["Y"]).sum(-1, keepdim=True)),
    op("sqnorm2", "SqNorm2(X-2*Y)", lambda v: sq(v["X"] - 2 * v["Y"]), grads=("X",)),
    op("norm2", "Norm2(X-Y)", lambda v: sq(v["X"] - v["Y"]).sqrt(), grads=("X",)),
    op("normalize", "Normalize(X-Y)", lambda v: (v["X"] - v["Y"]) / sq(v["X"] - v["Y"]).sqrt(), grads=("X",)),
    op("sqdist", "SqDist(X,Y)", lambda v: sq(v["X"] - v["Y"])),
    op("weightedsqnorm_scalar", "WeightedSqNorm(S,X-Y)", lambda v: v["S"] * sq(v["X"] - v["Y"]),
       ["S = Vj(1)"] + XY, grads=("S", "X")),
    op("weightedsqnorm_diag", "WeightedSqNorm(S,X-Y)",
       lambda v: (v["S"] * (v["X"] - v["Y"]) ** 2).sum(-1, True),
       ["S = Vj(3)"] + XY, grads=("S", "X")),
    op("weightedsqnorm_full", "WeightedSqNorm(S,X-Y)",
       lambda v: torch.einsum("nmr,nmrc,nmc->nm", v["X"] - v["Y"],
                              v["S"].reshape(1, M, 3, 3).expand(N, M, 3, 3),
                              (v["X"] - v["Y"]).expand(N, M, 3))[..., None].contiguous(),
       ["S = Vj(9)"] + XY, grads=("S", "X")),
    op("weightedsqdist_param", "WeightedSqDist(P,X,Y)",
       lambda v: (v["P"] * (v["X"] - v["Y"]) ** 2).sum(-1, True),
       ["P = Pm(3)"] + XY, grads=("P", "X"), domain="pos"),
    op("concat", "Concat(X,Y*X)", lambda v: torch.cat([v["X"].expand(N, M, 3), v["Y"] * v["X"]], -1)),
    op("extract", "Extract(X*Y,1,2)", lambda v: (v["X"] * v["Y"])[..., 1:3], grads=("X",)),
    op("extractt", "ExtractT(X*Y,1,5)", lambda v: place(v["X"] * v["Y"], 1, 5), grads=("X",)),
    op("elem", "Elem(X*Y,2)", lambda v: (v["X"] * v["Y"])[..., 2:3], grads=("X",)),
    op("elemt", "ElemT(Sum(X*Y),2,4)", lambda v: place((v["X"] * v["Y"]).sum(-1, True), 2, 4)),
    op("matvecmult", "MatVecMult(S,X)", lambda v: (v["S"].reshape(1, M, 2, 3) @ v["X"][..., None])[..., 0],
       ["X = Vi(3)", "S = Vj(6)"], grads=("S", "X")),
    op("vecmatmult", "VecMatMult(X,S)",
       lambda v: (v["X"][..., None, :] @ v["S"].reshape(1, M, 3, 2))[..., 0, :],
       ["X = Vi(3)", "S = Vj(6)"], grads=("S", "X")),
    op("tensorprod", "TensorProd(X,Y)",
       lambda v: (v["X"][..., :, None] * v["Y"][..., None, :]).reshape(N, M, 9)),
    # a gradient inside a formula: d/dX <|X - Y|^2, E> = 2 (X - Y) E
    op("grad", "Grad(SqDist(X,Y),X,E)", lambda v: 2 * (v["X"] - v["Y"]) * v["E"], XY + ["E = Vj(1)"],
       grads=("X", "E")),
    # variables written in the formula itself, older spellings
    op("inline_vars", "Exp(-SqDist(Vi(0,3),Vj(1,3)))", lambda v: torch.exp(-sq(v["X"] - v["Y"])),
       grads=("X",)),
    op("vx_vy", "Exp(X*Y)", lambda v: torch.exp(v["X"] * v["Y"]), ["X = Vx(3)", "Y = Vy(3)"], grads=("X",)),
]


def names(aliases):
    return [a.split("=")[0].strip() for a in aliases]


def compute(formula, aliases, ref, grads, domain):
    """pykmr's and torch's sum over j and their gradients (for the weights w) w.r.t. `grads`."""
    data = make_data(aliases, N, M, domain, requires_grad=True)
    args = [data[k] for k in names(aliases)]
    inline = "Vi(0," in formula  # variables written in the formula: no alias (the data follow XY)
    routine = Genred(formula, [] if inline else aliases, "Sum", axis=1)
    got = routine(*args)
    want = ref(broadcast(aliases, data)).sum(1)
    w = torch.rand_like(want)
    wrt = [data[k] for k in grads]
    g_got = torch.autograd.grad((got * w).sum(), wrt, allow_unused=True, materialize_grads=True)
    g_want = torch.autograd.grad((want * w).sum(), wrt, allow_unused=True, materialize_grads=True)
    return got, want, g_got, g_want


@pytest.fixture(scope="module", autouse=True)
def _compile_in_parallel():
    warm_up([lambda p=p: compute(*p.values) for p in OPS])


@pytest.mark.parametrize("formula, aliases, ref, grads, domain", OPS)
def test_op(formula, aliases, ref, grads, domain, seed):
    got, want, g_got, g_want = compute(formula, aliases, ref, grads, domain)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)
    for name, a, b in zip(grads, g_got, g_want):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10, msg=lambda m, name=name: f"d/d{name}: {m}")
