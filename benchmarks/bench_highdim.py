"""High dimensions (issue #12): pairs/s vs D of pykmr, faiss-cpu, chunked torch and pykeops, in one run.

Cases (float32, warm, N = M):
  knn        ArgKMin K=10 of SqDist(X,Y)              faiss IndexFlatL2.search; torch: GEMM expansion + topk
  gauss      Sum_j exp(-g |x_i - y_j|^2) b_j           torch: GEMM expansion, exp, matmul
  gauss_bwd  its gradient wrt x (the backward alone)   torch: the same gradient written by hand in GEMMs
Chunked torch works on blocks of 2048 rows, so that its memory stays O(chunk x M), like pykmr's.

The roofline counts one FMA per pair and coordinate (the inner product; SqDist's norms are O(N + M)):
threads x clock x float32 lanes x 2 FMA ports / D pairs/s. Each cell is the best of a few warm calls; a
backend whose first call takes more than --max-call seconds is timed once. Writes a CSV and a PNG of
pairs/s vs D, one panel per case.

    python benchmarks/bench_highdim.py                       # D = 3, 16, 64, 256, 1024
    python benchmarks/bench_highdim.py --dims 64,256 --backends pykmr,torch,faiss
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
    p.add_argument("--dims", default="3,16,64,256,1024")
    p.add_argument("--cases", default="knn,gauss,gauss_bwd")
    p.add_argument("--backends", default="pykmr,faiss,torch,pykeops")
    p.add_argument("--n-knn", type=int, default=20000, help="N = M of the k-NN case")
    p.add_argument("--n-gauss", type=int, default=10000, help="N = M of the Gaussian cases")
    p.add_argument("--keops-max-dim", type=int, default=1024,
                   help="no pykeops column above this D (each new D compiles for about a minute)")
    p.add_argument("--max-call", type=float, default=5.0, help="seconds: slower first calls are timed once")
    p.add_argument("--min-time", type=float, default=0.5, help="seconds of repeated calls per cell")
    p.add_argument("--out", default="benchmarks/out/bench_highdim", help="prefix of the CSV and PNG files")
    return p.parse_args()


ARGS = parse_args()
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import CPU_MHZ, CPU_NAME, LANES, PORTS, import_pykeops, set_threads  # noqa: E402

set_threads(ARGS.threads)  # before the libraries start their pools
import pykmr  # noqa: E402
import pykmr.torch as kmr_torch  # noqa: E402
import torch  # noqa: E402

try:
    import faiss  # noqa: E402

    faiss.omp_set_num_threads(ARGS.threads)
except ImportError as e:
    faiss = None
    print(f"faiss not available ({e}); its column stays empty")
pykeops, keops_torch = import_pykeops()

K = 10
GAMMA = 0.5
CHUNK = 2048


def data(n, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g) / d**0.5
    y = torch.randn(n, d, generator=g) / d**0.5
    b = torch.randn(n, 1, generator=g)
    u = torch.randn(n, 1, generator=g)
    return x, y, b, u


# ---------------------------------------------------------------- chunked torch (the GEMM expansion)

def torch_knn(x, y):
    yn = (y * y).sum(1)
    out = []
    for s in range(0, x.shape[0], CHUNK):
        xc = x[s : s + CHUNK]
        d2 = (xc * xc).sum(1, keepdim=True) + yn - 2 * xc @ y.T
        out.append(d2.topk(K, dim=1, largest=False).indices)
    return torch.cat(out)


def torch_kernel(xc, y, yn):
    d2 = ((xc * xc).sum(1, keepdim=True) + yn - 2 * xc @ y.T).clamp_min_(0)
    return d2.mul_(-GAMMA).exp_()


def torch_gauss(x, y, b):
    yn = (y * y).sum(1)
    return torch.cat([torch_kernel(x[s : s + CHUNK], y, yn) @ b for s in range(0, x.shape[0], CHUNK)])


def torch_gauss_bwd(x, y, b, u):
    """d/dx_i of sum_i u_i sum_j K_ij b_j = -2 g u_i (x_i sum_j W_ij - sum_j W_ij y_j), W = K diag(b)."""
    yn = (y * y).sum(1)
    out = []
    for s in range(0, x.shape[0], CHUNK):
        xc, uc = x[s : s + CHUNK], u[s : s + CHUNK]
        w = torch_kernel(xc, y, yn).mul_(b.T)
        out.append(-2 * GAMMA * uc * (xc * w.sum(1, keepdim=True) - w @ y))
    return torch.cat(out)


# ---------------------------------------------------------------- the calls

def gauss_aliases(d):
    return ["G = Pm(1)", f"X = Vi({d})", f"Y = Vj({d})", "B = Vj(1)"]


def make(backend, case, d, x, y, b, u):
    """A function running one measured call, or None when the backend does not do this case."""
    g = torch.tensor([GAMMA])
    if case == "knn":
        if backend == "faiss":
            if faiss is None:
                return None
            index = faiss.IndexFlatL2(d)
            index.add(y.numpy())
            xs = x.numpy()
            return lambda: index.search(xs, K)
        if backend == "torch":
            return lambda: torch_knn(x, y)
        mod = {"pykmr": kmr_torch, "pykeops": keops_torch}[backend]
        if mod is None:
            return None
        aliases = [f"X = Vi({d})", f"Y = Vj({d})"]
        r = mod.Genred("SqDist(X,Y)", aliases, reduction_op="ArgKMin", axis=1, opt_arg=K)
        kw = {"backend": "CPU"} if backend == "pykeops" else {}
        return lambda: r(x, y, **kw)
    if backend == "faiss":
        return None
    if backend == "torch":
        return (lambda: torch_gauss(x, y, b)) if case == "gauss" else (lambda: torch_gauss_bwd(x, y, b, u))
    mod = {"pykmr": kmr_torch, "pykeops": keops_torch}[backend]
    if mod is None:
        return None
    r = mod.Genred("Exp(-G*SqDist(X,Y))*B", gauss_aliases(d), reduction_op="Sum", axis=1)
    kw = {"backend": "CPU"} if backend == "pykeops" else {}
    if case == "gauss":
        return lambda: r(g, x, y, b, **kw)
    xg = x.clone().requires_grad_(True)
    out = r(g, xg, y, b, **kw)
    return lambda: torch.autograd.grad(out, xg, u, retain_graph=True)[0]


def measure(fn):
    """Best seconds of a few warm calls (one, when the first takes longer than --max-call)."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    if first > ARGS.max_call:
        return first
    best, total, reps = float("inf"), 0.0, 0
    while total < ARGS.min_time or reps < 3:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best, total, reps = min(best, dt), total + dt, reps + 1
        if reps >= 20:
            break
    return best


def warm(backend, case, d):
    """Compiles (JIT) on a small problem first, so that compile time is never measured."""
    small = data(64, d, seed=1)
    fn = make(backend, case, d, *small)
    if fn is not None:
        fn()


def check(case, d, x, y, b, u, got, backend):
    """pykmr against the float64 dense result (values; for the k-NN, the distances its indices point to)."""
    x64, y64 = x.double()[:2000], y.double()
    d2 = torch.cdist(x64, y64) ** 2
    if case == "knn":
        idx = torch.as_tensor(got[1] if isinstance(got, tuple) else got)[:2000].long()
        err = (d2.gather(1, idx) - d2.topk(K, dim=1, largest=False).values).abs().max().item()
        tol = 1e-4
    elif case == "gauss":
        ref = torch.exp(-GAMMA * d2) @ b.double()
        err = ((got[:2000].double() - ref).abs().max() / ref.abs().max()).item()
        tol = 1e-4
    else:
        ref = torch_gauss_bwd(x64, y64, b.double(), u.double()[:2000])
        err = ((got[:2000].double() - ref).abs().max() / ref.abs().max()).item()
        tol = 1e-4
    if not err <= tol:
        print(f"  WARNING {case} D={d} {backend}: error {err:.1e} against float64 (tolerance {tol:.0e})")


def roofline(d):
    return ARGS.threads * CPU_MHZ * 1e6 * LANES * PORTS / d


def main():
    dims = [int(s) for s in ARGS.dims.split(",")]
    backends = ARGS.backends.split(",")
    print(f"CPU: {CPU_NAME}, {CPU_MHZ:.0f} MHz, {LANES} float32 lanes, {ARGS.threads} thread(s); "
          f"load average before: {os.getloadavg()[0]:.2f}")
    print(f"pykmr {pykmr.__version__}, torch {torch.__version__}"
          + (f", faiss {faiss.__version__}" if faiss else "")
          + (f", pykeops {pykeops.__version__}" if keops_torch else ""))
    print("roofline: one FMA per pair and coordinate = threads x clock x lanes x 2 / D pairs/s\n")
    rows = []
    for case in ARGS.cases.split(","):
        n = ARGS.n_knn if case == "knn" else ARGS.n_gauss
        print(f"== {case}, N = M = {n}")
        print(f"{'D':>5} " + " ".join(f"{b + ' pairs/s':>16}" for b in backends)
              + f" {'best peer':>10} {'x peer':>7} {'x keops':>8} {'roofline':>9}")
        for d in dims:
            x, y, b, u = data(n, d)
            times = {}
            for be in backends:
                try:
                    warm(be, case, d)
                    # Rows of x timed: all of them, or the first 1/16 when that many would take more than
                    # --max-call seconds (the time of a call is linear in the rows: pairs/s is the same).
                    if be == "pykeops" and d > ARGS.keops_max_dim:
                        continue
                    probe = make(be, case, d, x[: n // 16], y, b, u[: n // 16])
                    if probe is None:
                        continue
                    t_probe = measure(probe)
                    if t_probe * 16 > ARGS.max_call:
                        times[be] = t_probe * 16
                        print(f"  {be} D={d}: timed on {n // 16} rows (pairs/s extrapolated to all rows)")
                        continue
                    fn = make(be, case, d, x, y, b, u)
                    times[be] = measure(fn)
                    if be == "pykmr":
                        check(case, d, x, y, b, u, fn(), be)
                except Exception as e:  # noqa: BLE001 - report and go on with the other backends
                    print(f"  {be} failed at D={d}: {type(e).__name__}: {str(e)[:200]}")
            pairs = float(n) * n
            peers = {be: t for be, t in times.items() if be in ("faiss", "torch")}
            peer = min(peers, key=peers.get) if peers else None
            kt = times.get("pykmr")
            x_peer = peers[peer] / kt if kt and peer else float("nan")
            x_keops = times["pykeops"] / kt if kt and "pykeops" in times else float("nan")
            frac = pairs / kt / roofline(d) if kt else float("nan")
            cells = " ".join(f"{pairs / times[be]:>16.3e}" if be in times else f"{'-':>16}"
                             for be in backends)
            print(f"{d:>5} {cells} {peer or '-':>10} {x_peer:>7.2f} {x_keops:>8.1f} {frac:>9.1%}", flush=True)
            for be, t in times.items():
                rows.append(dict(case=case, d=d, n=n, backend=be, seconds=t, pairs_per_s=pairs / t,
                                 roofline_pairs_per_s=roofline(d), threads=ARGS.threads))
        print()
    os.makedirs(os.path.dirname(ARGS.out) or ".", exist_ok=True)
    with open(ARGS.out + ".csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()) if rows else ["case"])
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {ARGS.out}.csv")
    plot(rows, dims, backends)


def plot(rows, dims, backends):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not available: no PNG")
        return
    cases = ARGS.cases.split(",")
    fig, axes = plt.subplots(1, len(cases), figsize=(4.5 * len(cases), 4), squeeze=False)
    for ax, case in zip(axes[0], cases):
        for be in backends:
            pts = sorted((r["d"], r["pairs_per_s"]) for r in rows if r["case"] == case and r["backend"] == be)
            if pts:  # one color per backend in every panel
                ax.loglog(*zip(*pts), "o-", label=be, color=f"C{backends.index(be)}")
        ax.loglog(dims, [roofline(d) for d in dims], "k--", lw=1, label="FMA roofline")
        ax.set_title(case, fontsize=10)
        ax.set_xlabel("D")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel(f"pairs/s ({ARGS.threads} threads, float32)")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(ARGS.out + ".png", dpi=110)
    print(f"wrote {ARGS.out}.png")


if __name__ == "__main__":
    sys.exit(main())
