"""float32 accuracy at least pykeops's (issue #10 §6), measured against float64 on the same float32 inputs.
The pykeops figures are pykeops 2.3's on the same data (CPU, default options); benchmarks/accuracy_f32.py
prints both libraries side by side in one run, over several seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pykmr.numpy import Genred as NpGenred
from pykmr.torch import Genred

PYKEOPS_SUM_TENTH = 4.6e-8  # sum over j of 2e4 x 0.1 (float32), relative error
# gradient of LogSumExp_j -100 SqDist(x_i, y_j), 40 points in [0, 1]^147 (torch.Generator seed 0):
# max |error| / max |gradient|, and |error| / |gradient| (2-norms)
PYKEOPS_LSE_GRAD_MAX, PYKEOPS_LSE_GRAD_NORM = 6.8e-5, 1.1e-5
F32_HALF_ULP = 2.0**-24  # one correct rounding of the float32 output


def _rel(got, exact):
    return abs(float(got) - exact) / abs(exact)


@pytest.mark.parametrize("values", ["tenth", "uniform"])
@pytest.mark.parametrize("m", [20_000, 1_000_003])
def test_float32_sum_is_rounded_about_once(values, m, seed):
    """Sum over j of float32 values, for 1 and 5 rows (j is then split across the threads, whose partial
    sums are float32: a rounding or two more). The issue's case (2e4 x 0.1) at least as close as pykeops."""
    rng = np.random.default_rng(seed)
    if values == "tenth":
        b = np.full((m, 1), 0.1, np.float32)
    else:
        b = rng.uniform(0.5, 1.5, (m, 1)).astype(np.float32)
    exact = float(b.astype(np.float64).sum())
    routine = NpGenred("B", ["X = Vi(1)", "B = Vj(1)"], "Sum", axis=1)
    bound = PYKEOPS_SUM_TENTH if (values, m) == ("tenth", 20_000) else 4 * F32_HALF_ULP
    for n in (1, 5):
        out = routine(np.zeros((n, 1), np.float32), b)
        err = max(_rel(v, exact) for v in out[:, 0])
        print(f"{values}, m={m}, n={n}: max rel err {err:.2e} (bound {bound:.2e})")
        assert err <= bound


def test_float32_sum_through_a_formula_and_axis0(seed):
    """The same through a kernel formula (Gaussian weights times 0.1) and over i."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(20_000, 3, generator=g)
    y = torch.rand(3, 3, generator=g)
    b = torch.full((20_000, 1), 0.1)
    routine = Genred("Exp(-SqDist(X,Y))*B", ["X = Vi(3)", "Y = Vj(3)", "B = Vi(1)"], axis=0)
    got = routine(x, y, b)
    want = torch.exp(-((x.double()[:, None] - y.double()[None]) ** 2).sum(-1)).T @ b.double()
    rel = ((got.double() - want).abs() / want.abs()).max().item()
    print(f"axis 0 Gaussian-weighted sum of 2e4 x 0.1: max rel err {rel:.2e}")
    assert rel <= 4 * F32_HALF_ULP  # the float32 kernel values themselves carry a rounding or two


def test_float32_logsumexp_gradient_at_high_dimension():
    """The issue's case: the float32 gradient of LogSumExp_j -100 SqDist(x_i, y_j), 40 points uniform in
    [0, 1]^147 (the inner-product tiles, centered on the mean of the y_j, are used at this dimension)."""
    gen = torch.Generator().manual_seed(0)
    print("seed = 0")
    x32, y32 = torch.rand(40, 147, generator=gen), torch.rand(40, 147, generator=gen)
    routine = Genred(
        "-G*SqDist(X,Y)", ["X = Vi(147)", "Y = Vj(147)", "G = Pm(1)"], reduction_op="LogSumExp", axis=1
    )

    def grad(dtype):
        x = x32.to(dtype).requires_grad_(True)
        out = routine(x, y32.to(dtype), torch.tensor([100.0], dtype=dtype))
        (g,) = torch.autograd.grad(out.sum(), x)
        return out.double(), g.double()

    o64, g64 = grad(torch.float64)  # float64 on the same (float32) inputs: the reference of the same data
    o32, g32 = grad(torch.float32)
    err_max = ((g32 - g64).abs().max() / g64.abs().max()).item()
    err_norm = ((g32 - g64).norm() / g64.norm()).item()
    rel_o = ((o32 - o64).norm() / o64.norm()).item()
    print(
        f"LogSumExp value rel err {rel_o:.2e}; gradient: max {err_max:.2e} (pykeops 2.3: "
        f"{PYKEOPS_LSE_GRAD_MAX}), norm {err_norm:.2e} (pykeops 2.3: {PYKEOPS_LSE_GRAD_NORM})"
    )
    assert err_max <= PYKEOPS_LSE_GRAD_MAX
    assert err_norm <= PYKEOPS_LSE_GRAD_NORM
