"""Smoke test of an installed pykmr with numpy only (cibuildwheel's test inside the build image, and the
sdist job): a precompiled kernel, then one formula compiled by the JIT with the compiler found at run time.
The whole suite runs on each wheel outside the image, with torch (.github/workflows/ci.yml)."""

import numpy as np
import pykmr
from pykmr import _kmr
from pykmr.numpy import generic_sum

print("pykmr", pykmr.__version__, "from", pykmr.__file__, "-", pykmr.num_precompiled(), "precompiled kernels")
rng = np.random.default_rng(0)
x, y, b = rng.random((50, 3)), rng.random((40, 3)), rng.random((40, 2))
conv = generic_sum("Exp(-G*SqDist(X,Y))*B", "A = Vi(2)", "G = Pm(1)", "X = Vi(3)", "Y = Vj(3)", "B = Vj(2)")
ref = np.exp(-2.0 * ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)) @ b
assert np.allclose(conv(np.array([2.0]), x, y, b), ref, rtol=1e-10), "Gaussian convolution"
print("JIT compiler:", _kmr.compiler_command(), "(built with", _kmr.build_compiler() + ")")
f = generic_sum("Sin(X)*Y", "A = Vi(1)", "X = Vi(1)", "Y = Vj(1)")
assert np.allclose(f(x[:, :1], b[:, :1]), np.sin(x[:, :1]) * b[:, 0].sum(), rtol=1e-10), "JIT formula"
print("ok")
