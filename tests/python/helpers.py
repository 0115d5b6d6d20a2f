"""Shared by the tests: random data for an alias list, dense references, parallel warm-up of the JIT, the
parser's op table."""

from __future__ import annotations

import importlib.util
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from pykmr.common import parse_alias

F64 = torch.float64


def make_data(aliases, n, m, domain="any", dtype=F64, requires_grad=False):
    """{name: tensor}: i-variables [n, dim], j-variables [m, dim], parameters [dim].

    domain "any": uniform in [-1, 1]; "pos": uniform in [0.5, 1.5]."""
    out = {}
    for text in aliases:
        a = parse_alias(text)
        shape = {0: (n, a.dim), 1: (m, a.dim), 2: (a.dim,)}[a.cat]
        t = torch.rand(shape, dtype=dtype)
        t = 2 * t - 1 if domain == "any" else t + 0.5
        out[a.name] = t.requires_grad_(requires_grad)
    return out


def broadcast(aliases, data):
    """The dense views: i-variables [n, 1, dim], j-variables [1, m, dim], parameters [dim]."""
    out = {}
    for text in aliases:
        a = parse_alias(text)
        t = data[a.name]
        out[a.name] = t[:, None, :] if a.cat == 0 else t[None, :, :] if a.cat == 1 else t
    return out


def warm_up(jobs):
    """Runs the jobs once in threads, so that their formulas JIT-compile in parallel (libkmr compiles
    different formulas concurrently and releases the GIL). Failures are left to the tests themselves."""

    def run(job):
        try:
            job()
        except Exception:
            pass

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        list(pool.map(run, jobs))


def op_table():
    """{name: row} of the parser's op table (src/runtime/op_table.cpp) and of its composite ops, read by the
    docs extension's reader, the one reader of that table outside libkmr. The tests run from the source tree:
    a missing reader is an error, not a skip."""
    root = Path(os.environ.get("KMR_TEST_SOURCE_ROOT", Path(__file__).resolve().parents[2]))
    path = root / "docs" / "_ext" / "kmr_sphinx.py"
    assert path.exists(), f"the op table reader {path} is missing: run the tests from the source tree"
    spec = importlib.util.spec_from_file_location("_kmr_sphinx_op_table", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ops, comps = mod.read_op_table(str(root / "src" / "runtime" / "op_table.cpp"))
    return {o["name"]: o for o in ops} | {c["name"]: c for c in comps}
