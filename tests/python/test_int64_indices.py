"""Indices are int64 from the driver to the user (issue 10 §4, DESIGN decision 11): float32 data with more
than 2^24 reduced rows keeps every index exact, for every reduction that outputs or uses an index, both
axes, and the Min/KMin gradients that gather and scatter with them. 1-D problems of 17e6 points (about
70 MB per array) keep the memory modest."""

import numpy as np
import pykmr.numpy as pknp
import pykmr.torch as pk
import pytest
import torch

M = 17_000_000
HIT = 16_777_219  # 2^24 + 3: float32 rounds it to 16777220
HIT2 = 16_777_221  # float32 rounds it to 16777220 too
HIT3 = 16_777_217  # 2^24 + 1: float32 rounds it to 16777216


@pytest.fixture(scope="module")
def points():
    """The issue's case: y = rand(M, 1) + 1 (distances to 0.5 >= 0.25) with planted points near 0.5."""
    g = torch.Generator().manual_seed(10)
    print("seed = 10")
    y = torch.rand(M, 1, generator=g) + 1
    y[HIT] = 0.5  # the nearest (distance 0)
    y[HIT2] = 0.5  # a tie with HIT: the smaller index first
    y[HIT3] = 0.5 + 2**-8  # third nearest
    return torch.tensor([[0.5]]), y


def routine(red, axis, formula="SqDist(X,Y)", k=None):
    aliases = ["X = Vi(1)", "Y = Vj(1)"] if axis == 1 else ["X = Vj(1)", "Y = Vi(1)"]
    return pk.Genred(formula, aliases, reduction_op=red, axis=axis, opt_arg=k)


@pytest.mark.parametrize("axis", [1, 0])
def test_issue_case_argmin(points, axis):
    x, y = points
    out = routine("ArgMin", axis)(x, y)
    assert out.dtype == torch.int64 and out.shape == (1, 1)
    assert out.item() == HIT


@pytest.mark.parametrize("axis", [1, 0])
def test_every_index_reduction(points, axis):
    x, y = points
    want3 = [HIT, HIT2, HIT3]
    vals, idx = routine("Min_ArgMin", axis)(x, y)
    assert idx.dtype == torch.int64 and idx.item() == HIT and vals.item() == 0.0
    # Max of -SqDist is the nearest point too.
    assert routine("ArgMax", axis, "-SqDist(X,Y)")(x, y).item() == HIT
    vals, idx = routine("Max_ArgMax", axis, "-SqDist(X,Y)")(x, y)
    assert idx.item() == HIT and vals.item() == 0.0
    idx = routine("ArgKMin", axis, k=3)(x, y)
    assert idx.dtype == torch.int64 and idx.tolist() == [want3]
    vals, idx = routine("KMin_ArgKMin", axis, k=3)(x, y)
    assert idx.tolist() == [want3]
    assert vals.tolist() == [[0.0, 0.0, 2.0**-16]]


def test_numpy_front_end(points):
    x, y = (t.numpy() for t in points)
    argmin = pknp.Genred("SqDist(X,Y)", ["X = Vi(1)", "Y = Vj(1)"], reduction_op="ArgMin", axis=1)
    out = argmin(x, y)
    assert out.dtype == np.int64 and out[0, 0] == HIT
    knn = pknp.Genred("SqDist(X,Y)", ["X = Vi(1)", "Y = Vj(1)"], reduction_op="ArgKMin", axis=1, opt_arg=3)
    assert knn(x, y).tolist() == [[HIT, HIT2, HIT3]]


@pytest.mark.parametrize("axis", [1, 0])
def test_min_gradient_scatters_at_exact_index(axis):
    """d/dy of min_j |x - y_j|^2 is 2 (y_j* - x) at j* and 0 elsewhere: j* = 2^24 + 3 must get it."""
    g = torch.Generator().manual_seed(11)
    print("seed = 11")
    y = torch.rand(M, 1, generator=g) + 1
    y[HIT] = 0.75
    y.requires_grad_(True)
    x = torch.tensor([[0.5]], requires_grad=True)
    out = routine("Min", axis)(x, y)
    assert out.item() == 0.0625
    gx, gy = torch.autograd.grad(out.sum(), [x, y])
    assert gx.item() == pytest.approx(-0.5, rel=1e-6)
    nz = torch.nonzero(gy[:, 0]).flatten().tolist()
    assert nz == [HIT]
    assert gy[HIT, 0].item() == pytest.approx(0.5, rel=1e-6)


def test_kmin_gradient_scatters_at_exact_indices():
    g = torch.Generator().manual_seed(12)
    print("seed = 12")
    y = torch.rand(M, 1, generator=g) + 1
    y[HIT] = 0.75  # nearest, distance 0.0625
    y[HIT2] = 0.25  # same distance: second by index
    y[HIT3] = 0.875  # third, distance 0.140625
    y.requires_grad_(True)
    x = torch.tensor([[0.5]], requires_grad=True)
    out = routine("KMin", 1, k=3)(x, y)
    assert out.tolist() == [[0.0625, 0.0625, 0.140625]]
    w = torch.tensor([[1.0, 10.0, 100.0]])
    (gy,) = torch.autograd.grad((out * w).sum(), [y])
    nz = torch.nonzero(gy[:, 0]).flatten().tolist()
    assert nz == sorted([HIT, HIT2, HIT3])
    # 2 (y_j - x) w_r at each selected j
    assert gy[HIT, 0].item() == pytest.approx(0.5, rel=1e-6)
    assert gy[HIT2, 0].item() == pytest.approx(-5.0, rel=1e-6)
    assert gy[HIT3, 0].item() == pytest.approx(75.0, rel=1e-6)
