"""pykmr.dask on a real cluster of processes: dask.distributed.LocalCluster(n_workers=2, threads_per_worker=1,
processes=True), started and stopped by this module. Results equal the single-process pykmr.numpy call (Sum,
LogSumExp, SumSoftMaxWeight within the round-off of another summation order; Min/Max/K-min values within a
few ulps; every index exactly): every reduction on both axes (float64, small), each state layout at
N = M = 2e4 in uneven chunks on both axes (float32 and float64), and after a worker is killed in the middle
of a computation. The graph's shape (one task per chunk pair, a tree of merges, parameters as one key) and
the errors are checked without a cluster."""

from __future__ import annotations

import functools
import os
import pickle
import signal
import time

import numpy as np
import pykmr.numpy as kn
import pytest
from helpers import warm_up

da = pytest.importorskip("dask.array", reason="dask[distributed] is a test dependency (requirements-dev.txt)")
distributed = pytest.importorskip("distributed", reason="dask[distributed] is a test dependency")
from pykmr.dask import Genred  # noqa: E402  (after the importorskip)

K = 3
XY = ["X = Vi(2)", "Y = Vj(2)", "B = Vj(2)"]  # the formulas of test_reductions.py: their kernels are shared
VEC, SCAL, WEIGHTS = "Sin(X-2*Y)", "-SqDist(X,Y)", "Exp(X-Y)*B"
CASES = ["Sum", "Min", "Max", "ArgMin", "ArgMax", "Min_ArgMin", "Max_ArgMax", "KMin", "ArgKMin",
         "KMin_ArgKMin", "LogSumExp", "LogSumExp_w", "SumSoftMaxWeight"]  # fmt: skip
# Every reduction on both axes in float64 (the kernels of test_reductions.py: compiled once per session);
# float32 runs at 2e4 on the precompiled kernels (BIG: sums, LogSumExp, K-lists). A kernel compile takes
# 10-20 s on 2 busy cores, so this module adds only the few that test_reductions.py does not have.
SMALL_CASES = [(r, a, "float64") for r in CASES for a in (1, 0)]
SUMMED = ("Sum", "LogSumExp", "LogSumExp_w", "SumSoftMaxWeight")  # order-dependent round-off
# Named tolerances, relative to the largest magnitude of the result: the single-process call and the merged
# chunks sum in different orders (float32 sums of 2e4 terms agree to a few 1e-6).
RTOL = {"float32": 2e-5, "float64": 1e-12}
# Min/Max/K-min values: the kernel evaluates a pair in a SIMD body or a tail depending on where its j falls
# in the chunk, which can differ by an ulp (FMA contraction), so values are compared within 4 ulps (seen: 1).
SELECT_ULPS = 4

# Uneven chunks on both axes (one tiny): N = M = 2e4 with the cheap, precompiled SqDist kernels; every
# reduction of the Sin formula at N, M = 600, 500 (a Sin kernel of 2e4 x 2e4 takes ~10 s on 2 cores).
N = M = 20_000
ROW_CHUNKS = (7_000, 3, 9_000, 3_997)
COL_CHUNKS = (5_000, 11_000, 1_000, 3_000)
SMALL = (600, 500, (200, 3, 300, 97), (150, 1, 250, 99))
GAUSS = ("Exp(-G*SqDist(X,Y))*B", ["G = Pm(1)", "X = Vi(3)", "Y = Vj(3)", "B = Vj(1)"])
SQDIST = ("SqDist(X,Y)", ["X = Vi(3)", "Y = Vj(3)"])
LSE = ("-G*SqDist(X,Y)+B", ["G = Pm(1)", "X = Vi(3)", "Y = Vj(3)", "B = Vj(1)"])
# (name, formula + aliases, reduction, axis, K, dtype): each state layout at 2e4, both axes
BIG = [
    ("gauss", GAUSS, "Sum", 1, None, "float32"),
    ("gauss", GAUSS, "Sum", 0, None, "float64"),
    ("knn", SQDIST, "ArgKMin", 1, 10, "float32"),
    ("knn", SQDIST, "KMin_ArgKMin", 0, 4, "float64"),
    ("nearest", SQDIST, "Min_ArgMin", 1, None, "float64"),
    ("lse", LSE, "LogSumExp", 1, None, "float32"),
]


def spec(red, axis):
    if red in ("LogSumExp", "LogSumExp_w", "SumSoftMaxWeight"):
        return dict(formula=SCAL, aliases=XY, reduction_op=red.replace("_w", ""), axis=axis,
                    formula2=WEIGHTS if red != "LogSumExp" else None)  # fmt: skip
    return dict(formula=VEC, aliases=XY, reduction_op=red, axis=axis, opt_arg=K if "KMin" in red else None)


def data(n, m, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(-1, 1, (n, 2)), rng.uniform(-1, 1, (m, 2))
    return [a.astype(dtype) for a in (x, y, rng.uniform(0, 1, (m, 2)))]


def to_dask(arrays, i_chunks, j_chunks):
    x, y, b = arrays
    return [
        da.from_array(x, chunks=(i_chunks, 2)),
        da.from_array(y, chunks=(j_chunks, 1)),
        da.from_array(b, chunks=(j_chunks[::-1], 2)),
    ]  # fmt: skip  (b's rows chunked unlike y's)


def assert_matches(got, want, red, dtype):
    got, want = (got, want) if isinstance(want, tuple) else ((got,), (want,))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype, (g.shape, w.shape, g.dtype, w.dtype)
        if red in SUMMED:
            scale = float(np.abs(w).max())
            err = float(np.abs(g - w).max())
            assert err <= RTOL[dtype] * scale, f"{red} {dtype}: max error {err:.3g}, scale {scale:.3g}"
        elif g.dtype == np.int64:  # indices are exact
            np.testing.assert_array_equal(g, w)
        else:  # selected values: the same pair's value, but its j sits elsewhere in the SIMD lanes/tails
            np.testing.assert_allclose(g, w, rtol=SELECT_ULPS * np.finfo(dtype).eps, atol=0)


def _run_tiny(kw, dtype):
    kn.Genred(**kw)(*data(8, 8, dtype))


def _compile_jobs():
    """Runs every kernel of this module once on tiny data (JIT compiles in parallel threads)."""
    jobs = [functools.partial(_run_tiny, spec(r, a), dt) for r, a, dt in SMALL_CASES]
    for _, (f, aliases), red, axis, k, dt in BIG:
        args = [np.ones(1, dt) if a.startswith("G") else np.ones((k or 1, 3 if a[0] in "XY" else 1), dt)
                for a in aliases]  # fmt: skip
        jobs.append(lambda f=f, al=aliases, r=red, ax=axis, k=k, a=args: kn.Genred(f, al, r, ax, k)(*a))
    return jobs


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    # One libkmr thread per worker: 2 single-threaded workers share the 2 CI cores. Workers inherit
    # KMR_CACHE_DIR (conftest): kernels compiled by the test process are loaded from disk, not recompiled.
    warm_up(_compile_jobs())  # before the workers start: they load the kernels from KMR_CACHE_DIR
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                           env={"KMR_NUM_THREADS": "1"})  # fmt: skip
    with Client(cluster) as c:
        yield c
    cluster.close()


def compute(client, got):
    if isinstance(got, tuple):
        return tuple(f.result() for f in client.compute(list(got)))
    return client.compute(got).result()


@pytest.mark.parametrize("red, axis, dtype", SMALL_CASES)
def test_every_reduction_matches_single_process(client, red, axis, dtype):
    n, m, i_chunks, j_chunks = SMALL
    kw = spec(red, axis)
    arrays = data(n, m, dtype)
    want = kn.Genred(**kw)(*arrays)  # also compiles the kernel here, before the workers load it
    got = Genred(**kw)(*to_dask(arrays, i_chunks, j_chunks))
    assert isinstance(got, tuple) == isinstance(want, tuple)
    own = i_chunks if axis == 1 else j_chunks
    assert all(p.chunks[0] == own for p in (got if isinstance(got, tuple) else (got,)))
    assert_matches(compute(client, got), want, red, dtype)


@pytest.mark.parametrize(
    "name, fa, red, axis, k, dtype", BIG, ids=[f"{c[0]}-{c[2]}-axis{c[3]}-{c[5]}" for c in BIG]
)
def test_large_uneven_chunks_match_single_process(client, name, fa, red, axis, k, dtype):
    """N = M = 2e4 in uneven chunks on both axes; B is chunked unlike Y (rechunked to Y's chunks)."""
    rng = np.random.default_rng(5)
    x, y, b = (rng.random((N, 3)).astype(dtype), rng.random((M, 3)).astype(dtype),
               rng.random((M, 1)).astype(dtype))  # fmt: skip
    params = [np.array([20.0], dtype)] if fa[1][0].startswith("G") else []
    bs = [b] if fa[1][-1].startswith("B") else []
    routine = dict(formula=fa[0], aliases=fa[1], reduction_op=red, axis=axis, opt_arg=k)
    want = kn.Genred(**routine)(*params, x, y, *bs)
    dx, dy = da.from_array(x, chunks=(ROW_CHUNKS, 3)), da.from_array(y, chunks=(COL_CHUNKS, 3))
    dbs = [da.from_array(b, chunks=(COL_CHUNKS[::-1], 1)) for b in bs]
    got = Genred(**routine)(*params, dx, dy, *dbs)
    assert_matches(compute(client, got), want, red, dtype)


def test_killed_worker_is_retried(client):
    """SIGKILL one worker while tasks run on both: Dask reruns the lost tasks, the result is still exact."""
    kw = spec("ArgKMin", 1)  # the Sin formula (compiled above): 1e8 pairs take a few seconds here
    arrays = data(10_000, 10_000, "float64", seed=2)
    want = kn.Genred(**kw)(*arrays)
    chunks = (1_250,) * 8
    got = Genred(**kw, split_every=2)(*to_dask(arrays, chunks, chunks))  # 64 tasks, a 3-level merge tree
    pids = client.run(os.getpid)
    fut = client.compute(got)
    deadline = time.monotonic() + 60
    while True:  # wait until both workers are busy and some work is done (so that some is lost)
        processing = client.processing()
        done = client.run_on_scheduler(
            lambda dask_scheduler: sum(
                ts.state == "memory" for ts in dask_scheduler.tasks.values() if "pykmr-partial" in str(ts.key)
            )
        )
        if done >= 2 and all(processing.get(a) for a in pids):
            break
        assert time.monotonic() < deadline and not fut.done(), "the computation ended before the kill"
        time.sleep(0.01)
    victim = max(pids, key=lambda a: len(processing[a]))
    os.kill(pids[victim], signal.SIGKILL)
    assert not fut.done(), "the computation ended before the kill: make it longer"
    np.testing.assert_array_equal(fut.result(timeout=300), want)
    client.wait_for_workers(2, timeout=60)  # the nanny restarted it (the next tests need 2 workers)
    assert victim not in client.run(os.getpid) or client.run(os.getpid)[victim] != pids[victim]


# ---------------------------------------------------------------------------------------------------------
# Without a cluster (the synchronous scheduler): the graph and the errors
# ---------------------------------------------------------------------------------------------------------
def test_graph_shape_and_tree_depth():
    arrays = to_dask(data(100, 90, "float64"), (30, 30, 40), (10,) * 9)
    r = Genred(**spec("Sum", 1), split_every=3)(*arrays)
    layers = {name.rsplit("-", 1)[0]: len(layer) for name, layer in r.__dask_graph__().layers.items()}
    assert layers["pykmr-partial"] == 3 * 9  # one task per (i chunk, j chunk)
    # 9 states per i chunk, 3 at a time: 3 combine tasks then 1 aggregate, per i chunk
    assert layers["pykmr-merge-partial"] == 3 * 3 and layers["pykmr-merge-aggregate"] == 3
    assert r.chunks == ((30, 30, 40), (2,))
    np.testing.assert_allclose(r.compute(scheduler="sync"), kn.Genred(**spec("Sum", 1))(
        *[np.asarray(a) for a in arrays]), rtol=1e-12)  # fmt: skip


def test_parameter_is_one_key_and_numpy_inputs():
    f, aliases = "Exp(-G*SqDist(X,Y))*B", ["G = Pm(1)", "X = Vi(3)", "Y = Vj(3)", "B = Vj(2)"]
    rng = np.random.default_rng(3)
    x, y, b = rng.random((50, 3)), rng.random((40, 3)), rng.random((40, 2))
    want = kn.Genred(f, aliases, axis=0)(2.0, x, y, b)
    dx = da.from_array(x, chunks=20)
    for g in (2.0, [2.0], np.array([2.0]), da.from_array(np.array([2.0]))):
        r = Genred(f, aliases, axis=0)(g, dx, y, b)  # numpy y, b: one chunk each
        graph = dict(r.__dask_graph__())
        params = [k for k, v in graph.items() if isinstance(v, np.ndarray) and v.shape == (1,)]
        assert r.chunks[0] == (40,)
        np.testing.assert_allclose(r.compute(scheduler="sync"), want, rtol=1e-12)
    assert params  # the parameter is a key of its own, not copied into each task


def test_kmin_chunks_smaller_than_k_are_merged():
    arrays = data(40, 30, "float64")
    want = kn.Genred(**spec("KMin_ArgKMin", 1))(*arrays)
    got = Genred(**spec("KMin_ArgKMin", 1))(*to_dask(arrays, (40,), (1, 2, 20, 2, 5)))
    assert_matches(tuple(g.compute(scheduler="sync") for g in got), want, "KMin_ArgKMin", "float64")


def test_no_output_variable_and_no_reduced_variable():
    y = np.random.default_rng(4).random((30, 1))
    routine = Genred("Y", ["Y = Vj(1)"], axis=1)  # no i-variable: one output row
    got = routine(da.from_array(y, chunks=7)).compute(scheduler="sync")
    np.testing.assert_allclose(got, y.sum(0, keepdims=True), rtol=1e-12)
    routine0 = Genred("Y", ["Y = Vj(1)"], axis=0)  # no i-variable to reduce over: each row once
    np.testing.assert_array_equal(routine0(da.from_array(y, chunks=7)).compute(scheduler="sync"), y)


def test_pickles():
    routine = Genred(**spec("ArgKMin", 1), split_every=5)
    back = pickle.loads(pickle.dumps(routine))
    assert back.split_every == 5 and back._core.spec() == routine._core.spec()


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda r, a: r(*a, out=np.empty((10, 2))), TypeError, "out= is not supported"),
        (lambda r, a: r(*a, backend="GPU"), NotImplementedError, "workers' CPUs"),
        (lambda r, a: r(a[0], a[1], "y"), TypeError, "must be a dask or numpy array"),
        (lambda r, a: r(a[0], a[1]), TypeError, "takes 3 arguments"),
        (lambda r, a: r(a[0], a[1][:, :1], a[2]), ValueError, "columns"),
        (lambda r, a: r(a[0].astype("float32"), a[1], a[2]), TypeError, "mixed dtypes"),
        (lambda r, a: r(a[0][a[0][:, 0] > 0], a[1], a[2]), ValueError, "unknown chunk sizes"),
    ],
)
def test_errors(call, exc, match):
    arrays = to_dask(data(10, 8, "float64"), (5, 5), (4, 4))
    with pytest.raises(exc, match=match):
        call(Genred(**spec("Sum", 1)), arrays)


def test_bad_split_every_and_k_too_large():
    with pytest.raises(ValueError, match="split_every"):
        Genred(**spec("Sum", 1), split_every=1)
    arrays = to_dask(data(10, 2, "float64"), (5, 5), (1, 1))
    with pytest.raises(ValueError, match="larger than the number of reduced points"):
        Genred(**spec("ArgKMin", 1))(*arrays)
