"""Client-library tests: each library's KeOps code path runs unchanged on pykmr.

The `keops_is_pykmr` fixture makes `import pykeops` (and pykeops.torch, pykeops.torch.cluster,
pykeops.numpy, pykeops.numpy.cluster) give pykmr's modules, then re-imports the client libraries so that
their module-level `from pykeops.torch import LazyTensor` binds pykmr's; afterwards sys.modules is put back.
"""

from __future__ import annotations

import importlib
import sys

import pytest

# The client packages whose modules bind pykeops names at import time.
CLIENTS = ("pykeops", "keopscore", "geomloss", "gpytorch", "torchdr", "ot", "gudhi", "deformetrica")


def _is_client(name):
    return any(name == c or name.startswith(c + ".") for c in CLIENTS)


def _purgeable(name, module):
    """Pure-Python client modules are re-imported; compiled extension modules cannot be initialised twice
    in one process (gudhi's), so they stay (they do not import pykeops)."""
    f = getattr(module, "__file__", None) or ""
    return _is_client(name) and (f.endswith(".py") or not f)


@pytest.fixture
def keops_is_pykmr():
    import pykmr
    import pykmr.numpy
    import pykmr.numpy.cluster
    import pykmr.torch
    import pykmr.torch.cluster

    saved = {k: v for k, v in sys.modules.items() if _purgeable(k, v)}
    for k in saved:
        del sys.modules[k]
    sys.modules.update(
        {
            "pykeops": pykmr,
            "pykeops.torch": pykmr.torch,
            "pykeops.torch.cluster": pykmr.torch.cluster,
            "pykeops.numpy": pykmr.numpy,
            "pykeops.numpy.cluster": pykmr.numpy.cluster,
        }
    )
    importlib.invalidate_caches()
    import torch

    grad_mode = torch.is_grad_enabled()  # a client that fails midway may leave it off: restored below
    try:
        yield pykmr
    finally:
        torch.set_grad_enabled(grad_mode)
        for k in [k for k, v in sys.modules.items() if _purgeable(k, v)]:
            del sys.modules[k]
        sys.modules.update(saved)


def close(a, b, rtol, what):
    """max |a - b| <= rtol * max(|b|, 1), as float64."""
    import torch

    a, b = (torch.as_tensor(t).detach().double() for t in (a, b))
    assert a.shape == b.shape, f"{what}: shape {tuple(a.shape)} vs {tuple(b.shape)}"
    scale = max(b.abs().max().item(), 1.0)
    err = (a - b).abs().max().item()
    assert err <= rtol * scale, f"{what}: max error {err:.3g} > {rtol:.1g} * {scale:.3g}"
