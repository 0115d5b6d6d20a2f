"""The common kernels never compile: a Gaussian convolution and its gradients w.r.t. x, y, b (float32 and
float64, dims of the precompiled set) leave an empty KMR_CACHE_DIR empty."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import torch
    from pykmr.torch import generic_sum

    conv = generic_sum("Exp(-G*SqDist(X,Y)) * B", "A = Vx(2)",
                       "G = Pm(1)", "X = Vx(3)", "Y = Vy(3)", "B = Vy(2)")
    for dtype in (torch.float32, torch.float64):
        x = torch.rand(50, 3, dtype=dtype, requires_grad=True)
        y = torch.rand(40, 3, dtype=dtype, requires_grad=True)
        b = torch.rand(40, 2, dtype=dtype, requires_grad=True)
        a = conv(1 / 0.5**2, x, y, b)
        a.backward(torch.rand_like(a))
        assert x.grad is not None and y.grad is not None and b.grad is not None
        routines = [conv] + list(conv._derived.values())
        assert all(r._core.kernel.is_precompiled(str(dtype)[6:]) for r in routines)
    print("ok")
""")


def test_common_kernels_compile_nothing(tmp_path):
    cache = tmp_path / "cache"
    env = dict(os.environ, KMR_CACHE_DIR=str(cache))
    r = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr
    files = [os.path.join(d, f) for d, _, fs in os.walk(cache) for f in fs] if cache.exists() else []
    assert files == [], f"the common kernels compiled: {files}\n{r.stderr}"
