"""GPyTorch 1.15.2 on pykmr: the KeOps kernels (gpytorch.kernels.keops RBF, Matern, Periodic) in an exact
GP's marginal likelihood, with KeOps on (LazyTensors, pykmr) and off (the same kernel on dense tensors),
value and gradients in the hyperparameters, float64. Both runs use the same seed for GPyTorch's random
probe vectors; CG/Lanczos amplify round-off, hence the few iterations and the 1e-6 tolerance."""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import close

pytest.importorskip("gpytorch", reason="GPyTorch is a client library (CI installs gpytorch==1.15.2)")

KERNELS = {
    "rbf": lambda k: k.RBFKernel(),
    "matern52": lambda k: k.MaternKernel(nu=2.5),
    "matern12": lambda k: k.MaternKernel(nu=0.5),
    "periodic": lambda k: k.PeriodicKernel(),
}


def _mll_and_grads(kernel, use_keops, seed):
    import gpytorch

    class GP(gpytorch.models.ExactGP):
        def __init__(self, x, y, lik):
            super().__init__(x, y, lik)
            self.mean = gpytorch.means.ZeroMean()
            self.cov = gpytorch.kernels.ScaleKernel(KERNELS[kernel](gpytorch.kernels.keops))

        def forward(self, x):
            return gpytorch.distributions.MultivariateNormal(self.mean(x), self.cov(x))

    g = torch.Generator().manual_seed(seed)
    x = torch.rand(60, 2, dtype=torch.float64, generator=g)
    y = torch.sin(6 * x[:, 0]) + 0.1 * torch.randn(60, dtype=torch.float64, generator=g)
    lik = gpytorch.likelihoods.GaussianLikelihood().double()
    model = GP(x, y, lik).double()
    model.train()
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(lik, model)
    torch.manual_seed(seed)
    from linear_operator.utils.warnings import NumericalWarning

    with (
        gpytorch.settings.use_keops(use_keops),
        gpytorch.settings.max_cholesky_size(0),
        gpytorch.settings.max_cg_iterations(100),
        gpytorch.settings.cg_tolerance(1e-6),
        gpytorch.settings.num_trace_samples(4),
        gpytorch.settings.max_lanczos_quadrature_iterations(40),
        warnings.catch_warnings(),
    ):
        # CG stopping before its tolerance happens identically on both paths (compared below): not an error
        warnings.simplefilter("ignore", NumericalWarning)
        loss = -mll(model(x), y)
        params = [p for _, p in sorted(model.named_parameters())]
        gs = torch.autograd.grad(loss, params)
    return loss, gs


@pytest.mark.parametrize("kernel", list(KERNELS))
def test_marginal_likelihood(kernel, keops_is_pykmr, seed):
    ref, gref = _mll_and_grads(kernel, False, seed)
    got, ggot = _mll_and_grads(kernel, True, seed)
    close(got, ref, 1e-6, f"{kernel} mll")
    for k, (u, v) in enumerate(zip(ggot, gref)):
        close(u, v, 1e-5, f"{kernel} gradient {k}")


def test_lazytensor_is_not_taken_as_dense(keops_is_pykmr):
    """GPyTorch must not treat the LazyTensor as a torch.Tensor (it would densify it)."""
    import gpytorch  # noqa: F401
    from pykeops.torch import LazyTensor

    assert not issubclass(LazyTensor, torch.Tensor) and not torch.is_tensor(LazyTensor(torch.rand(3)))
