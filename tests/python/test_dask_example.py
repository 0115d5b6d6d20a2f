"""examples/dask_knn_conv.py runs with --small (its own LocalCluster of 2 worker processes, 2e4 points) in a
subprocess: exit 0 after its own numeric check, and a drawn PNG figure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dask_knn_conv.py"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_dask_example_runs_small(tmp_path):
    pytest.importorskip("distributed", reason="dask[distributed] is a test dependency (requirements-dev.txt)")
    pytest.importorskip("matplotlib", reason="the example draws its figure with matplotlib")
    env = dict(os.environ, MPLBACKEND="Agg", KMR_QUIET="1")
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), "--small", "--out", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,  # a hang guard: --small takes about 20 s on 2 busy cores
    )
    assert proc.returncode == 0, f"exit {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    assert "check passed" in proc.stdout
    data = (tmp_path / "dask_knn_conv.png").read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000, f"not a drawn PNG ({len(data)} B)"
