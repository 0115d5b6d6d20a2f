"""Block-sparse Gaussian convolution (clusters, KeOps's ranges) vs the full reduction, pykmr and pykeops
(when importable) with the same ranges, on the CPU: the speed-up from skipping blocks.

    python benchmarks/bench_ranges.py [--n 200000] [--clusters 400] [--repeat 3]

Points are drawn around cluster centers, sorted by cluster; a pair of clusters is kept when their centers
are closer than --radius (the rest is skipped). The kept fraction of the N x M matrix is printed with the
times (best of --repeat, the first call excluded: compile and warm-up).
"""

import argparse
import time

import torch


def clusters(n, nc, d, radius, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.rand(nc, d, generator=g) * 10
    labels, _ = torch.sort(torch.randint(nc, (n,), generator=g))
    x = centers[labels] + 0.05 * torch.randn(n, d, generator=g)
    counts = torch.bincount(labels, minlength=nc)
    ends = counts.cumsum(0)
    r = torch.stack([ends - counts, ends], dim=1)
    keep = torch.cdist(centers, centers) < radius
    rows, cols = keep.nonzero(as_tuple=True)
    cols_t, rows_t = keep.t().nonzero(as_tuple=True)
    ranges = (r, keep.sum(1).cumsum(0), r[cols], r, keep.sum(0).cumsum(0), r[rows_t])
    kept = float(((counts[:, None] * counts[None, :]) * keep).sum()) / n**2
    return x, tuple(t.int() for t in ranges), kept


def best(fn, repeat):
    fn()  # compile / warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200000)
    ap.add_argument("--clusters", type=int, default=400)
    ap.add_argument("--radius", type=float, default=1.5)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    x, ranges, kept = clusters(a.n, a.clusters, 3, a.radius)
    b = torch.randn(a.n, 1)
    g = torch.tensor([4.0])
    formula = "Exp(-G*SqDist(X,Y))*B"
    aliases = ["G = Pm(1)", "X = Vi(3)", "Y = Vj(3)", "B = Vj(1)"]
    print(f"N = M = {a.n}, {a.clusters} clusters, kept fraction of the matrix {kept:.4f}")

    from pykmr.torch import Genred

    conv = Genred(formula, aliases, axis=1)
    t_full = best(lambda: conv(g, x, x, b), a.repeat)
    t_sparse = best(lambda: conv(g, x, x, b, ranges=ranges), a.repeat)
    print(
        f"pykmr   full {t_full * 1e3:9.1f} ms   ranges {t_sparse * 1e3:9.1f} ms   "
        f"speed-up {t_full / t_sparse:6.1f}x"
    )
    try:
        import pykeops

        pykeops.set_verbose(False)
        from pykeops.torch import Genred as KGenred
    except ImportError:
        print("pykeops: not importable, skipped")
        return
    kconv = KGenred(formula, aliases, axis=1)
    k_full = best(lambda: kconv(g, x, x, b, backend="CPU"), a.repeat)
    k_sparse = best(lambda: kconv(g, x, x, b, backend="CPU", ranges=ranges), a.repeat)
    print(
        f"pykeops full {k_full * 1e3:9.1f} ms   ranges {k_sparse * 1e3:9.1f} ms   "
        f"speed-up {k_full / k_sparse:6.1f}x"
    )
    print(f"pykmr vs pykeops with ranges: {k_sparse / t_sparse:.1f}x faster")


if __name__ == "__main__":
    main()
