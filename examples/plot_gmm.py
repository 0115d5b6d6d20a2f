"""
Fitting a Gaussian mixture model
================================

Maximum-likelihood fit of a K-component Gaussian mixture to 2D samples. The log-likelihood of a sample,

    log p(x_i) = LogSumExp_j [ log w_j + 1/2 log det P_j - 1/2 (x_i - m_j)^T P_j (x_i - m_j) ] - log(2 pi),

is one ``LogSumExp`` reduction over the components j (``pykmr.torch.generic_logsumexp``) with the precision
matrices P_j in a j-variable of ``WeightedSqDist``. Autograd differentiates it and Adam climbs it.
"""

# %%
import argparse
import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from pykmr.torch import generic_logsumexp

parser = argparse.ArgumentParser(description=(__doc__ or "pykmr example").strip().splitlines()[0])
parser.add_argument("--small", action="store_true", help="a quick run (CI)")
parser.add_argument("--out", default=".", help="folder for the PNG figures")
args = parser.parse_args()
os.makedirs(args.out, exist_ok=True)
torch.manual_seed(0)
dtype = torch.float64

# %%
# Data: a noisy ring plus an elongated blob.
n = 4000 if args.small else 50000
t = 2 * math.pi * torch.rand(n // 2, dtype=dtype)
ring = torch.stack([t.cos(), t.sin()], 1) + 0.08 * torch.randn(n // 2, 2, dtype=dtype)
blob = torch.randn(n - n // 2, 2, dtype=dtype) @ torch.tensor([[0.5, 0.2], [0.0, 0.1]], dtype=dtype)
x = torch.cat([ring, blob + torch.tensor([0.0, -1.8], dtype=dtype)])

# %%
# The reduction: X = Vi(2) the samples; each component j is one row of T = Vj(7): its mean (T[0:2]), half its
# precision matrix (T[2:6], row-major 2x2) and its log-weight plus 1/2 log det of the precision (T[6]).
# One j-variable rather than three: autograd then needs a single gradient formula (compiled once), not one
# per variable.
log_sum = generic_logsumexp(
    "Extract(T,6,1) - WeightedSqDist(Extract(T,2,4), X, Extract(T,0,2))",
    "L = Vi(1)",
    "X = Vi(2)",
    "T = Vj(7)",
)


# %%
# Parameters: means, lower-triangular Cholesky factors of the precisions (positive diagonal through exp),
# and weight logits.
k = 10
means = x[torch.randperm(n)[:k]].clone().requires_grad_(True)
log_diag = torch.full((k, 2), math.log(2.0), dtype=dtype, requires_grad=True)
off_diag = torch.zeros(k, dtype=dtype, requires_grad=True)
logits = torch.zeros(k, dtype=dtype, requires_grad=True)


def mixture():
    """(precision matrices [k, 2, 2], log-weights + 1/2 log det [k, 1]) from the free parameters."""
    d0, d1 = log_diag.exp().unbind(1)
    chol = torch.stack([torch.stack([d0, torch.zeros_like(d0)], 1), torch.stack([off_diag, d1], 1)], 1)
    prec = chol @ chol.transpose(1, 2)
    bias = torch.log_softmax(logits, 0) + log_diag.sum(1)  # log det P = 2 sum log diag(chol)
    return prec, bias[:, None]


def packed():
    """The rows T_j = (mean, half the precision, bias) [k, 7] of the reduction."""
    prec, bias = mixture()
    return torch.cat([means, (prec / 2).reshape(k, 4), bias], 1)


def mean_log_likelihood(points):
    ll = log_sum(points, packed())
    return ll.mean() - math.log(2 * math.pi)


# %%
# Maximum likelihood with Adam.
iterations = 60 if args.small else 300
opt = torch.optim.Adam([means, log_diag, off_diag, logits], lr=0.05)
history = []
for it in range(iterations):
    opt.zero_grad()
    loss = -mean_log_likelihood(x)
    loss.backward()
    opt.step()
    history.append(-loss.item())
    if it % 20 == 0:
        print(f"iteration {it:4d}: mean log-likelihood {history[-1]:.4f}")
with torch.no_grad():
    final = mean_log_likelihood(x).item()
history.append(final)
print(f"final mean log-likelihood {final:.4f} (initial {history[0]:.4f})")

# %%
# Figure: the fitted density over the samples, and the log-likelihood per iteration.
ticks = torch.linspace(-2.5, 2.5, 150, dtype=dtype)
gx, gy = torch.meshgrid(ticks, ticks, indexing="xy")
grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
with torch.no_grad():
    density = (log_sum(grid, packed()) - math.log(2 * math.pi)).exp()

fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 5.2), constrained_layout=True)
ax0.scatter(x[:3000, 0], x[:3000, 1], s=1, c="k", alpha=0.3, label="samples (3000 shown)")
cs = ax0.contour(gx, gy, density.reshape(150, 150), levels=8, cmap="viridis")
ax0.clabel(cs, fontsize=7)
ax0.scatter(*means.detach().T, c="r", marker="x", label=f"fitted means (K = {k})")
ax0.set(title="fitted GMM density", xlabel="x[0]", ylabel="x[1]", aspect="equal")
ax0.legend(loc="upper right", fontsize=8)
ax1.plot(history, label="mean log-likelihood (pykmr LogSumExp)")
ax1.set(title="maximum likelihood with Adam", xlabel="iteration", ylabel="mean log-likelihood")
ax1.grid(True, alpha=0.3)
ax1.legend()
fig.savefig(os.path.join(args.out, "gmm.png"), dpi=80)

# %%
# Numeric checks: the log-likelihood increased by a clear margin, and the pykmr log-likelihood equals a
# dense torch one (float64, relative 1e-10) at the fitted parameters.
with torch.no_grad():
    prec, bias = mixture()
    diff = x[:, None, :] - means[None, :, :]
    quad = torch.einsum("ijd,jde,ije->ij", diff, prec, diff)
    dense = (torch.logsumexp(bias.T - quad / 2, 1).mean() - math.log(2 * math.pi)).item()
err = abs(dense - final) / abs(dense)
print(f"log-likelihood: pykmr {final:.10f}, dense torch {dense:.10f}, relative difference {err:.1e}")
if not final > history[0] + 0.5:
    raise SystemExit(f"check failed: the log-likelihood went from {history[0]:.4f} to {final:.4f}")
if not err < 1e-10:
    raise SystemExit(f"check failed: pykmr and dense torch log-likelihoods differ by {err:.1e}")
print("check passed")
