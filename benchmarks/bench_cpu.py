"""CPU benchmark: pykmr vs dense torch vs pykeops (when importable), side by side in one run.

Cases (float32, N = M, reductions over j): Gaussian D=3 sum forward, its backward (gradient
w.r.t. x), LogSumExp (Sinkhorn's -G*|x-y|^2 + b), Gaussian D=16, ArgKMin K=10 D=3.

For each case and size it prints the best time of a few warm calls, pairs/s (N*M / time), the
ratios pykmr/pykeops and pykmr/torch, and pykmr's fraction of a roofline: the pairs/s limit
cores x clock x vector lanes x vector ports / (vector operations per pair of the formula).
It writes a CSV and a PNG (log-log time vs N, one panel per case).

    python benchmarks/bench_cpu.py                      # 2 threads, N = 1e2 .. 1e5
    python benchmarks/bench_cpu.py --threads 1 --sizes 1000,20000 --max-call 2
    python benchmarks/bench_cpu.py --memory             # also: peak memory of pykmr at N = M = 2e5

A backend skips the larger sizes of a case once a call would take more than --max-call seconds
(extrapolated as N^2), so the whole run takes a few minutes. Dense torch also stops when its
N x M matrices would not fit in --dense-gb.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sizes", default="100,300,1000,3000,10000,20000,30000,100000")
    p.add_argument("--cases", default="gauss,gauss_bwd,lse,gauss16,argkmin")
    p.add_argument("--backends", default="pykmr,pykeops,torch")
    p.add_argument("--max-call", type=float, default=3.0,
                   help="seconds: skip sizes whose call would be longer")
    p.add_argument("--min-time", type=float, default=0.3, help="seconds of repeated calls per measurement")
    p.add_argument("--dense-gb", type=float, default=4.0, help="memory dense torch may use")
    p.add_argument("--out", default="benchmarks/out/bench_cpu", help="prefix of the CSV and PNG files")
    p.add_argument("--memory", action="store_true", help="measure pykmr's peak memory at N = M = 2e5")
    return p.parse_args()


ARGS = parse_args()
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import CPU_MHZ, CPU_NAME, LANES, PORTS, import_pykeops, set_threads  # noqa: E402

set_threads(ARGS.threads)  # before the libraries start their pools
import pykmr  # noqa: E402
import pykmr.torch as kmr_torch  # noqa: E402
import torch  # noqa: E402

pykeops, keops_torch = import_pykeops()

EXP_OPS = 10  # vector ops of a vector exp: range reduction 3, polynomial 6, scaling 1


# ---------------------------------------------------------------- cases

class Case:
    """One benchmark: formula, aliases, reduction, data maker, dense torch version, op count."""

    def __init__(self, name, title, formula, aliases, reduction, dims, ops, dense, opt_arg=None,
                 backward=False, dense_bytes_per_pair=4):
        self.name, self.title, self.formula, self.aliases = name, title, formula, aliases
        self.reduction, self.dims, self.ops, self.dense = reduction, dims, ops, dense
        self.opt_arg, self.backward, self.dense_bytes_per_pair = opt_arg, backward, dense_bytes_per_pair

    def data(self, n, seed=0):
        g = torch.Generator().manual_seed(seed)
        out = []
        for cat, dim in self.dims:
            if cat == "p":
                out.append(torch.tensor([0.5]))
            else:
                out.append(torch.randn(n, dim, generator=g) * (0.5 if dim <= 3 else 0.25))
        return out


def dense_gauss(g, x, y, b):
    return torch.exp(-g * torch.cdist(x, y) ** 2) @ b


def dense_lse(g, x, y, b):
    return torch.logsumexp(-g * torch.cdist(x, y) ** 2 + b.view(1, -1), dim=1, keepdim=True)


def dense_argkmin(x, y):
    return torch.topk(torch.cdist(x, y) ** 2, 10, dim=1, largest=False).indices


GAUSS_ALIASES = ["G = Pm(1)", "X = Vi(3)", "Y = Vj(3)", "B = Vj(1)"]
GAUSS_DIMS = [("p", 1), ("i", 3), ("j", 3), ("j", 1)]
CASES = {
    "gauss": Case("gauss", "Gaussian D=3, sum", "Exp(-G*SqDist(X,Y))*B", GAUSS_ALIASES, "Sum", GAUSS_DIMS,
                  # 3 sub, 3 fma, x g, exp, x b, accumulate
                  ops=3 + 3 + 1 + EXP_OPS + 1 + 1, dense=dense_gauss),
    "gauss_bwd": Case("gauss_bwd", "Gaussian D=3, gradient wrt x", "Exp(-G*SqDist(X,Y))*B", GAUSS_ALIASES,
                      "Sum",
                      GAUSS_DIMS, backward=True, dense=dense_gauss, dense_bytes_per_pair=12,
                      # forward part, x u x 2g, 3 fma (x - y) x c, 3 accumulates
                      ops=3 + 3 + 1 + EXP_OPS + 1 + 2 + 3 + 3),
    "lse": Case("lse", "LogSumExp -G|x-y|^2+b, D=3", "-G*SqDist(X,Y)+B", GAUSS_ALIASES, "LogSumExp",
                GAUSS_DIMS, dense=dense_lse,
                # 3 sub, 3 fma, fma, max test, exp, 2 selects, accumulate
                ops=3 + 3 + 1 + 1 + EXP_OPS + 2 + 1),
    "gauss16": Case("gauss16", "Gaussian D=16, sum", "Exp(-G*SqDist(X,Y))*B",
                    ["G = Pm(1)", "X = Vi(16)", "Y = Vj(16)", "B = Vj(1)"], "Sum",
                    [("p", 1), ("i", 16), ("j", 16), ("j", 1)], dense=dense_gauss,
                    ops=16 + 16 + 1 + EXP_OPS + 1 + 1),
    "argkmin": Case("argkmin", "ArgKMin K=10, D=3", "SqDist(X,Y)", ["X = Vi(3)", "Y = Vj(3)"], "ArgKMin",
                    [("i", 3), ("j", 3)], opt_arg=10, dense=dense_argkmin,
                    # 3 sub, 3 fma, compare with the K-th best
                    ops=3 + 3 + 1),
}


# ---------------------------------------------------------------- machine (machine.py)

def roofline(case, threads):
    return threads * CPU_MHZ * 1e6 * LANES * PORTS / case.ops


# ---------------------------------------------------------------- backends

def make_routine(backend, case):
    kw = dict(reduction_op=case.reduction, axis=1)
    if case.opt_arg is not None:
        kw["opt_arg"] = case.opt_arg
    if backend == "pykmr":
        return kmr_torch.Genred(case.formula, case.aliases, **kw)
    if backend == "pykeops":
        return keops_torch.Genred(case.formula, case.aliases, **kw)
    return case.dense


def make_call(backend, case, routine, args):
    """A function running one measured call (the backward pass alone for backward cases)."""
    if not case.backward:
        if backend == "torch":
            return lambda: routine(*args)
        return lambda: routine(*args, backend="CPU") if backend == "pykeops" else routine(*args)
    g, x, y, b = args
    x = x.clone().requires_grad_(True)
    out = routine(g, x, y, b) if backend != "pykeops" else routine(g, x, y, b, backend="CPU")
    u = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))  # the same for every backend
    return lambda: torch.autograd.grad(out, x, u, retain_graph=True)[0]


def measure(fn, min_time):
    fn()  # warm: compilation, caches, thread pools
    best, total, reps = float("inf"), 0.0, 0
    while total < min_time or reps < 3:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best, total, reps = min(best, dt), total + dt, reps + 1
        if reps >= 50:
            break
    return best


def check(case, ref, got):
    if case.reduction == "ArgKMin":
        return  # ties may order differently; pykmr's indices are tested elsewhere
    ref, got = ref.double().reshape(-1), got.double().reshape(-1)
    err = ((ref - got).abs().max() / ref.abs().max().clamp_min(1e-30)).item()
    if err > 1e-3:
        print(f"  WARNING {case.name}: pykmr and the reference differ by {err:.1e} (relative)")


# ---------------------------------------------------------------- run

def main():
    sizes = [int(float(s)) for s in ARGS.sizes.split(",")]
    backends = [b for b in ARGS.backends.split(",") if b != "pykeops" or keops_torch is not None]
    cases = [CASES[c] for c in ARGS.cases.split(",")]
    load = os.getloadavg()[0]
    print(f"CPU: {CPU_NAME}, {CPU_MHZ:.0f} MHz, {LANES} float32 lanes, {ARGS.threads} thread(s); "
          f"load average before: {load:.2f}")
    print(f"pykmr {pykmr.__version__} ({pykmr.num_precompiled()} precompiled kernels), "
          f"torch {torch.__version__}"
          + (f", pykeops {pykeops.__version__}" if keops_torch is not None else ""))
    print(f"roofline = threads x clock x lanes x {PORTS} ports / ops per pair "
          f"(exp counted as {EXP_OPS} ops)\n")

    rows = []
    hdr = (f"{'case':<10} {'N=M':>7} " + " ".join(f"{b + ' s':>11} {b + ' pairs/s':>15}" for b in backends)
           + f" {'x keops':>8} {'x torch':>8} {'roofline':>9}")
    for case in cases:
        print(f"== {case.title} (ops/pair {case.ops}, roofline {roofline(case, ARGS.threads):.3g} pairs/s; "
              f"load average {os.getloadavg()[0]:.2f})")
        print(hdr)
        stopped = {b: False for b in backends}
        last = {b: None for b in backends}
        routines = {b: make_routine(b, case) for b in backends}
        for n in sizes:
            args = case.data(n)
            times = {}
            for b in backends:
                if stopped[b]:
                    continue
                if last[b] is not None and last[b][1] * (n / last[b][0]) ** 2 > ARGS.max_call:
                    stopped[b] = True
                    continue
                if b == "torch" and n * n * case.dense_bytes_per_pair * 3 > ARGS.dense_gb * 2**30:
                    stopped[b] = True
                    continue
                try:
                    call = make_call(b, case, routines[b], args)
                    times[b] = measure(call, ARGS.min_time)
                    last[b] = (n, times[b])
                except Exception as e:  # noqa: BLE001 - report and go on with the other backends
                    print(f"  {b} failed at N={n}: {type(e).__name__}: {str(e)[:200]}")
                    stopped[b] = True
            if "pykmr" in times and "torch" in times and n <= 3000:
                check(case, make_call("torch", case, routines["torch"], args)(),
                      make_call("pykmr", case, routines["pykmr"], args)())
            pairs = float(n) * n
            kt = times.get("pykmr")
            r_keops = times["pykeops"] / kt if kt and "pykeops" in times else float("nan")
            r_torch = times["torch"] / kt if kt and "torch" in times else float("nan")
            frac = pairs / kt / roofline(case, ARGS.threads) if kt else float("nan")
            cells = " ".join(f"{times[b]:>11.3e} {pairs / times[b]:>15.3e}" if b in times
                             else f"{'-':>11} {'-':>15}" for b in backends)
            print(f"{case.name:<10} {n:>7} {cells} {r_keops:>8.1f} {r_torch:>8.1f} {frac:>9.1%}")
            for b, t in times.items():
                rows.append(dict(case=case.name, n=n, backend=b, seconds=t, pairs_per_s=pairs / t,
                                 speedup_vs_pykeops=r_keops if b == "pykmr" else "",
                                 speedup_vs_torch=r_torch if b == "pykmr" else "",
                                 roofline_pairs_per_s=roofline(case, ARGS.threads),
                                 roofline_fraction=frac if b == "pykmr" else "", threads=ARGS.threads))
        print()

    os.makedirs(os.path.dirname(ARGS.out) or ".", exist_ok=True)
    with open(ARGS.out + ".csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()) if rows else ["case"])
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {ARGS.out}.csv")
    plot(rows, cases, backends)
    if ARGS.memory:
        memory_check()


def plot(rows, cases, backends):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not available: no PNG")
        return
    fig, axes = plt.subplots(1, len(cases), figsize=(4.2 * len(cases), 4), squeeze=False)
    for ax, case in zip(axes[0], cases):
        for b in backends:
            pts = sorted((r["n"], r["seconds"]) for r in rows if r["case"] == case.name and r["backend"] == b)
            if pts:
                ax.loglog(*zip(*pts), "o-", label=b)
        ns = sorted({r["n"] for r in rows if r["case"] == case.name})
        if ns:  # the roofline as a time: N^2 / limit
            ax.loglog(ns, [n * n / roofline(case, ARGS.threads) for n in ns], "k--", lw=1, label="roofline")
        ax.set_title(case.title, fontsize=9)
        ax.set_xlabel("N = M")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel(f"seconds ({ARGS.threads} threads, float32)")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(ARGS.out + ".png", dpi=110)
    print(f"wrote {ARGS.out}.png")


def memory_check(n=200_000):
    """Peak resident memory added by one pykmr Gaussian convolution at N = M = n (data excluded)."""
    import resource

    case = CASES["gauss"]
    args = case.data(n)
    routine = make_routine("pykmr", case)
    routine(*[a[:10] for a in args])  # libraries loaded, kernel found
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    routine(*args)
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"memory: Gaussian N=M={n}: {dt:.2f} s, peak RSS grew by {(peak - before) / 1024:.1f} MB "
          f"(inputs {sum(a.numel() for a in args) * 4 / 2**20:.1f} MB, allocated before)")


if __name__ == "__main__":
    sys.exit(main())
