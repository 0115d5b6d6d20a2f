"""Block-sparse reductions (KeOps's ranges) against the dense masked float64 result: every reduction kind,
both axes, float32/float64, gradients, empty blocks, and a GeomLoss-like block-diagonal pattern."""

import numpy as np
import pytest
import torch
from pykmr.torch import Genred
from ranges_reference import cluster_ranges, from_matrix, mask_of, masked_reduce

TOL = {torch.float32: dict(rtol=2e-4, atol=2e-5), torch.float64: dict(rtol=1e-10, atol=1e-12)}


def clustered(n, m, d, nc, dtype, far=4.0):
    """Points around nc centers, sorted by cluster, the cluster ranges, and a 6-tuple keeping the pairs of
    clusters whose centers are closer than `far` (each cluster keeps itself)."""
    centers = torch.randn(nc, d, dtype=torch.float64) * 3
    lx, _ = torch.sort(torch.randint(nc, (n,)))
    ly, _ = torch.sort(torch.randint(nc, (m,)))
    x = (centers[lx] + 0.5 * torch.randn(n, d, dtype=torch.float64)).to(dtype)
    y = (centers[ly] + 0.5 * torch.randn(m, d, dtype=torch.float64)).to(dtype)
    keep = torch.cdist(centers, centers) < far
    ranges = from_matrix(cluster_ranges(lx, nc), cluster_ranges(ly, nc), keep)
    return x, y, tuple(r.int() for r in ranges)


def dense_mask(ranges, n, m, axis):
    """[rows, reduced] mask of the triple a Genred of this axis uses."""
    if axis == 1:
        return mask_of(ranges[0], ranges[1], ranges[2], n, m)
    return mask_of(ranges[3], ranges[4], ranges[5], m, n)


# formula, extra aliases, reduction, opt_arg, formula2
CASES = {
    "Sum": ("Exp(-G*SqDist(X,Y))*B", "Sum", None, None),
    "LogSumExp": ("-G*SqDist(X,Y)", "LogSumExp", None, None),
    "Min": ("SqDist(X,Y)", "Min", None, None),
    "ArgMin": ("SqDist(X,Y)", "ArgMin", None, None),
    "Min_ArgMin": ("SqDist(X,Y)", "Min_ArgMin", None, None),
    "Max": ("-SqDist(X,Y)", "Max", None, None),
    "KMin": ("SqDist(X,Y)", "KMin", 3, None),
    "ArgKMin": ("SqDist(X,Y)", "ArgKMin", 3, None),
    "KMin_ArgKMin": ("SqDist(X,Y)", "KMin_ArgKMin", 3, None),
    "SumSoftMaxWeight": ("-G*SqDist(X,Y)", "SumSoftMaxWeight", None, "B"),
}


def reference(name, x, y, b, g, mask, axis):
    """Dense float64 reduction of CASES[name] under mask (rows of the output x reduced)."""
    x64, y64, b64 = x.double(), y.double(), b.double()
    if axis == 0:  # the output rows are y's: swap the roles (SqDist is symmetric)
        x64, y64 = y64, x64
        b64 = torch.ones(1)  # unused: B is only in axis-1 cases
    d2 = ((x64[:, None, :] - y64[None, :, :]) ** 2).sum(-1, keepdim=True)
    red = CASES[name][1]
    k = CASES[name][2]
    if name == "Sum":
        f = torch.exp(-g * d2) * b64[None, :, :]
    elif name in ("LogSumExp", "SumSoftMaxWeight"):
        f = -g * d2
    elif name == "Max":
        f = -d2
    else:
        f = d2
    return masked_reduce(red, f, mask, g=b64[None, :, :] if name == "SumSoftMaxWeight" else None, k=k)


def run_case(name, axis, dtype, x, y, ranges, g=0.5):
    formula, red, k, f2 = CASES[name]
    n, m = x.shape[0], y.shape[0]
    # B (dim 2) is a j-variable: only in axis-1 cases; for axis 0 the formula reduces over i.
    aliases = ["G = Pm(1)", "X = Vi(3)", "Y = Vj(3)"]
    args = [torch.tensor([g], dtype=dtype), x, y]
    if "B" in formula or f2:
        aliases.append("B = Vj(2)")
        b = torch.randn(m, 2, dtype=dtype)
        args.append(b)
    else:
        b = torch.ones(m, 2, dtype=dtype)
    routine = Genred(formula, aliases, reduction_op=red, axis=axis, opt_arg=k, formula2=f2)
    got = routine(*args, ranges=ranges)
    want = reference(name, x, y, b, g, dense_mask(ranges, n, m, axis), axis)
    return got, want


def check(got, want, dtype):
    if isinstance(want, tuple):
        for a, w in zip(got, want):
            check(a, w, dtype)
        return
    if want.dtype == torch.int64:
        assert got.dtype == torch.int64
        assert torch.equal(got, want), (got, want)
        return
    torch.testing.assert_close(got.double(), want, equal_nan=True, **TOL[dtype])


# Cases with a j-variable B run for axis=1 only (for axis=0, B would be indexed like the output).
AXIS_CASES = [(n, 1) for n in CASES] + [(n, 0) for n, c in CASES.items() if "B" not in c[0] and not c[3]]


@pytest.mark.parametrize("name,axis", AXIS_CASES)
def test_every_reduction_against_the_dense_masked_result(seed, name, axis):
    dtype = torch.float64
    x, y, ranges = clustered(60, 50, 3, 5, dtype)
    got, want = run_case(name, axis, dtype, x, y, ranges)
    check(got, want, dtype)


@pytest.mark.parametrize("name", ["Sum", "LogSumExp", "ArgMin", "KMin", "SumSoftMaxWeight"])
def test_float32(seed, name):
    x, y, ranges = clustered(80, 70, 3, 6, torch.float32)
    got, want = run_case(name, 1, torch.float32, x, y, ranges)
    if CASES[name][1] == "ArgMin":  # ties in float32 may pick another index: compare the selected values
        mask = dense_mask(ranges, 80, 70, 1)
        d2 = ((x.double()[:, None] - y.double()[None]) ** 2).sum(-1)
        assert bool(mask[torch.arange(80), got[:, 0]].all())
        sel = d2[torch.arange(80), got[:, 0]]
        best = d2.masked_fill(~mask, float("inf")).min(1).values
        torch.testing.assert_close(sel, best, rtol=1e-5, atol=1e-6)
        return
    check(got, want, torch.float32)


def test_empty_blocks_and_uncovered_rows(seed):
    """A block with no reduction range, one with an empty range, rows in no block, a last range reaching the
    end: those rows get the reduction of nothing (Sum 0, Min +inf, ArgMin -1, LogSumExp -inf)."""
    dtype = torch.float64
    x, y = torch.randn(20, 3, dtype=dtype), torch.randn(30, 3, dtype=dtype)
    ranges_i = torch.tensor([[2, 5], [5, 9], [12, 15], [17, 20]])
    slices_i = torch.tensor([1, 1, 3, 4])  # block 1: nothing
    redranges_j = torch.tensor([[0, 10], [4, 4], [20, 30], [7, 12]])
    t = torch.zeros((0, 2), dtype=torch.int64)
    ranges = (ranges_i, slices_i, redranges_j, t, torch.zeros(0, dtype=torch.int64), t)
    mask = mask_of(ranges_i, slices_i, redranges_j, 20, 30)
    assert not bool(mask[:2].any()) and not bool(mask[5:12].any())
    for name in ("Sum", "LogSumExp", "Min", "ArgMin", "KMin"):
        got, want = run_case(name, 1, dtype, x, y, ranges)
        check(got, want, dtype)
    got, _ = run_case("Min_ArgMin", 1, dtype, x, y, ranges)
    assert torch.isinf(got[0][5:12]).all() and bool((got[1][5:12] == -1).all())
    # no block at all: every row is empty (axis=0 reads the empty j triple)
    got, _ = run_case("LogSumExp", 0, dtype, x, y, ranges)
    assert torch.equal(got, torch.full((30, 1), -float("inf"), dtype=dtype))


def test_ranges_covering_everything_equal_the_dense_reduction(seed):
    x, y, b = torch.randn(40, 3), torch.randn(50, 3), torch.randn(50, 2)
    full = (
        torch.tensor([[0, 40]]),
        torch.tensor([2]),
        torch.tensor([[0, 20], [20, 50]]),
        torch.tensor([[0, 50]]),
        torch.tensor([1]),
        torch.tensor([[0, 40]]),
    )
    conv = Genred("Exp(-G*SqDist(X,Y))*B", ["G = Pm(1)", "X = Vi(3)", "Y = Vj(3)", "B = Vj(2)"], axis=1)
    g = torch.tensor([0.7])
    torch.testing.assert_close(conv(g, x, y, b, ranges=full), conv(g, x, y, b), rtol=1e-5, atol=1e-6)


def test_block_diagonal_geomloss_pattern(seed):
    """Points sorted by cluster, cluster ranges, pairs of clusters with near centroids kept (the multiscale
    Sinkhorn of GeomLoss): a LogSumExp (softmin) on both axes against the dense masked result."""
    dtype = torch.float64
    x, y, ranges = clustered(300, 250, 3, 12, dtype, far=5.0)
    mask = mask_of(ranges[0], ranges[1], ranges[2], 300, 250)
    assert 0.05 < mask.double().mean() < 0.95, "the pattern should skip some blocks and keep some"
    assert torch.equal(mask, mask_of(ranges[3], ranges[4], ranges[5], 250, 300).t())
    eps = 0.5
    for axis in (1, 0):
        softmin = Genred(
            "-SqDist(X,Y)/E + B",
            ["E = Pm(1)", "X = Vi(3)", "Y = Vj(3)", "B = Vj(1)"]
            if axis
            else ["E = Pm(1)", "X = Vi(3)", "Y = Vj(3)", "B = Vi(1)"],
            reduction_op="LogSumExp",
            axis=axis,
        )
        bvec = torch.randn(250 if axis else 300, 1, dtype=dtype)
        got = softmin(torch.tensor([eps], dtype=dtype), x, y, bvec, ranges=ranges)
        d2 = ((x[:, None] - y[None]) ** 2).sum(-1)
        f = -d2 / eps + (bvec.t() if axis else bvec)
        if axis == 0:
            f, m = f.t(), mask.t()
        else:
            m = mask
        want = masked_reduce("LogSumExp", f.unsqueeze(-1), m)
        torch.testing.assert_close(got, want, **TOL[dtype])


@pytest.mark.parametrize("name", ["Sum", "LogSumExp", "Min", "KMin", "SumSoftMaxWeight"])
def test_gradcheck_with_ranges(seed, name):
    """gradcheck (float64): same-axis gradients use the first triple, flipped-axis ones the transpose."""
    formula, red, k, f2 = CASES[name]
    x, y, ranges = clustered(14, 12, 3, 3, torch.float64, far=6.0)
    x.requires_grad_(True)
    y.requires_grad_(True)
    g = torch.tensor([0.3], dtype=torch.float64, requires_grad=True)
    aliases = ["G = Pm(1)", "X = Vi(3)", "Y = Vj(3)"]
    args = [g, x, y]
    if "B" in formula or f2:
        aliases.append("B = Vj(2)")
        args.append(torch.randn(12, 2, dtype=torch.float64, requires_grad=True))
    routine = Genred(formula, aliases, reduction_op=red, axis=1, opt_arg=k, formula2=f2)

    def fn(*a):
        return routine(*a, ranges=ranges)

    assert torch.autograd.gradcheck(fn, args, atol=1e-6, rtol=1e-5)

    # the same gradients as the dense masked float64 computation in torch
    mask = dense_mask(ranges, 14, 12, 1)
    out = fn(*args)
    w = torch.randn_like(out)
    grads = torch.autograd.grad((out * w).sum(), args, materialize_grads=True)
    b = args[3] if len(args) > 3 else torch.ones(12, 2, dtype=torch.float64)
    ref = reference(name, x, y, b, g, mask, 1)
    ref_grads = torch.autograd.grad((ref * w).sum(), args, allow_unused=True)
    for a, r in zip(grads, ref_grads):
        torch.testing.assert_close(a, torch.zeros_like(a) if r is None else r, rtol=1e-9, atol=1e-10)


def test_ranges_errors(seed):
    conv = Genred("SqDist(X,Y)", ["X = Vi(3)", "Y = Vj(3)"], reduction_op="Sum", axis=1)
    x, y = torch.randn(10, 3), torch.randn(8, 3)
    ok = (
        torch.tensor([[0, 10]]),
        torch.tensor([1]),
        torch.tensor([[0, 8]]),
        torch.tensor([[0, 8]]),
        torch.tensor([1]),
        torch.tensor([[0, 10]]),
    )
    conv(x, y, ranges=ok)
    with pytest.raises(TypeError, match="6-tuple"):
        conv(x, y, ranges=ok[:3])
    with pytest.raises(TypeError, match=r"ranges\[1\] \(slices_i\) must be int32 or int64"):
        conv(x, y, ranges=(ok[0], ok[1].float()) + ok[2:])
    with pytest.raises(ValueError, match=r"ranges\[0\] \(ranges_i\) must have shape \(n, 2\)"):
        conv(x, y, ranges=(ok[0].reshape(-1),) + ok[1:])
    with pytest.raises(ValueError, match="one entry per block"):
        conv(x, y, ranges=(ok[0], torch.tensor([1, 1])) + ok[2:])
    with pytest.raises(ValueError, match=r"ranges_i\[0\] = \[0, 11\) is not a range of \[0, 10\)"):
        conv(x, y, ranges=(torch.tensor([[0, 11]]),) + ok[1:])
    with pytest.raises(ValueError, match=r"redranges_j\[0\] = \[0, 9\) is not a range of \[0, 8\)"):
        conv(x, y, ranges=ok[:2] + (torch.tensor([[0, 9]]),) + ok[3:])
    with pytest.raises(ValueError, match="sorted and disjoint"):
        conv(x, y, ranges=(torch.tensor([[5, 10], [0, 5]]), torch.tensor([1, 1])) + ok[2:])
    with pytest.raises(ValueError, match="non-decreasing"):
        conv(x, y, ranges=(torch.tensor([[0, 5], [5, 10]]), torch.tensor([1, 0])) + ok[2:])
    with pytest.raises(ValueError, match="not supported with batch dimensions"):
        conv(x[None], y[None], ranges=ok)
    # axis=0 checks the transposed triple against (ny rows, nx reduced)
    conv0 = Genred("SqDist(X,Y)", ["X = Vi(3)", "Y = Vj(3)"], reduction_op="Sum", axis=0)
    with pytest.raises(ValueError, match=r"redranges_i\[0\] = \[0, 11\)"):
        conv0(x, y, ranges=ok[:5] + (torch.tensor([[0, 11]]),))


def test_numpy_front_end_with_ranges(seed):
    from pykmr.numpy import Genred as NGenred

    x, y, ranges = clustered(50, 40, 3, 4, torch.float64)
    conv = NGenred("SqDist(X,Y)", ["X = Vi(3)", "Y = Vj(3)"], reduction_op="Min", axis=1)
    got = conv(x.numpy(), y.numpy(), ranges=tuple(r.numpy() for r in ranges))
    want = reference("Min", x, y, torch.ones(40, 2), 0.0, dense_mask(ranges, 50, 40, 1), 1)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-12)


def test_same_result_as_pykeops(seed):
    pykeops_torch = pytest.importorskip("pykeops.torch", reason="pykeops compares block-sparse results")
    x, y, ranges = clustered(60, 50, 3, 5, torch.float64)
    b = torch.randn(50, 2, dtype=torch.float64)
    g = torch.tensor([0.5], dtype=torch.float64)
    aliases = ["G = Pm(1)", "X = Vi(3)", "Y = Vj(3)", "B = Vj(2)"]
    ours = Genred("Exp(-G*SqDist(X,Y))*B", aliases, axis=1)(g, x, y, b, ranges=ranges)
    theirs = pykeops_torch.Genred("Exp(-G*SqDist(X,Y))*B", aliases, axis=1)(
        g, x, y, b, ranges=ranges, backend="CPU"
    )
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-14)
