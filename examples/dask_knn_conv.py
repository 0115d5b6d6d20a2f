"""
Kernel reductions on a Dask cluster: a Gaussian convolution and a k-NN graph
============================================================================

``pykmr.dask.Genred`` takes the arguments of ``pykmr.numpy.Genred`` as dask arrays and returns a dask array.
Each pair (chunk of output rows, chunk of reduced rows) is one task that returns the reduction's partial
state; the states of a row chunk are merged by Dask's tree reduction, then finalised. Here, on a
``LocalCluster`` of worker processes (a real cluster only changes the ``Client``, see ``docs/dask.md``):

* a **Gaussian convolution** ``a_i = sum_j exp(-|x_i - x_j|^2 / (2 s^2)) b_j`` of N points in R^3;
* the **k-NN graph** of the same points: the K nearest neighbours of every point (``ArgKMin`` of
  ``SqDist``), with global int64 indices, and the histogram of the graph's in-degrees.

The full size is N = 2e6 points (4e12 pairs per reduction: hours on a 2-core machine, minutes on a cluster);
``--small`` uses 2e4 points. Both results are checked against the single-process ``pykmr.numpy`` call on a
random subset of rows.
"""

# %%
import argparse
import os
import time

import dask.array as da
import matplotlib
import numpy as np
import pykmr.numpy as kn
from dask.distributed import Client, LocalCluster
from pykmr.dask import Genred

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

K, SIGMA = 10, 0.05
G = np.array([1 / (2 * SIGMA**2)], np.float32)
GAUSS = ("Exp(-G*SqDist(X,Y))*B", ["G = Pm(1)", "X = Vi(3)", "Y = Vj(3)", "B = Vj(1)"])
SQDIST = ("SqDist(X,Y)", ["X = Vi(3)", "Y = Vj(3)"])


# %%
# Points: a mixture of three anisotropic Gaussian blobs in R^3, float32. On a real cluster the workers would
# read their chunks themselves (``da.from_zarr``...); here they come from the client's memory.
def make_points(n, rng):
    centers = rng.uniform(-1, 1, (3, 3))
    labels = rng.integers(0, 3, n)
    x = (centers[labels] + rng.normal(0, 0.15, (n, 3)) * [1.0, 0.5, 0.25]).astype(np.float32)
    return x, rng.uniform(0, 1, (n, 1)).astype(np.float32)


# %%
# The Gaussian convolution is a Sum over j (axis=1). The parameter G = 1 / (2 s^2) becomes one key that
# every task reads (shipped once per worker).
def gaussian_convolution(x, b):
    conv = Genred(*GAUSS, reduction_op="Sum", axis=1)
    return conv(G, x, x, b)  # a lazy dask array [N, 1]


# %%
# The k-NN graph: the K + 1 nearest points of each point (the first is the point itself), int64 global
# indices; the partial K-lists of the column chunks are merged by Dask's tree reduction.
def knn_graph(x):
    knn = Genred(*SQDIST, reduction_op="ArgKMin", axis=1, opt_arg=K + 1)
    return knn(x, x)[:, 1:]


# %%
# Check on 200 random rows against the single-process ``pykmr.numpy`` call on those rows (all N columns):
# the convolution within float32 round-off; the neighbours at exactly the reference's distances.
def check(x, b, a, nbrs, rng):
    n = x.shape[0]
    rows = rng.choice(n, min(200, n), replace=False)
    a_ref = kn.Genred(*GAUSS, axis=1)(G, x[rows], x, b)
    err = np.abs(a[rows] - a_ref).max() / np.abs(a_ref).max()
    ref = kn.Genred(*SQDIST, reduction_op="ArgKMin", axis=1, opt_arg=K + 1)(x[rows], x)[:, 1:]
    d_got = ((x[rows, None] - x[nbrs[rows]]) ** 2).sum(-1)
    d_ref = ((x[rows, None] - x[ref]) ** 2).sum(-1)
    assert err < 1e-5, f"convolution: relative error {err:.2e}"
    assert np.array_equal(np.sort(d_got, 1), np.sort(d_ref, 1)), "k-NN: other neighbours than the reference"
    assert nbrs.dtype == np.int64 and nbrs.min() >= 0 and nbrs.max() < n
    print(f"check passed (convolution relative error {err:.1e}, k-NN distances equal on {len(rows)} rows)")


# %%
# The figure: the two timings, and the in-degrees of the k-NN graph (how many points count a point among
# their K nearest; the mean is K, dense blob cores have more, outliers none).
def plot(t_conv, t_knn, nbrs, workers, path):
    n = nbrs.shape[0]
    indeg = np.bincount(nbrs.ravel(), minlength=n)
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 4))
    ax0.bar(["Gaussian conv.", f"k-NN graph (K={K})"], [t_conv, t_knn], color=["C0", "C1"])
    ax0.set_ylabel("seconds")
    ax0.set_title(f"N = {n}, {workers} worker processes")
    ax1.hist(indeg, bins=np.arange(indeg.max() + 2) - 0.5, color="C2")
    ax1.set_xlabel("in-degree")
    ax1.set_ylabel("points")
    ax1.set_yscale("log")
    ax1.set_title(f"k-NN graph: in-degrees (mean {indeg.mean():.1f})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


# %%
# The run: a LocalCluster of worker processes with one thread each, and one libkmr thread per task
# (KMR_NUM_THREADS=1) so that workers share the cores instead of each taking all of them. A real cluster
# only changes these two lines (``Client("tcp://scheduler:8786")``, see docs/dask.md). Worker processes
# re-import this file, hence the ``__main__`` guard.
def main():
    parser = argparse.ArgumentParser(description=(__doc__ or "pykmr example").strip().splitlines()[0])
    parser.add_argument("--small", action="store_true", help="2e4 points instead of 2e6 (CI)")
    parser.add_argument("--out", default=".", help="folder for the PNG figure")
    parser.add_argument("--workers", type=int, default=2, help="worker processes of the LocalCluster")
    parser.add_argument("--n", type=int, default=None, help="number of points (overrides --small)")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    n = args.n or (20_000 if args.small else 2_000_000)
    chunk = max(-(-n // 8), K + 1)  # 8 row chunks: 64 (i, j) tasks, 32 per worker with 2 workers
    rng = np.random.default_rng(0)
    x_np, b_np = make_points(n, rng)

    env = {"KMR_NUM_THREADS": "1"}
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      env=env) as cluster, Client(cluster) as client:  # fmt: skip
        x = client.persist(da.from_array(x_np, chunks=(chunk, 3)))  # the data lives on the workers now
        b = client.persist(da.from_array(b_np, chunks=(chunk, 1)))
        print(f"N = {n} points, chunks of {chunk} rows, {args.workers} workers")
        t0 = time.perf_counter()
        a = gaussian_convolution(x, b).compute()
        t_conv = time.perf_counter() - t0
        print(f"Gaussian convolution: {t_conv:.2f} s ({n * n / t_conv / 1e9:.2f} Gpairs/s)")
        t0 = time.perf_counter()
        nbrs = knn_graph(x).compute()
        t_knn = time.perf_counter() - t0
        print(f"k-NN graph (K = {K}): {t_knn:.2f} s ({n * n / t_knn / 1e9:.2f} Gpairs/s)")
    check(x_np, b_np, a, nbrs, rng)
    plot(t_conv, t_knn, nbrs, args.workers, os.path.join(args.out, "dask_knn_conv.png"))


if __name__ == "__main__":
    main()
