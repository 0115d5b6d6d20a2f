"""Compile messages: one INFO line per compilation, with its time, on the `pykmr` logger when someone
listens; otherwise "[pykmr] ..." on stderr unless KMR_QUIET=1. Each case runs in a fresh process with an
empty cache, so that the formula really compiles."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

SCRIPT = """
import logging, sys
import numpy as np
if {configure}:
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s|%(levelname)s|%(message)s")
from pykmr.numpy import Genred
g = Genred("Sin(X)*Y", ["X = Vi(1)", "Y = Vj(1)"], reduction_op="Sum", axis=1)
a = g(np.ones((3, 1)), np.ones((2, 1)))
assert np.allclose(a, 2 * np.sin(1.0)), a
print("done")
"""

COMPILED = re.compile(r"compiled .* in [0-9.]+ s")


def _run(tmp_path, configure, quiet):
    env = dict(os.environ, KMR_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("KMR_QUIET", None)
    if quiet:
        env["KMR_QUIET"] = "1"
    r = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(configure=configure)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0 and "done" in r.stdout, r.stdout + r.stderr
    return r


@pytest.mark.parametrize("quiet", [False, True])
def test_logging_gets_one_info_line_per_compilation(tmp_path, quiet):
    """Configured logging receives the line (KMR_QUIET only silences the stderr fallback)."""
    r = _run(tmp_path, configure=True, quiet=quiet)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("pykmr|")]
    assert len(lines) == 1, r.stdout
    assert lines[0].startswith("pykmr|INFO|") and COMPILED.search(lines[0]), lines
    assert "[pykmr]" not in r.stderr, r.stderr  # not printed twice


def test_without_logging_the_line_goes_to_stderr(tmp_path):
    r = _run(tmp_path, configure=False, quiet=False)
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("[pykmr] compiled")]
    assert len(lines) == 1 and COMPILED.search(lines[0]), r.stderr


def test_kmr_quiet_silences_stderr(tmp_path):
    r = _run(tmp_path, configure=False, quiet=True)
    assert "[pykmr]" not in r.stderr, r.stderr
