"""deformetrica 4.3 on pykmr's Genred: its KeopsKernel (gaussian and varifold convolutions, convolution
gradient) against its TorchKernel (dense torch), float64.

deformetrica 4.3 pins torch==1.6 and pykeops==1.4.1 and imports vtk and PyQt5 at package import: where it
is not installed (not in requirements-dev.txt: its torch==1.6 pin cannot sit beside torch 2) this module
is skipped as an optional package; installed but broken, it fails."""

from __future__ import annotations

import pytest
import torch
from conftest import close

pytest.importorskip(
    "deformetrica",
    reason="deformetrica, an optional client package, is not installed (it pins torch==1.6 and "
    "pykeops==1.4.1, so CI cannot install it beside torch 2); install it to run this check",
)


@pytest.fixture
def kernels(keops_is_pykmr):
    from deformetrica.support.kernels.keops_kernel import KeopsKernel
    from deformetrica.support.kernels.torch_kernel import TorchKernel

    return KeopsKernel(kernel_width=0.4, cuda_type="float64"), TorchKernel(kernel_width=0.4)


@pytest.mark.parametrize("dim", [2, 3])
def test_convolve_and_gradient(kernels, dim, seed):
    keops, dense = kernels
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(30, dim, dtype=torch.float64, generator=g)
    y = torch.rand(40, dim, dtype=torch.float64, generator=g)
    p = torch.rand(40, dim, dtype=torch.float64, generator=g)
    close(keops.convolve(x, y, p), dense.convolve(x, y, p), 1e-12, "gaussian convolution")
    px = torch.rand(30, dim, dtype=torch.float64, generator=g)
    close(keops.convolve_gradient(px, x), dense.convolve_gradient(px, x), 1e-12, "convolution gradient")
