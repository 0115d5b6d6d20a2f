"""POT 0.9.7 on pykmr: its GeomLoss-backed solver (ot.bregman.empirical_sinkhorn2_geomloss) with GeomLoss's
KeOps backend against its dense one, torch and numpy inputs, values and gradients (torch), float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import close

pytest.importorskip("ot", reason="POT is a client library (CI installs pot==0.9.7.post1)")
pytest.importorskip("geomloss", reason="POT's GeomLoss solver needs geomloss (CI installs geomloss==0.3.1)")


def _run(xs, xt, backend):
    import ot

    return ot.bregman.empirical_sinkhorn2_geomloss(xs, xt, reg=0.1, backend=backend)


def test_empirical_sinkhorn2_geomloss_torch(keops_is_pykmr, seed):
    g = torch.Generator().manual_seed(seed)
    xs = torch.rand(30, 2, dtype=torch.float64, generator=g)
    xt = torch.rand(40, 2, dtype=torch.float64, generator=g)
    vals, grads_ = [], []
    for backend in ("tensorized", "online"):
        x = xs.clone().requires_grad_()
        v = _run(x, xt, backend)
        vals.append(v)
        grads_.append(torch.autograd.grad(v, x)[0])
    close(vals[1], vals[0], 1e-8, "POT sinkhorn2 value (torch)")
    close(grads_[1], grads_[0], 1e-7, "POT sinkhorn2 gradient (torch)")


def test_empirical_sinkhorn2_geomloss_numpy(keops_is_pykmr, seed):
    rng = np.random.default_rng(seed)
    xs, xt = rng.random((30, 2)), rng.random((40, 2))
    ref = _run(xs, xt, "tensorized")
    got = _run(xs, xt, "online")
    close(torch.as_tensor(np.asarray(got)), torch.as_tensor(np.asarray(ref)), 1e-8, "POT sinkhorn2 (numpy)")
