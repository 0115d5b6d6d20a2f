"""The inner-product tile path (issue #12): formulas whose pairwise part is SqDist or a scalar product of an
i- and a j-variable of dimension >= 8 are evaluated from tiles of |x|^2 + |y|^2 - 2 <x, y>. Each written form
(Genred strings and LazyTensor expressions), reductions, float32/float64, batch dimensions, block-sparse
ranges and gradients to second order, against dense float64 torch that computes |x - y|^2 by subtraction."""

import pytest
import torch
from pykmr.torch import Genred, LazyTensor
from ranges_reference import cluster_ranges, from_matrix, mask_of

SEED = 20261129
TOL = {torch.float32: dict(rtol=5e-5, atol=5e-6), torch.float64: dict(rtol=1e-11, atol=1e-12)}
TILE_MIN_DIM = 8  # include/kmr/exec/cpu_driver.hpp: KMR_TILE_MIN_DIM


def points(n, d, dtype, seed, batch=()):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*batch, n, d, generator=g, dtype=torch.float64) * 2 - 1).div(d**0.5).to(dtype)


def d2(x, y):
    """|x_i - y_j|^2 by subtraction, float64: [..., N, M]."""
    return ((x.double()[..., :, None, :] - y.double()[..., None, :, :]) ** 2).sum(-1)


FORMS = {
    "SqDist": "Exp(-G*SqDist(X,Y))*B",
    "SqDist(Y,X)": "Exp(-G*SqDist(Y,X))*B",
    "SqNorm2": "Exp(-G*SqNorm2(X-Y))*B",
    "Sum(Square)": "Exp(-G*Sum(Square(Y-X)))*B",
    "WeightedSqDist": "Exp(-WeightedSqDist(G,X,Y))*B",
}


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gaussian_forms(form, dtype):
    print(f"seed {SEED}")
    d, n, m = 37, 203, 1031  # ragged rows, a partial pack of j
    x, y, b = points(n, d, dtype, SEED), points(m, d, dtype, SEED + 1), points(m, 1, dtype, SEED + 2)
    g = torch.tensor([0.75], dtype=dtype)
    routine = Genred(FORMS[form], ["G = Pm(1)", f"X = Vi({d})", f"Y = Vj({d})", "B = Vj(1)"], axis=1)
    ref = torch.exp(-0.75 * d2(x, y)) @ b.double()
    torch.testing.assert_close(routine(g, x, y, b).double(), ref, **TOL[dtype])


@pytest.mark.parametrize("d", [TILE_MIN_DIM - 1, TILE_MIN_DIM, 64])
def test_linear_kernel_and_lse(d):
    """(X|Y) (the scalar-product tile) in a Sum and a LogSumExp, across the crossover dimension."""
    x, y = points(150, d, torch.float32, SEED), points(2100, d, torch.float32, SEED + 1)
    b = points(2100, 1, torch.float32, SEED + 2)
    dot = x.double() @ y.double().T
    lin = Genred("(X|Y)*B", [f"X = Vi({d})", f"Y = Vj({d})", "B = Vj(1)"], axis=1)
    torch.testing.assert_close(lin(x, y, b).double(), dot @ b.double(), **TOL[torch.float32])
    lse = Genred("(Y|X)+B", [f"X = Vi({d})", f"Y = Vj({d})", "B = Vj(1)"], reduction_op="LogSumExp", axis=1)
    ref = torch.logsumexp(dot + b.double().T, dim=1, keepdim=True)
    torch.testing.assert_close(lse(x, y, b).double(), ref, **TOL[torch.float32])


def test_knn_lazytensor_and_axis0():
    """The k-NN of the KeOps tutorials, ((x_i - y_j) ** 2).sum(-1).argKmin(K, dim=1), and the same
    reduced over i (axis 0: the i/j roles swap inside the kernel)."""
    d, k = 64, 5
    x, y = points(300, d, torch.float32, SEED), points(4000, d, torch.float32, SEED + 1)
    D_ij = ((LazyTensor(x[:, None, :]) - LazyTensor(y[None, :, :])) ** 2).sum(-1)
    idx = D_ij.argKmin(k, dim=1)
    dist = d2(x, y)
    best = dist.topk(k, dim=1, largest=False).values
    # indices checked through the distances they point to (near-ties may swap)
    torch.testing.assert_close(dist.gather(1, idx), best, rtol=0, atol=1e-6)
    mins = D_ij.min(dim=0)  # [M, 1]: each y's nearest x
    torch.testing.assert_close(mins.double().view(-1), dist.min(dim=0).values, rtol=0, atol=1e-6)


def test_batch_dimensions():
    """Batched x and y (the j-variables and their norms differ per batch)."""
    d = 24
    x, y = points(70, d, torch.float64, SEED, batch=(3,)), points(90, d, torch.float64, SEED + 1, batch=(3,))
    b = points(90, 2, torch.float64, SEED + 2, batch=(3,))
    x_i, y_j, b_j = LazyTensor(x[:, :, None, :]), LazyTensor(y[:, None, :, :]), LazyTensor(b[:, None, :, :])
    got = ((-x_i.sqdist(y_j)).exp() * b_j).sum(dim=2)
    ref = torch.exp(-d2(x, y)) @ b
    torch.testing.assert_close(got, ref, **TOL[torch.float64])


def test_ranges():
    """Block-sparse ranges: rows of a block reduce over their listed blocks of j only."""
    d, nc = 16, 6
    g = torch.Generator().manual_seed(SEED)
    lx, _ = torch.sort(torch.randint(nc, (400,), generator=g))
    ly, _ = torch.sort(torch.randint(nc, (500,), generator=g))
    x, y = points(400, d, torch.float32, SEED), points(500, d, torch.float32, SEED + 1)
    keep = (torch.arange(nc)[:, None] - torch.arange(nc)[None, :]).abs() <= 1
    ranges = tuple(r.int() for r in from_matrix(cluster_ranges(lx, nc), cluster_ranges(ly, nc), keep))
    routine = Genred("Exp(-SqDist(X,Y))", [f"X = Vi({d})", f"Y = Vj({d})"], axis=1)
    mask = mask_of(ranges[0], ranges[1], ranges[2], 400, 500)
    ref = (torch.exp(-d2(x, y)) * mask).sum(1, keepdim=True)
    torch.testing.assert_close(routine(x, y, ranges=ranges).double(), ref, **TOL[torch.float32])


def test_gradients_to_second_order():
    """gradcheck and gradgradcheck (float64) of a Gaussian, trainable x, y and b, through tiled kernels."""
    d = TILE_MIN_DIM + 1
    x = points(9, d, torch.float64, SEED).requires_grad_(True)
    y = points(13, d, torch.float64, SEED + 1).requires_grad_(True)
    b = points(13, 2, torch.float64, SEED + 2).requires_grad_(True)
    routine = Genred("Exp(-SqDist(X,Y))*B", [f"X = Vi({d})", f"Y = Vj({d})", "B = Vj(2)"], axis=1)
    assert torch.autograd.gradcheck(routine, (x, y, b))
    assert torch.autograd.gradgradcheck(routine, (x, y, b))


def test_near_duplicates_are_never_negative():
    """Points far from the origin and much closer to each other than their norms: the expansion cancels, and
    SqDist must still be >= 0 (0 for duplicates up to a few roundings of |x|^2 + |y|^2)."""
    d = 32
    x = 10 + points(500, d, torch.float32, SEED)
    y = x.clone()
    y[1::2] += 1e-4 * points(250, d, torch.float32, SEED + 1)
    mins = Genred("SqDist(X,Y)", [f"X = Vi({d})", f"Y = Vj({d})"], reduction_op="Min", axis=1)(x, y)
    assert (mins >= 0).all()
    assert mins.max().item() <= 8 * 6e-8 * 2 * float((x.double() ** 2).sum(1).max())


def test_offset_cloud_is_as_accurate_as_at_the_origin():
    """The expansion is taken around the mean of the y_j: a cloud 1000 away from the origin (|x|^2 = 3e7 in
    float32, where the plain expansion |x|^2 + |y|^2 - 2 <x, y> would be off by about 4 for distances of
    about 0.7) gives the same accuracy as the cloud at the origin. Batches get their own centers."""
    print(f"seed {SEED}")
    d, n, m = 32, 203, 1031
    x, y, b = (
        points(n, d, torch.float32, SEED),
        points(m, d, torch.float32, SEED + 1),
        points(m, 1, torch.float32, 7),
    )
    routine = Genred("Exp(-SqDist(X,Y))*B", [f"X = Vi({d})", f"Y = Vj({d})", "B = Vj(1)"], axis=1)
    for shift in (0.0, 1000.0, -1000.0):
        xs, ys = x + shift, y + shift
        ref = torch.exp(-d2(xs, ys)) @ b.double()
        torch.testing.assert_close(
            routine(xs, ys, b).double(), ref, **TOL[torch.float32], msg=f"shift {shift}"
        )
    # Two batches 2000 apart: one center for both would leave each 1000 from it.
    xb = torch.stack([x + 1000.0, x - 1000.0])
    yb = torch.stack([y + 1000.0, y - 1000.0])
    ref = torch.exp(-d2(xb, yb)) @ b.double()
    torch.testing.assert_close(routine(xb, yb, b).double(), ref, **TOL[torch.float32])
