"""The examples gallery (examples/plot_*.py): each runs with --small in a subprocess, exits 0 (its own numeric
check passed) and writes its figures as non-empty PNG files.

The examples share the session's JIT cache directory (KMR_CACHE_DIR, a fresh temporary folder): a
formula that two examples use is compiled once, and the run never reads or fills the user's own cache."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# script -> the figures it must write; optional modules it imports beyond torch and matplotlib
GALLERY = {
    "plot_anisotropic_kernels.py": (["anisotropic_kernels.png"], []),
    "plot_gmm.py": (["gmm.png"], []),
    "plot_generative_mmd.py": (["generative_mmd.png"], []),
    "plot_optimal_transport.py": (["optimal_transport.png"], []),
    "plot_lddmm_surface.py": (["lddmm_surface.png", "lddmm_timing.png"], []),
    "plot_normalized_lddmm.py": (["normalized_lddmm.png"], []),
    "plot_knn_kmeans.py": (["knn_kmeans.png"], ["sklearn"]),
    "plot_benchmark.py": (["benchmark.png"], []),
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TIMEOUT_S = 300  # --small is meant to take under 20 s (a few JIT compiles, cold cache); this catches a hang


@pytest.fixture(scope="session")
def gallery_cache():
    """The session's KMR_CACHE_DIR (conftest: a fresh folder, or KMR_TEST_CACHE_DIR), shared by every example
    (formulas common to examples, or to other tests, compile once)."""
    cache = Path(os.environ["KMR_CACHE_DIR"])
    print(f"\ngallery: the examples share the JIT cache KMR_CACHE_DIR={cache}")
    return cache


def test_every_example_is_listed():
    assert sorted(p.name for p in EXAMPLES.glob("plot_*.py")) == sorted(GALLERY)
    assert (EXAMPLES / "README.txt").is_file()  # the sphinx-gallery header


@pytest.mark.parametrize("script", sorted(GALLERY))
def test_example_runs_small(script, tmp_path, gallery_cache):
    pytest.importorskip("matplotlib", reason="the examples draw their figures with matplotlib")
    figures, optional = GALLERY[script]
    for module in optional:
        pytest.importorskip(module, reason=f"{script} compares against {module}")
    env = dict(os.environ, MPLBACKEND="Agg", KMR_QUIET="1", KMR_CACHE_DIR=str(gallery_cache))
    # torch's OpenMP threads spin at their barriers: on an oversubscribed CI machine each torch op then waits
    # for a descheduled thread (~100 ms per op measured on a shared 2-core box); passive waiting avoids it.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    before = {p.name for p in gallery_cache.iterdir()}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--small", "--out", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    compiled = sorted(p.name for p in gallery_cache.glob("*.so") if p.name not in before)
    print(f"{script} --small: {time.perf_counter() - t0:.1f} s, {len(compiled)} formula(s) JIT-compiled")
    assert proc.returncode == 0, f"{script} failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    assert "check passed" in proc.stdout
    for name in figures:
        path = tmp_path / name
        assert path.is_file(), f"{script} did not write {name}"
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000, f"{name} is not a drawn PNG ({len(data)} B)"
