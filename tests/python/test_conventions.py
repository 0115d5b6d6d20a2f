"""Every op at its singular points (issue 10, section 1): value, first and second derivatives, float32 and
float64, sizes that fill whole SIMD packs and ragged tails, against pykmr.conventions.TABLE (the table that
docs/conventions.md is generated from).

One formula holds every op of the table, one per coordinate k (so that a few kernels compile, not a few
hundred): F_k = op_k(X_k - Y_k, B_k, C_k) with X, B, C = Vi(K) and Y = Vj(K). Call c puts the c-th point of
op k's rows in coordinate k on every row (Y = 0), so the forward pass and d/dX see the point in the j-lanes
(reduction over j) and d/dY in the i-lanes (reduction over i). Coordinates never mix: d/dX_k, d/dY_k and
d2/dX_k2 involve op k alone. With out_ik = sum_j F_k: out = M v, d/dX = M F', d/dY = -N F', d2/dX2 = M F'',
d/dB = M dF/dB.
"""

from __future__ import annotations

import math
import pathlib
import re

import pytest
import torch
from pykmr.conventions import TABLE, markdown
from pykmr.torch import Genred, Kernel, kernel_product

SIZES = [(1, 1), (7, 33), (16, 16), (33, 7), (67, 67)]  # (N, M): whole packs and ragged tails
DTYPES = [torch.float32, torch.float64]
OPS = sorted({row[0] for row in TABLE})
K = len(OPS)
ROWS = {f: [row for row in TABLE if row[0] == f] for f in OPS}
CALLS = max(len(r) for r in ROWS.values())


def _column(k, f):
    f = re.sub(r"\bB\b", f"Elem(B,{k})", f)
    f = re.sub(r"\bC\b", f"Elem(C,{k})", f)
    return re.sub(r"\bX\b", f"(Elem(X,{k})-Elem(Y,{k}))", f)


def _formula():
    out = _column(0, OPS[0])
    for k, f in enumerate(OPS[1:], 1):
        out = f"Concat({out},{_column(k, f)})"
    return out


ROUTINE = Genred(_formula(), [f"X = Vi({K})", f"Y = Vj({K})", f"B = Vi({K})", f"C = Vi({K})"], "Sum", axis=1)


def rows_of_call(c):
    """The table row in each coordinate for call c (an op with fewer rows repeats its last one)."""
    return [ROWS[f][min(c, len(ROWS[f]) - 1)] for f in OPS]


def evaluate(rows, n, m, dtype):
    """pykmr's out, d/dX, d/dY, d2/dX2, d/dB, d/dC with coordinate k at rows[k]'s point."""
    pt = {v: torch.tensor([r[1].get(v, 1.0) for r in rows], dtype=dtype) for v in "XBC"}
    x, b, c = (pt[v].repeat(n, 1).requires_grad_(True) for v in "XBC")
    y = torch.zeros((m, K), dtype=dtype, requires_grad=True)
    out = ROUTINE(x, y, b, c)
    gx, gy, gb, gc = torch.autograd.grad(out.sum(), [x, y, b, c])
    # second order in X alone (only X requires grad, so that no other mixed kernel compiles)
    x2 = x.detach().requires_grad_(True)
    (gx2,) = torch.autograd.grad(ROUTINE(x2, y.detach(), b.detach(), c.detach()).sum(), x2, create_graph=True)
    (gxx,) = torch.autograd.grad(gx2.sum(), x2)
    return out, gx, gy, gxx, gb, gc


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_singular_points(dtype):
    failures = []
    for c in range(CALLS):
        rows = rows_of_call(c)
        for n, m in SIZES:
            out, gx, gy, gxx, gb, gc = evaluate(rows, n, m, dtype)
            for k, (f, point, v, d1, d2, other, _) in enumerate(rows):
                # products of exact values by small integers: exact in both dtypes
                want = {
                    "value": (out, m * v),
                    "d/dX": (gx, m * d1),
                    "d/dY": (gy, -n * d1),
                    "d2/dX2": (gxx, m * d2),
                    "d/dB": (gb, m * other.get("B", 0.0)),
                    "d/dC": (gc, m * other.get("C", 0.0)),
                }
                for what, (t, w) in want.items():
                    col = t.detach()[:, k]
                    ok = torch.isnan(col).all() if math.isnan(w) else bool((col == w).all())
                    if not ok:
                        failures.append(
                            f"{what} of {f} at {point}, N={n}, M={m}: got {col.unique().tolist()}, want {w}"
                        )
    assert not failures, f"{len(failures)} mismatches ({dtype}):\n" + "\n".join(sorted(set(failures))[:40])


def test_table_matches_torch_where_torch_decides():
    """The rows marked "torch" agree with torch's own autograd (an independent reference)."""
    ref = {
        "Sqrt": torch.sqrt,
        "Rsqrt": torch.rsqrt,
        "Log": torch.log,
        "Inv": torch.reciprocal,
        "Divide(X,B)": lambda x, b: x / b,
        "Divide(B,X)": lambda x, b: b / x,
        "Powf": torch.pow,
        "Clamp": lambda x, b, c: torch.clamp(x, b, c),
        "Pow(X,-1)": lambda x: x**-1,
    }
    checked = 0
    for formula, point, v, d1, d2, other, src in TABLE:
        if src != "torch":
            continue
        key = formula if formula in ref else formula.split("(")[0]
        if key not in ref or (key == "Clamp" and point["B"] > point["C"]):
            continue
        t = {k: torch.tensor(val, dtype=torch.float64, requires_grad=True) for k, val in point.items()}
        if key in ("Rsqrt", "Sqrt") and point["X"] == 0:
            continue  # KeOps's convention, not torch's
        args = [t["X"]] + [t[k] for k in ("B", "C") if k in t]
        val = ref[key](*args)
        grads = torch.autograd.grad(val, args, create_graph=True)
        gxx = (
            torch.autograd.grad(grads[0], t["X"], allow_unused=True, materialize_grads=True)[0]
            if grads[0].requires_grad
            else torch.tensor(0.0, dtype=torch.float64)
        )
        want = [v, d1, d2] + [other[k] for k in ("B", "C") if k in t]
        got = [val, grads[0], gxx] + list(grads[1:])
        for w, g in zip(want, got):
            assert (math.isnan(w) and math.isnan(g.item())) or w == g.item(), (formula, point, want, got)
        checked += 1
    assert checked >= 15


def test_docs_table_is_generated():
    path = pathlib.Path(__file__).resolve().parents[2] / "docs" / "conventions.md"
    assert path.read_text() == markdown(), "docs/conventions.md is stale: python -m pykmr.conventions > it"


# The instances.
def test_norm2_gradient_at_zero_is_zero():
    routine = Genred("Norm2(X-Y)*B", ["X = Vi(3)", "Y = Vj(3)", "B = Vj(1)"], reduction_op="Sum", axis=1)
    for dtype in DTYPES:
        x = torch.zeros(1, 3, dtype=dtype, requires_grad=True)
        y = torch.zeros(1, 3, dtype=dtype)
        b = torch.ones(1, 1, dtype=dtype)
        (gx,) = torch.autograd.grad(routine(x, y, b).sum(), x)
        assert torch.equal(gx, torch.zeros(1, 3, dtype=dtype))


def test_laplacian_kernel_gradient_where_points_coincide():
    """Exp(-Sqrt(G*SqDist(X,Y)))*B at x_i = y_j (the LDDMM Hamiltonian's kernel_product(k, q, q, p)):
    finite, and equal to the gradient with the coinciding pairs dropped (their subgradient is 0)."""
    torch.manual_seed(0)
    q = torch.randn(10, 2, dtype=torch.float64, requires_grad=True)
    p = torch.randn(10, 2, dtype=torch.float64)
    params = {"id": Kernel("laplacian(x,y)"), "gamma": torch.tensor([0.25], dtype=torch.float64)}
    h = (p * kernel_product(params, q, q, p)).sum()
    (g,) = torch.autograd.grad(h, q)
    qd = q.detach().clone().requires_grad_(True)
    d2 = ((qd[:, None, :] - qd[None, :, :]) ** 2).sum(-1)
    off = ~torch.eye(10, dtype=torch.bool)
    k = torch.where(off, torch.exp(-torch.sqrt(torch.where(off, 0.25 * d2, 1.0))), 1.0)
    (want,) = torch.autograd.grad((p * (k @ p)).sum(), qd)
    torch.testing.assert_close(g, want, rtol=1e-10, atol=1e-12)
