"""GPU timings: pykmr (CUDA) against dense torch and, when importable, pykeops.

    python benchmarks/bench_gpu.py [--sizes 1e4,1e5,1e6] [--out DIR] [--max-seconds 120]

Cases, float32, N = M: Gaussian convolution D=3 (b of dim 1), forward and forward+backward (gradient
with respect to x); LogSumExp of -G|x-y|^2 + b; ArgKMin K=10 of |x-y|^2. Each time is the median of
repeated runs after one warm-up (which compiles), with torch.cuda.synchronize() around it. Writes
bench_gpu.csv and bench_gpu.md under --out and prints the table, with the issue's targets.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time

import torch
from pykmr.torch import Genred

# Targets of issue 4 (H100/H200): (case, N) -> seconds.
TARGETS = {  # forward 0.4 s and gradient 0.6 s at 1e6: forward+backward 1.0 s
    ("gauss_fwd", 10**6): 0.4,
    ("gauss_fwd_bwd", 10**6): 1.0,
    ("lse", 10**6): 0.6,
    ("gauss_fwd", 10**4): 3e-4,
}

GAUSS = ("Exp(-G*SqDist(X,Y))*B", ["G = Pm(1)", "X = Vi(3)", "Y = Vj(3)", "B = Vj(1)"])
LSE = ("-G*SqDist(X,Y)+B", ["G = Pm(1)", "X = Vi(3)", "Y = Vj(3)", "B = Vj(1)"])
KNN = ("SqDist(X,Y)", ["X = Vi(3)", "Y = Vj(3)"])


def timed(fn, budget):
    """Median seconds of fn() (synchronized), after one warm-up run; fewer repeats for slow runs."""
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    first = time.perf_counter() - t0
    reps = 3 if first > 0.1 else 10 if first > 0.01 else 50
    reps = max(1, min(reps, int(budget / max(first, 1e-6))))
    times = []
    for _ in range(reps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def data(n, seed=0):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    x = torch.rand(n, 3, device="cuda", generator=gen)
    y = torch.rand(n, 3, device="cuda", generator=gen)
    b = torch.rand(n, 1, device="cuda", generator=gen)
    return x, y, b


def pykmr_cases(n):
    x, y, b = data(n)
    g = torch.tensor([1.0 / 0.1**2], device="cuda")  # sigma = 0.1 in the unit cube
    conv = Genred(*GAUSS, axis=1)
    lse = Genred(*LSE, "LogSumExp", axis=1)
    knn = Genred(*KNN, "ArgKMin", axis=1, opt_arg=10)
    xr = x.clone().requires_grad_()

    def fwd_bwd():
        out = conv(g, xr, y, b)
        (gx,) = torch.autograd.grad(out.sum(), xr)
        return gx

    return {
        "gauss_fwd": lambda: conv(g, x, y, b),
        "gauss_fwd_bwd": fwd_bwd,
        "lse": lambda: lse(g, x, y, b),
        "argkmin10": lambda: knn(x, y),
    }


def dense_cases(n):
    x, y, b = data(n)
    g = 1.0 / 0.1**2
    xr = x.clone().requires_grad_()

    def gauss(xx):
        return torch.exp(-g * torch.cdist(xx, y) ** 2) @ b

    def fwd_bwd():
        (gx,) = torch.autograd.grad(gauss(xr).sum(), xr)
        return gx

    return {
        "gauss_fwd": lambda: gauss(x),
        "gauss_fwd_bwd": fwd_bwd,
        "lse": lambda: torch.logsumexp(-g * torch.cdist(x, y) ** 2 + b.T, dim=1, keepdim=True),
        "argkmin10": lambda: torch.topk(torch.cdist(x, y), 10, dim=1, largest=False).indices,
    }


def keops_cases(n):
    try:
        from pykeops.torch import Genred as KGenred
    except Exception:  # not installed, or it cannot compile here
        return None
    x, y, b = data(n)
    g = torch.tensor([1.0 / 0.1**2], device="cuda")
    conv = KGenred(GAUSS[0], GAUSS[1], axis=1)
    lse = KGenred(LSE[0], LSE[1], "LogSumExp", axis=1)
    knn = KGenred(KNN[0], KNN[1], "ArgKMin", axis=1, opt_arg=10)
    xr = x.clone().requires_grad_()

    def fwd_bwd():
        (gx,) = torch.autograd.grad(conv(g, xr, y, b).sum(), xr)
        return gx

    return {
        "gauss_fwd": lambda: conv(g, x, y, b),
        "gauss_fwd_bwd": fwd_bwd,
        "lse": lambda: lse(g, x, y, b),
        "argkmin10": lambda: knn(x, y),
    }


def dense_fits(n):
    free, _ = torch.cuda.mem_get_info()
    return 4.0 * n * n * 4 < 0.8 * free  # a few [N, N] float32 temporaries


def run(sizes, out_dir, max_seconds):
    rows = []
    dev = torch.cuda.get_device_name()
    print(f"# GPU: {dev}; torch {torch.__version__}", flush=True)
    for n in sizes:
        methods = {"pykmr": pykmr_cases(n)}
        methods["dense torch"] = dense_cases(n) if dense_fits(n) else None
        k = keops_cases(n)
        if k is not None:
            methods["pykeops"] = k
        for case in ("gauss_fwd", "gauss_fwd_bwd", "lse", "argkmin10"):
            for method, cases in methods.items():
                secs, note = None, ""
                if cases is None:
                    note = "skipped: the N x M matrix does not fit"
                else:
                    try:
                        secs = timed(cases[case], max_seconds / 10)
                    except torch.OutOfMemoryError:
                        note = "out of memory"
                        torch.cuda.empty_cache()
                    except Exception as e:  # a failing method must not stop the table
                        note = f"error: {type(e).__name__}: {str(e).splitlines()[0][:100]}"
                target = TARGETS.get((case, n)) if method == "pykmr" else None
                rows.append(
                    {
                        "case": case,
                        "n": n,
                        "method": method,
                        "seconds": secs,
                        "target": target,
                        "meets_target": None if target is None or secs is None else secs <= target,
                        "note": note,
                    }
                )
                shown = f"{secs:.6f} s" if secs is not None else note
                flag = (
                    ""
                    if target is None or secs is None
                    else (" (target met)" if secs <= target else f" (target {target} s NOT met)")
                )
                print(f"{case:14s} N=M={n:.0e}  {method:12s} {shown}{flag}", flush=True)
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "bench_gpu.csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        with open(os.path.join(out_dir, "bench_gpu.md"), "w") as f:
            f.write(f"GPU: {dev}, float32, N = M, median seconds\n\n")
            f.write("| case | N=M | method | seconds | target |\n|---|---|---|---|---|\n")
            for r in rows:
                s = f"{r['seconds']:.6f}" if r["seconds"] is not None else r["note"]
                t = (
                    ""
                    if r["target"] is None
                    else f"{r['target']} ({'met' if r['meets_target'] else 'NOT met'})"
                )
                f.write(f"| {r['case']} | {r['n']:.0e} | {r['method']} | {s} | {t} |\n")
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1e4,1e5,1e6")
    p.add_argument("--out", default=None, help="folder for bench_gpu.csv and bench_gpu.md")
    p.add_argument("--max-seconds", type=float, default=120.0, help="rough budget per size")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_gpu: torch sees no CUDA GPU", file=sys.stderr)
        return 2
    run([int(float(s)) for s in args.sizes.split(",")], args.out, args.max_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
