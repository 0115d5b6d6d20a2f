"""deformetrica 4.3 on pykmr's Genred: its KeopsKernel (gaussian and varifold convolutions, convolution
gradient) against its TorchKernel (dense torch), float64.

deformetrica 4.3 pins torch==1.6 and pykeops==1.4.1 and imports vtk and PyQt5 at package import: where it
cannot be imported this module is skipped with the import error as the reason."""

from __future__ import annotations

import pytest
import torch
from conftest import close


@pytest.fixture
def kernels(keops_is_pykmr):
    try:
        from deformetrica.support.kernels.keops_kernel import KeopsKernel
        from deformetrica.support.kernels.torch_kernel import TorchKernel
    except ImportError as e:
        pytest.skip(f"deformetrica cannot be imported here: {e}")
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
