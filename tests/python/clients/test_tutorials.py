"""The KeOps tutorials' k-means and k-NN, written with LazyTensor as in the tutorials, on pykmr (through
`pykeops.torch`) against the same algorithms on dense torch; and GMM-style log-likelihood and kernel
interpolation (KernelSolve) as the tutorials write them. float64, exact index agreement."""

from __future__ import annotations

import torch
from conftest import close


def _kmeans(x, K, n_iter, lazy):
    from pykeops.torch import LazyTensor

    N, D = x.shape
    c = x[:K, :].clone()
    x_i = LazyTensor(x.view(N, 1, D)) if lazy else x.view(N, 1, D)
    c_j = LazyTensor(c.view(1, K, D)) if lazy else None
    for _ in range(n_iter):
        if lazy:
            D_ij = ((x_i - c_j) ** 2).sum(-1)
            cl = D_ij.argmin(dim=1).long().view(-1)
        else:
            cl = ((x_i - c.view(1, K, D)) ** 2).sum(-1).argmin(dim=1).view(-1)
        c.zero_()
        c.scatter_add_(0, cl[:, None].repeat(1, D), x)
        Ncl = torch.bincount(cl, minlength=K).type_as(c).view(K, 1)
        c /= Ncl.clamp(min=1)
    return cl, c


def test_kmeans(keops_is_pykmr, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(500, 2, dtype=torch.float64, generator=g) / 6 + 0.5
    cl1, c1 = _kmeans(x, 10, 10, lazy=True)
    cl2, c2 = _kmeans(x, 10, 10, lazy=False)
    assert torch.equal(cl1, cl2)
    close(c1, c2, 1e-12, "k-means centroids")


def test_knn(keops_is_pykmr, seed):
    from pykeops.torch import LazyTensor

    g = torch.Generator().manual_seed(seed)
    x_train = torch.rand(300, 3, dtype=torch.float64, generator=g)
    x_test = torch.rand(50, 3, dtype=torch.float64, generator=g)
    y_train = (x_train[:, 0] > 0.5).long()
    X_i = LazyTensor(x_test[:, None, :])
    X_j = LazyTensor(x_train[None, :, :])
    D_ij = ((X_i - X_j) ** 2).sum(-1)
    ind_knn = D_ij.argKmin(5, dim=1)
    lab = y_train[ind_knn].float().mean(1) > 0.5
    dense = ((x_test[:, None] - x_train[None]) ** 2).sum(-1).topk(5, dim=1, largest=False).indices
    assert torch.equal(ind_knn, dense)
    assert torch.equal(lab, y_train[dense].float().mean(1) > 0.5)


def test_gmm_log_likelihood(keops_is_pykmr, seed):
    from pykeops.torch import LazyTensor

    g = torch.Generator().manual_seed(seed)
    x = torch.rand(200, 2, dtype=torch.float64, generator=g)
    mu = torch.rand(6, 2, dtype=torch.float64, generator=g).requires_grad_()
    w = torch.rand(6, 1, dtype=torch.float64, generator=g)
    s = torch.tensor([8.0], dtype=torch.float64)
    ll = (
        (-((LazyTensor(x[:, None, :]) - LazyTensor(mu[None, :, :])) ** 2).sum(-1) * s)
        .logsumexp(dim=1, weight=LazyTensor(w[None, :, :]))
        .sum()
    )
    ref = ((-((x[:, None] - mu[None]) ** 2).sum(-1) * s) + w.view(1, -1).log()).logsumexp(1).sum()
    close(ll, ref, 1e-12, "GMM log-likelihood")
    close(torch.autograd.grad(ll, mu)[0], torch.autograd.grad(ref, mu)[0], 1e-10, "GMM gradient")


def test_kernel_interpolation(keops_is_pykmr, seed):
    from pykeops.torch import LazyTensor

    g = torch.Generator().manual_seed(seed)
    x = torch.rand(100, 1, dtype=torch.float64, generator=g)
    b = x + 0.5 * torch.sin(6 * x)
    K_xx = (-((LazyTensor(x[:, None, :]) - LazyTensor(x[None, :, :])) ** 2).sum(-1) * 100.0).exp()
    a = K_xx.solve(LazyTensor(b[:, None, :]), alpha=0.5, eps=1e-12)
    Kd = (-((x[:, None] - x[None]) ** 2).sum(-1) * 100.0).exp()
    ref = torch.linalg.solve(0.5 * torch.eye(100, dtype=torch.float64) + Kd, b)
    close(a, ref, 1e-8, "kernel interpolation")
