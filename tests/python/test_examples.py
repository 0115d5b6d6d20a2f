"""The seed's code as examples: the Gaussian convolution with generic_sum, the Hamiltonian H(q, p) and its
gradient, a 10-step geodesic shooting differentiated end to end, and the normalized-kernel loop."""

from __future__ import annotations

import pytest
import torch
from helpers import F64
from pykmr.torch import Genred, generic_logsumexp, generic_sum

N, M = 8, 6

# The seed's spelling, verbatim.
gaussian_conv = generic_sum(
    "Exp(-G*SqDist(X,Y)) * B",  # the formula
    "A = Vx(3)",  # output: one 3-vector per x_i
    "G = Pm(1)",  # 1 / sigma^2
    "X = Vx(3)",  # x_i
    "Y = Vy(3)",  # y_j
    "B = Vy(3)",
)  # b_j


def dense_conv(g, x, y, b):
    return torch.exp(-g * ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)) @ b


@pytest.mark.parametrize("sigma_kind", ["float", "tensor"])
def test_gaussian_convolution(sigma_kind, seed):
    x, y, b = torch.rand(N, 3, dtype=F64), torch.rand(M, 3, dtype=F64), torch.rand(M, 3, dtype=F64)
    sigma = 0.8 if sigma_kind == "float" else torch.tensor([0.8], dtype=F64)
    a = gaussian_conv(1 / sigma**2, x, y, b)
    assert a.shape == (N, 3)
    torch.testing.assert_close(a, dense_conv(1 / 0.8**2, x, y, b))


def hamiltonian(conv, g, q, p):
    """H(q, p) = 1/2 sum_i p_i . (K(q, q) p)_i"""
    return 0.5 * (p * conv(g, q, q, p)).sum()


def test_hamiltonian_and_its_gradient(seed):
    q = torch.rand(N, 3, dtype=F64, requires_grad=True)
    p = torch.rand(N, 3, dtype=F64, requires_grad=True)
    h = hamiltonian(gaussian_conv, 2.0, q, p)
    h_ref = hamiltonian(dense_conv, 2.0, q, p)
    torch.testing.assert_close(h, h_ref)
    for got, want in zip(torch.autograd.grad(h, [q, p]), torch.autograd.grad(h_ref, [q, p])):
        torch.testing.assert_close(got, want)


def shoot(conv, q0, p0, steps=10, dt=0.1, g=2.0):
    """Explicit Euler on Hamilton's equations dq/dt = dH/dp, dp/dt = -dH/dq (the geodesic shooting)."""
    q, p = q0, p0
    for _ in range(steps):
        dq, dp = torch.autograd.grad(hamiltonian(conv, g, q, p), [p, q], create_graph=True)
        q, p = q + dt * dq, p - dt * dp
    return q, p


def test_geodesic_shooting_end_to_end(seed):
    q0 = torch.rand(N, 3, dtype=F64, requires_grad=True)
    p0 = torch.randn(N, 3, dtype=F64, requires_grad=True)
    target = torch.rand(N, 3, dtype=F64)

    def loss_and_grad(conv):
        q, _ = shoot(conv, q0, p0)
        loss = ((q - target) ** 2).sum()
        return (loss, q, *torch.autograd.grad(loss, [p0, q0]))

    got, want = loss_and_grad(gaussian_conv), loss_and_grad(dense_conv)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


# The normalized-kernel loop: log-domain Sinkhorn iterations that normalize a Gaussian kernel
# k_ij = exp(a_i + b_j - g |x_i - y_j|^2) so that its columns (then rows, at convergence) sum to 1.
lse_j = generic_logsumexp("-G*SqDist(X,Y)+B", "A = Vi(1)", "G = Pm(1)", "X = Vi(3)", "Y = Vj(3)", "B = Vj(1)")
lse_i = Genred("-G*SqDist(X,Y)+A", ["G = Pm(1)", "X = Vi(3)", "Y = Vj(3)", "A = Vi(1)"], "LogSumExp", axis=0)


def normalize(x, y, g, steps, pykmr=True):
    a, b = torch.zeros(x.shape[0], 1, dtype=F64), torch.zeros(y.shape[0], 1, dtype=F64)
    c = g * ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    for _ in range(steps):
        a = -lse_j(g, x, y, b) if pykmr else -torch.logsumexp(-c + b.T, 1, keepdim=True)
        b = -lse_i(g, x, y, a) if pykmr else -torch.logsumexp(-c + a, 0)[:, None]
    return a, b


def test_normalized_kernel_loop(seed):
    x = torch.rand(N, 3, dtype=F64, requires_grad=True)
    y = torch.rand(M, 3, dtype=F64)
    a, b = normalize(x, y, 4.0, steps=10)
    a_ref, b_ref = normalize(x, y, 4.0, steps=10, pykmr=False)
    torch.testing.assert_close(a, a_ref)
    torch.testing.assert_close(b, b_ref)
    k = torch.exp(a + b.T - 4.0 * ((x[:, None] - y[None]) ** 2).sum(-1))
    torch.testing.assert_close(k.sum(0), torch.ones(M, dtype=F64))  # columns normalized by the last step
    # differentiated through the 20 LogSumExp reductions
    (g,) = torch.autograd.grad(a.sum() + b.sum(), x)
    (g_ref,) = torch.autograd.grad(a_ref.sum() + b_ref.sum(), x)
    torch.testing.assert_close(g, g_ref)
