"""Shared by the tests: random data for an alias list, dense references, parallel warm-up of the JIT."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

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
