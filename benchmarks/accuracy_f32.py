"""float32 accuracy of pykmr and pykeops side by side (issue 10, section 6), default sum_scheme.

Case 1: the sum over j of 20,000 x 0.1. Case 2: the gradient in x of the LogSumExp over j of
-100 SqDist(x_i, y_j), 40 points uniform in [0,1]^147 (both sides), seeds 0..11 of torch.Generator. Errors
against float64 on the same (float32) inputs: max |error| / max |value| ("max") and the ratio of 2-norms
("norm"). Run: python benchmarks/accuracy_f32.py
"""

from __future__ import annotations

import statistics
import sys

import torch

SEEDS = 12


def cases(Genred):
    out = {}
    b = torch.full((20000, 1), 0.1, dtype=torch.float32)
    x = torch.zeros(1, 1, dtype=torch.float32)
    r = Genred("B+X*0", ["X = Vi(1)", "B = Vj(1)"], reduction_op="Sum", axis=1)
    got = r(x, b).double()
    want = b.double().sum()
    out["sum of 20000 x 0.1"] = ((got - want).abs() / want.abs()).max().item()

    errs = {"max": [], "norm": []}
    for seed in range(SEEDS):
        g = torch.Generator().manual_seed(seed)
        x = torch.rand(40, 147, generator=g)
        y = torch.rand(40, 147, generator=g)
        r = Genred(
            "-G*SqDist(X,Y)", ["G = Pm(1)", "X = Vi(147)", "Y = Vj(147)"], reduction_op="LogSumExp", axis=1
        )
        grads = []
        for dt in (torch.float32, torch.float64):
            xx = x.to(dt).requires_grad_(True)
            lse = r(torch.tensor([100.0], dtype=dt), xx, y.to(dt))
            (gx,) = torch.autograd.grad(lse.sum(), xx)
            grads.append(gx.double())
        errs["max"].append(((grads[0] - grads[1]).abs().max() / grads[1].abs().max()).item())
        errs["norm"].append(((grads[0] - grads[1]).norm() / grads[1].norm()).item())
    for m, v in errs.items():
        out[f"grad LSE -100 SqDist, D=147, {m} error, seed 0"] = v[0]
        out[f"grad LSE -100 SqDist, D=147, {m} error, median of {SEEDS} seeds"] = statistics.median(v)
        out[f"grad LSE -100 SqDist, D=147, {m} error, worst of {SEEDS} seeds"] = max(v)
    return out


def main():
    import pykmr.torch

    rows = {"pykmr": cases(pykmr.torch.Genred)}
    try:
        import pykeops.torch

        rows["pykeops " + __import__("pykeops").__version__] = cases(pykeops.torch.Genred)
    except ImportError as e:
        print(f"pykeops not measured: {e}", file=sys.stderr)
    names = list(next(iter(rows.values())))
    print("| case | " + " | ".join(rows) + " |")
    print("|---|" + "---|" * len(rows))
    for n in names:
        print(f"| {n} | " + " | ".join(f"{rows[k][n]:.2e}" for k in rows) + " |")


if __name__ == "__main__":
    main()
