"""pykmr.dask on a LocalCluster: time and parallel efficiency for 1, 2, ... single-threaded workers.

    python benchmarks/bench_dask.py                       # N = M = 4e4, workers 1 and 2
    python benchmarks/bench_dask.py --n 100000 --workers 1 2 4 --chunks 16

For each case (a float32 Gaussian convolution, D = 3; a float32 k-NN search, ArgKMin K = 10, D = 3) it
times the single-process pykmr.numpy call on one thread (the baseline), then pykmr.dask on a LocalCluster of
w worker processes with one thread each (KMR_NUM_THREADS=1 in the workers), inputs already on the workers
(client.persist), best of --repeat runs after a warm-up. Efficiency = T(baseline) / (w * T(w workers)): 1 is
perfect scaling, the gap is Dask's per-task overhead, the merges and (on a shared machine) other load.
Prints a table and writes benchmarks/out/bench_dask.csv.
"""

from __future__ import annotations

import argparse
import csv
import os
import time

import numpy as np

CASES = {
    "gauss_sum": ("Exp(-G*SqDist(X,Y))*B", ["G = Pm(1)", "X = Vi(3)", "Y = Vj(3)", "B = Vj(1)"], "Sum", None),
    "knn_argkmin": ("SqDist(X,Y)", ["X = Vi(3)", "Y = Vj(3)"], "ArgKMin", 10),
}


def inputs(case, n, rng):
    x, y = rng.random((n, 3), np.float32), rng.random((n, 3), np.float32)
    if case == "gauss_sum":
        return [np.array([10.0], np.float32), x, y, rng.random((n, 1), np.float32)]
    return [x, y]


def best_of(fn, repeat):
    fn()  # warm-up: kernel loading, worker imports
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=40_000, help="N = M (default 4e4)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts (default 1 2)")
    p.add_argument("--chunks", type=int, default=8, help="row chunks per axis (default 8: 64 tasks)")
    p.add_argument("--repeat", type=int, default=2, help="timed runs per point (best is kept)")
    p.add_argument("--cases", nargs="+", default=sorted(CASES), choices=sorted(CASES))
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "out"))
    args = p.parse_args()

    import dask.array as da
    import pykmr
    import pykmr.numpy as kn
    from dask.distributed import Client, LocalCluster
    from pykmr.dask import Genred

    n, rng = args.n, np.random.default_rng(0)
    chunk = -(-n // args.chunks)
    data = {case: inputs(case, n, rng) for case in args.cases}
    rows = []

    pykmr.set_num_threads(1)
    base = {}
    for case in args.cases:
        f, aliases, red, k = CASES[case]
        routine = kn.Genred(f, aliases, red, axis=1, opt_arg=k)
        base[case] = best_of(lambda r=routine, a=data[case]: r(*a), args.repeat)
        rows.append(dict(case=case, workers=0, seconds=base[case], efficiency=1.0))
        rate = n * n / base[case] / 1e9
        print(f"{case:12s} single process, 1 thread: {base[case]:7.2f} s  ({rate:.2f} Gpairs/s)")

    for w in args.workers:
        env = {"KMR_NUM_THREADS": "1"}
        with LocalCluster(n_workers=w, threads_per_worker=1, processes=True, dashboard_address=None,
                          env=env) as cluster, Client(cluster) as client:  # fmt: skip
            for case in args.cases:
                f, aliases, red, k = CASES[case]
                routine = Genred(f, aliases, red, axis=1, opt_arg=k)
                arrays = [a if a.ndim == 1 else client.persist(da.from_array(a, chunks=(chunk, a.shape[1])))
                          for a in data[case]]  # fmt: skip
                t = best_of(lambda r=routine, a=arrays: r(*a).compute(), args.repeat)
                eff = base[case] / (w * t)
                rows.append(dict(case=case, workers=w, seconds=t, efficiency=eff))
                print(f"{case:12s} {w} worker(s):               {t:7.2f} s  ({n * n / t / 1e9:.2f} Gpairs/s, "
                      f"efficiency {eff:.2f})")  # fmt: skip

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "bench_dask.csv")
    with open(path, "w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=["case", "n", "chunks", "workers", "seconds", "efficiency"])
        wr.writeheader()
        for r in rows:
            wr.writerow(dict(r, n=n, chunks=args.chunks))
    print(f"wrote {path} (workers = 0: the single-process baseline)")


if __name__ == "__main__":
    main()
