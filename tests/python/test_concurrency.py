"""Concurrency (issue 10 §8): one routine called from 8 Python threads at once gives what one thread gives,
its first calls racing to compile the same module; a fork() while another thread JIT-compiles leaves a
child that computes (precompiled and JIT routines alike) instead of waiting forever on a lock held by a
thread that the child does not have (found by this test: the routine's and the JIT's mutexes, and the
cache's flock kept by the child's inherited descriptor)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pykmr.numpy as pn
import pytest

ALIASES = ["G = Pm(1)", "X = Vi(3)", "Y = Vj(3)", "B = Vj(1)"]
GAUSS = "Exp(-G*SqDist(X,Y))*B"  # precompiled
THREADS = 8


def _data(rng, n=300, m=500):
    return (np.array([0.7]), rng.random((n, 3)), rng.random((m, 3)), rng.random((m, 1)))


JIT_FORMULA = "Exp(-G*SqDist(X,Y))*B*Cos(SqNorm2(X))"  # compiled by the test


@pytest.mark.parametrize("formula", [GAUSS, JIT_FORMULA], ids=["precompiled", "jit"])
def test_eight_threads_one_routine(formula, seed, tmp_path, monkeypatch):
    """8 threads call one routine at once, each on its own data: each result equals the one-thread result
    exactly (same tiling). The JIT case starts from an empty cache: the threads' first calls race."""
    monkeypatch.setenv("KMR_CACHE_DIR", str(tmp_path))
    g = pn.Genred(formula, ALIASES, reduction_op="Sum", axis=1)
    rng = np.random.default_rng(seed)
    inputs = [_data(rng) for _ in range(THREADS)]
    results, errors = [None] * THREADS, []
    start = threading.Barrier(THREADS)

    def work(k):
        try:
            start.wait()
            for _ in range(3):
                results[k] = g(*inputs[k])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a thread is still running after 300 s (deadlock?)"
    assert errors == []
    for k in range(THREADS):
        np.testing.assert_array_equal(results[k], g(*inputs[k]), err_msg=f"thread {k}")


CHILD = textwrap.dedent(
    """
    import os, sys, threading, time
    import numpy as np
    import pykmr.numpy as pn
    aliases = {aliases!r}
    rng = np.random.default_rng({seed})
    g, x, y, b = np.array([0.5]), rng.random((400, 3)), rng.random((600, 3)), rng.random((600, 1))
    gauss = pn.Genred({gauss!r}, aliases, reduction_op="Sum", axis=1)
    ref = gauss(g, x, y, b)
    jit = pn.Genred({gauss!r} + "*Sin(SqNorm2(Y)+{seed})", aliases, reduction_op="Sum", axis=1)
    compiling = threading.Thread(target=jit, args=(g, x, y, b))
    compiling.start()
    time.sleep({delay})  # fork while the other thread compiles (a compile takes seconds)
    pid = os.fork()
    if pid == 0:
        ok = np.array_equal(gauss(g, x, y, b), ref)
        out = jit(g, x, y, b)
        os._exit(0 if ok and np.isfinite(out).all() else 3)
    t0 = time.time()
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            break
        if time.time() - t0 > {timeout}:
            os.kill(pid, 9)
            code = "hung"
            break
        time.sleep(0.05)
    compiling.join()
    print("child:", code, "after", round(time.time() - t0, 1), "s")
    sys.exit(0 if code == 0 else 1)
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork does not exist on this platform")
@pytest.mark.parametrize("delay", [0.05, 0.8])
def test_fork_while_another_thread_compiles(delay, seed, tmp_path):
    """In a fresh interpreter (numpy and pykmr only), a thread starts a JIT compile and the main thread
    forks `delay` s later (while the compiler runs, or while the key and headers are hashed): the child runs
    the precompiled routine and the one being compiled, and exits within the timeout."""
    src = CHILD.format(aliases=ALIASES, seed=seed % 1000, gauss=GAUSS, delay=delay, timeout=120)
    env = dict(os.environ, KMR_CACHE_DIR=str(tmp_path), KMR_QUIET="1")
    r = subprocess.run([sys.executable, "-c", src], env=env, capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, f"stdout: {r.stdout}\nstderr: {r.stderr[-3000:]}"
