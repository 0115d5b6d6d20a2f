"""
Anisotropic Gaussian kernels
============================

A Gaussian kernel ``k(x, y) = exp(-(x - y)^T G (x - y))`` with

* an **isotropic** G = g Id (one scalar gamma),
* a **diagonal** G (one gamma per dimension),
* a **full** symmetric positive G (a 2x2 matrix: the inverse of a covariance),

on 2D points, with ``pykmr.torch.kernel_product``. A scalar gamma hits the precompiled Gaussian kernel; a
vector or a matrix gamma becomes ``WeightedSqDist(G, X, Y)``, compiled once on first use and cached.
We draw the level sets of each kernel around the origin and the convolution of a signal by each kernel.
"""

# %%
# Arguments: ``--small`` for a quick run (CI), ``--out DIR`` for the figures.
import argparse
import math
import os

import matplotlib

matplotlib.use("Agg")  # no display needed
import matplotlib.pyplot as plt
import torch
from pykmr.torch import Kernel, kernel_product

parser = argparse.ArgumentParser(description=(__doc__ or "pykmr example").strip().splitlines()[0])
parser.add_argument("--small", action="store_true", help="a quick run (CI)")
parser.add_argument("--out", default=".", help="folder for the PNG figures")
args = parser.parse_args()
os.makedirs(args.out, exist_ok=True)
torch.manual_seed(0)

# %%
# The three metrics G. The full one is the inverse of a covariance stretched along the diagonal.
sigma = 0.15
c, s = math.cos(math.pi / 6), math.sin(math.pi / 6)
rot = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)  # a rotation by 30 degrees
cov = rot @ torch.diag(torch.tensor([3.0, 0.3], dtype=torch.float64) * sigma**2) @ rot.T
metrics = {
    "isotropic": torch.tensor([1 / sigma**2], dtype=torch.float64),  # gamma: a scalar
    "diagonal": torch.tensor([0.25, 4.0], dtype=torch.float64) / sigma**2,  # one gamma per axis
    "full covariance": torch.linalg.inv(cov).reshape(-1),  # a 2x2 matrix, row-major
}
gaussian = Kernel("gaussian(x,y)")

# %%
# A regular grid of evaluation points (the i's of the reduction).
n = 60 if args.small else 200
ticks = torch.linspace(-1, 1, n, dtype=torch.float64)
gx, gy = torch.meshgrid(ticks, ticks, indexing="xy")
grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)  # [n*n, 2]

# %%
# Level sets: k(grid_i, 0), a reduction over a single j with weight 1.
origin, one = torch.zeros(1, 2, dtype=torch.float64), torch.ones(1, 1, dtype=torch.float64)
levels = {
    name: kernel_product({"id": gaussian, "gamma": g}, grid, origin, one) for name, g in metrics.items()
}

# %%
# Convolution of a signal: M random points y_j with weights +1 / -1, smoothed on the grid by each kernel:
# a_i = sum_j k(grid_i, y_j) b_j.
m = 200 if args.small else 2000
y = 1.6 * torch.rand(m, 2, dtype=torch.float64) - 0.8
b = torch.where(y[:, :1] * y[:, 1:] > 0, 1.0, -1.0).to(torch.float64)  # a checkerboard sign
convs = {name: kernel_product({"id": gaussian, "gamma": g}, grid, y, b) for name, g in metrics.items()}

# %%
# Figure: level sets (top row) and the convolutions (bottom row).
fig, axes = plt.subplots(2, 3, figsize=(13, 8.5), constrained_layout=True)
for col, name in enumerate(metrics):
    ax = axes[0, col]
    cs = ax.contour(gx, gy, levels[name].reshape(n, n), levels=[0.1, 0.3, 0.5, 0.7, 0.9], cmap="viridis")
    ax.clabel(cs, fontsize=8)
    ax.set_title(f"{name} Gaussian: level sets of k(x, 0)")
    ax.set(xlim=(-0.5, 0.5), ylim=(-0.5, 0.5))  # zoom on the kernel's support
    ax = axes[1, col]
    img = ax.imshow(convs[name].reshape(n, n), extent=(-1, 1, -1, 1), origin="lower", cmap="RdBu_r")
    ax.scatter(
        y[:150, 0],
        y[:150, 1],
        c=b[:150, 0],
        cmap="RdBu_r",
        s=6,
        edgecolors="k",
        linewidths=0.3,
        label="signal points (150 shown)",
    )
    ax.set_title(f"{name}: sum_j k(x, y_j) b_j")
    ax.legend(loc="lower left", fontsize=8)
    fig.colorbar(img, ax=ax, shrink=0.8, label="convolution value")
for ax in axes.flat:
    ax.set_xlabel("x[0]")
    ax.set_ylabel("x[1]")
    ax.set_aspect("equal")
fig.savefig(os.path.join(args.out, "anisotropic_kernels.png"), dpi=80)

# %%
# Numeric check: every result against a dense torch evaluation (float64, relative 1e-10), on 2000 random
# grid points (the dense N x M x 2 array of differences would be large at full size).
rows = torch.randperm(n * n)[:2000]
for name, g in metrics.items():
    gm = g.reshape(2, 2) if g.numel() == 4 else torch.diag(g.expand(2))
    diff = grid[rows, None, :] - y[None, :, :]
    dense = torch.exp(-torch.einsum("ijd,de,ije->ij", diff, gm, diff)) @ b
    err = ((convs[name][rows] - dense).abs().max() / dense.abs().max()).item()
    print(f"{name:16s} max relative error vs dense torch: {err:.2e}")
    if not err < 1e-10:
        raise SystemExit(f"check failed: {name} convolution differs from dense torch by {err:.2e}")
print("check passed")
