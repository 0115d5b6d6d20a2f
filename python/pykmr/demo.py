"""`python -m pykmr demo`: the seed's experiment.

Gaussian convolution a_i = sum_j exp(-|x_i - y_j|^2 / sigma^2) b_j of N points in R^3
(M = N, float32), timed with pykmr and with a dense torch reference that stores the
N x N matrix. The dense one runs out of memory (or time) as N grows; pykmr does not.
Prints a table (median of a few warm runs) and writes a log-log plot when matplotlib
is installed.
"""

from __future__ import annotations

import functools
import os
import statistics
import sys
import time

FORMULA = "Exp(-G*SqDist(X,Y))*B"
SIGMA = 0.1
REPEAT_BUDGET_S = 1.0  # repeat a size while the runs so far took less than this
TOLERANCE = 1e-3  # float32, max |pykmr - dense| / max |dense|


def sizes_up_to(max_n):
    """1e2, 2e2, 5e2, 1e3, ... <= max_n, then max_n itself if it is not in the sequence."""
    out, k = [], 2
    while True:
        row = [m * 10**k for m in (1, 2, 5) if m * 10**k <= max_n]
        if not row:
            break
        out += row
        k += 1
    if not out or out[-1] != max_n:
        out.append(max_n)
    return out


def default_dense_budget_gb():
    """A quarter of the available memory (MemAvailable), 4 GB when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 / 4 / 1e9
    except OSError:
        pass
    return 4.0


class _Backend:
    """The pykmr routine, the dense reference and the data helpers for torch or numpy."""

    def __init__(self, b_dim):
        aliases = ["G = Pm(1)", "X = Vi(3)", "Y = Vj(3)", f"B = Vj({b_dim})"]
        try:
            import torch

            import pykmr.torch as kt

            self.name, self.lib = f"torch {torch.__version__}", torch
            self.routine = kt.Genred(FORMULA, aliases, reduction_op="Sum", axis=1)
        except ImportError:
            import numpy

            import pykmr.numpy as kn

            self.name, self.lib = f"numpy {numpy.__version__}; torch is not installed", None
            self.routine = kn.Genred(FORMULA, aliases, reduction_op="Sum", axis=1)
        self.label = "dense torch" if self.lib is not None else "dense numpy"
        self.aliases = aliases
        self.b_dim = b_dim

    def data(self, n, seed):
        import numpy as np

        rng = np.random.default_rng(seed)
        x = rng.random((n, 3), dtype=np.float32)
        y = rng.random((n, 3), dtype=np.float32)
        b = rng.standard_normal((n, self.b_dim), dtype=np.float32)
        g = np.array([1 / SIGMA**2], dtype=np.float32)
        if self.lib is not None:
            x, y, b, g = (self.lib.from_numpy(a) for a in (x, y, b, g))
        return g, x, y, b

    def pykmr(self, g, x, y, b):
        return self.routine(g, x, y, b, backend="auto")

    def dense(self, g, x, y, b):
        if self.lib is not None:
            t = self.lib
            return t.exp(-g * t.cdist(x, y) ** 2) @ b
        import numpy as np

        d2 = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2 * x @ y.T
        return np.exp(-g * np.maximum(d2, 0)) @ b

    def rel_err(self, a, d):
        import numpy as np

        a, d = np.asarray(a, dtype=np.float64), np.asarray(d, dtype=np.float64)
        return float(np.abs(a - d).max() / max(np.abs(d).max(), 1e-30))


def _timed(fn, repeats):
    """(median seconds, last result) of warm runs: repeats while the runs took under a second."""
    times, result = [], None
    while len(times) < repeats and sum(times) < REPEAT_BUDGET_S:
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def _predicted(last, n):
    """Seconds expected at size n from the last run (n0, t0): the work grows as N^2."""
    return 0.0 if last is None else last[1] * (n / last[0]) ** 2


def _is_oom(e):
    return isinstance(e, MemoryError) or "memory" in str(e).lower() or "alloc" in str(e).lower()


def _fmt_s(t):
    return f"{t:.2e}" if t < 0.01 else f"{t:.3f}"


def run(
    max_n=200_000,
    plot=True,
    output="pykmr-demo.png",
    b_dim=1,
    max_seconds=30.0,
    dense_mem_gb=None,
    repeats=5,
    seed=0,
    out=None,
):
    """Runs the demo; returns 0 when pykmr and the dense reference agree wherever both ran."""
    out = out or sys.stdout
    t_start = time.perf_counter()
    import pykmr
    from pykmr import _kmr

    if dense_mem_gb is None:
        dense_mem_gb = default_dense_budget_gb()
    be = _Backend(b_dim)
    native = _kmr.Genred(FORMULA, be.aliases, "Sum", 1)
    precompiled = native.is_precompiled("float32")

    def say(s=""):
        print(s, file=out, flush=True)

    cache_before = _kmr.cache_size_bytes()
    g, x, y, b = be.data(100, seed)
    t0 = time.perf_counter()
    be.pykmr(g, x, y, b)
    first_ms = (time.perf_counter() - t0) * 1e3
    compiled = _kmr.cache_size_bytes() != cache_before
    be.dense(g, x, y, b)  # warm the reference too (thread pools, first-call dispatch)
    say("pykmr demo: Gaussian convolution a_i = sum_j exp(-|x_i - y_j|^2 / sigma^2) b_j")
    say(
        f"  N = M points in R^3, b in R^{b_dim}, float32, sigma = {SIGMA}; pykmr {pykmr.__version__} "
        f"on {_kmr.num_threads()} CPU thread(s), reference: {be.label} ({be.name})"
    )
    say(
        f"  formula {FORMULA}: {'precompiled' if precompiled else 'not precompiled (JIT)'}; "
        f"first call: {first_ms:.1f} ms{', compiled at run time' if compiled else ', nothing compiled'}"
    )
    say(
        f"  times: median of up to {repeats} warm runs; a size is skipped when it would take over "
        f"{max_seconds:g} s (--max-seconds)"
    )
    say(
        f"  the dense reference stores the N x N matrix: skipped above {dense_mem_gb:.1f} GB (--dense-mem-gb)"
    )
    say()
    header = f"{'N':>8}  {'pykmr (s)':>17}  {be.label + ' (s)':>34}  {'dense/pykmr':>11}  {'rel. err':>8}"
    say(header)
    say("-" * len(header))

    rows, ok = [], True
    last = {"pykmr": None, "dense": None}  # (n, seconds) of the last run
    dense_stop = None  # why the dense reference stopped for good
    for n in sizes_up_to(max_n):
        g, x, y, b = be.data(n, seed)
        row = {"n": n, "pykmr": None, "dense": None, "err": None}
        guess = {k: _predicted(v, n) for k, v in last.items()}
        if guess["pykmr"] > max_seconds:
            p_text = f"skipped (~{guess['pykmr']:.0f} s)"
        else:
            row["pykmr"], a = _timed(functools.partial(be.pykmr, g, x, y, b), repeats)
            last["pykmr"] = (n, row["pykmr"])
            p_text = _fmt_s(row["pykmr"])

        matrix_gb = 4 * n * n / 1e9
        if dense_stop:
            d_text = dense_stop
        elif 3 * matrix_gb > dense_mem_gb:  # the matrix and two temporaries of its size
            d_text = f"skipped (N x N = {matrix_gb:.3g} GB)"
        elif guess["dense"] > max_seconds:
            d_text = f"skipped (~{guess['dense']:.0f} s)"
        else:
            try:
                row["dense"], d = _timed(functools.partial(be.dense, g, x, y, b), repeats)
                last["dense"] = (n, row["dense"])
                d_text = _fmt_s(row["dense"])
            except (MemoryError, RuntimeError) as e:
                if not _is_oom(e):
                    raise
                d_text = "out of memory"
                dense_stop = "skipped (out of memory)"
        row["pykmr_note"], row["dense_note"] = p_text, d_text
        ratio = err = ""
        if row["pykmr"] is not None and row["dense"] is not None:
            ratio = f"{row['dense'] / row['pykmr']:.1f}x"
            row["err"] = be.rel_err(a, d)
            err = f"{row['err']:.0e}"
            if not row["err"] <= TOLERANCE:
                ok = False
                err += " MISMATCH"
        say(f"{n:>8}  {p_text:>17}  {d_text:>34}  {ratio:>11}  {err:>8}")
        rows.append(row)

    say()
    both = [r for r in rows if r["err"] is not None]
    if both:
        worst = max(r["err"] for r in both)
        verdict = "agree" if ok else "DISAGREE"
        say(
            f"pykmr and the dense reference {verdict} on the {len(both)} sizes where both ran "
            f"(max relative error {worst:.1e}, tolerance {TOLERANCE:g})."
        )
    skipped = [r for r in rows if r["pykmr"] is None]
    if skipped:
        say(
            f"pykmr skipped N >= {skipped[0]['n']} ({skipped[-1]['pykmr_note'][9:-1]} expected at "
            f"N = {skipped[-1]['n']}); raise --max-seconds to run them."
        )
    if plot:
        _plot(rows, output, be, b_dim, say)
    say(f"demo finished in {time.perf_counter() - t_start:.1f} s")
    return 0 if ok else 1


def _why(note):
    """A table note, shortened for the plot's legend."""
    if note.startswith("skipped (N x N"):
        return "N x N over the memory budget"
    if "out of memory" in note:
        return "out of memory"
    return "time cap"


def _plot(rows, output, be, b_dim, say):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        say(
            f"matplotlib is not installed: the table above is the result. For the plot {output}: "
            "pip install matplotlib (or pip install 'pykmr[plot]'), then rerun `python -m pykmr demo`."
        )
        return
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for key, label, style in (("pykmr", "pykmr", "o-"), ("dense", be.label, "s--")):
        pts = [(r["n"], r[key]) for r in rows if r[key] is not None]
        if not pts:
            continue
        stopped = [r[key + "_note"] for r in rows if r["n"] > pts[-1][0]]
        if stopped:
            label += f" (stops after N = {pts[-1][0]}: {_why(stopped[0])})"
        ax.loglog(*zip(*pts), style, label=label)
    ax.set_xlim(rows[0]["n"] / 1.3, rows[-1]["n"] * 1.3)
    ax.set_xlabel("N = M (points in R^3)")
    ax.set_ylabel("time (s)")
    ax.set_title(f"Gaussian convolution, b in R^{b_dim}, float32")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path = os.path.abspath(output)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    say(f"wrote the log-log plot {path}")
