"""
An optimal transport plan with log-domain Sinkhorn
==================================================

Entropic optimal transport between two point clouds x (weights a) and y (weights b) for the cost
C(x, y) = ‖x - y‖^2. The plan is pi_ij = a_i b_j exp((f_i + g_j - C_ij) / eps) for dual potentials f, g
found by Sinkhorn's iterations, written in the log domain (stable for small eps):

    f_i = -eps LogSumExp_j [ (g_j - C_ij) / eps + log b_j ],
    g_j = -eps LogSumExp_i [ (f_i - C_ij) / eps + log a_i ].

Each update is one pykmr LogSumExp reduction of ``-G*SqDist(X,Y)+B`` (a precompiled kernel): the N x M plan
is never stored. We draw the strongest coupling of each source point (an ArgMin reduction) and the marginal
errors per iteration. Both reductions are precompiled kernels: the script compiles nothing.
"""

# %%
import argparse
import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from matplotlib.collections import LineCollection
from pykmr.torch import generic_argmin, generic_logsumexp

parser = argparse.ArgumentParser(description=(__doc__ or "pykmr example").strip().splitlines()[0])
parser.add_argument("--small", action="store_true", help="a quick run (CI)")
parser.add_argument("--out", default=".", help="folder for the PNG figures")
args = parser.parse_args()
os.makedirs(args.out, exist_ok=True)
torch.manual_seed(0)
dtype = torch.float64

# %%
# Two clouds: a crescent and two blobs, with uniform weights.
n, m = (400, 500) if args.small else (2000, 2500)
t = math.pi * torch.rand(n, dtype=dtype)
x = torch.stack([t.cos(), t.sin() - 0.3], 1) * 0.6 + 0.03 * torch.randn(n, 2, dtype=dtype)
centers = torch.tensor([[-0.5, -0.6], [0.6, -0.5]], dtype=dtype)
y = centers[torch.arange(m) % 2] + 0.15 * torch.randn(m, 2, dtype=dtype)
a, b = torch.full((n, 1), 1 / n, dtype=dtype), torch.full((m, 1), 1 / m, dtype=dtype)

# %%
# The reduction: lse(G, X, Y, B)_i = log sum_j exp(-G ‖x_i - y_j‖^2 + B_j). Swapping the clouds' roles gives
# the update of g with the same routine.
lse = generic_logsumexp("-G*SqDist(X,Y)+B", "L = Vi(1)", "G = Pm(1)", "X = Vi(2)", "Y = Vj(2)", "B = Vj(1)")
eps = 0.1**2  # the "blur" scale 0.1, squared
max_iterations = 1000
tolerance = 1e-4  # stop when the row marginal L1 error is below this (the check asks for 1e-3)


def update_f(g, eps):
    return -eps * lse(1 / eps, x, y, g / eps + b.log())


def update_g(f, eps):
    return -eps * lse(1 / eps, y, x, f / eps + a.log())


# %%
# Sinkhorn iterations, with "epsilon scaling": eps starts at 1 and decreases geometrically to its target
# value over the first 30 iterations (the potentials of a coarse problem are a good start for a finer one),
# then stays there until the marginals are within the tolerance.
# After the g-update the column marginals are exact, and the row marginal of the plan is
# a_i exp((f_i - f'_i) / eps) with f' the next f-update: its L1 error costs no extra reduction.
f, g = torch.zeros(n, 1, dtype=dtype), torch.zeros(m, 1, dtype=dtype)
errors = []
f_next = update_f(g, 1.0)
for it in range(max_iterations):
    e = max(eps, 0.85**it)
    f = f_next
    g = update_g(f, e)
    f_next = update_f(g, e)
    errors.append((a * ((f - f_next) / e).exp() - a).abs().sum().item())
    if it % 50 == 0:
        print(f"iteration {it:4d}: eps {e:.4f}, row marginal L1 error {errors[-1]:.2e}")
    if e == eps and errors[-1] < tolerance:
        break
f = f_next  # the last f-update: the potentials (f, g) of the plan drawn below
print(f"final row marginal L1 error {errors[-1]:.2e} after {len(errors)} iterations (eps = {eps:.2g})")


# %%
# The strongest coupling of each x_i: j* = argmax_j pi_ij = argmin_j (C_ij - g_j), an ArgMin reduction;
# its share of x_i's mass is pi_ij* / a_i. A lifting trick makes it the precompiled ArgMin of SqDist: with
# y'_j = (y_j, sqrt(c - g_j)) and x'_i = (x_i, 0) for a constant c >= max g, ‖x'_i - y'_j‖^2 = C_ij - g_j + c.
nearest = generic_argmin("SqDist(X,Y)", "J = Vi(1)", "X = Vi(3)", "Y = Vj(3)")
x_lift = torch.cat([x, torch.zeros(n, 1, dtype=dtype)], 1)
y_lift = torch.cat([y, (g.max() - g).sqrt()], 1)
j_star = nearest(x_lift, y_lift).reshape(-1)
share = (b[j_star, 0].log() + (f[:, 0] + g[j_star, 0] - ((x - y[j_star]) ** 2).sum(1)) / eps).exp()
print(f"the strongest coupling carries {share.median():.2f} of a source point's mass (median)")

# %%
# Figure: the clouds with each source point joined to its strongest target (shade: the share of its mass),
# and the marginal errors per iteration.
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 5.2), constrained_layout=True)
shown = torch.randperm(n)[:400]
segments = torch.stack([x[shown], y[j_star[shown]]], 1).numpy()
lines = LineCollection(
    segments,
    colors="k",
    linewidths=0.6,
    alpha=0.25 + 0.75 * share[shown].numpy() / share.max().item(),
    label="strongest coupling (darker: larger share)",
)
ax0.add_collection(lines)
ax0.scatter(x[:, 0], x[:, 1], s=3, c="tab:red", label=f"source x ({n} points)")
ax0.scatter(y[:, 0], y[:, 1], s=3, c="tab:blue", label=f"target y ({m} points)")
ax0.set(
    title=f"entropic OT plan (eps = {eps:.2g}), {len(shown)} source points drawn",
    xlabel="x[0]",
    ylabel="x[1]",
    aspect="equal",
)
ax0.legend(loc="lower center", fontsize=8, markerscale=3)
ax1.semilogy(errors, label="|pi 1 - a|_1 (row marginal)")
ax1.axhline(1e-3, color="k", ls="--", label="check threshold 1e-3")
ax1.set(title="Sinkhorn: marginal error per iteration", xlabel="iteration", ylabel="L1 marginal error")
ax1.grid(True, alpha=0.3)
ax1.legend()
fig.savefig(os.path.join(args.out, "optimal_transport.png"), dpi=80)

# %%
# Numeric checks: the marginals within 1e-3 (L1), and both marginals of the plan computed densely in torch
# (a sample of rows when the plan is large) agree with a and b.
if not errors[-1] < 1e-3:
    raise SystemExit(f"check failed: row marginal error {errors[-1]:.2e} >= 1e-3")
rows = torch.randperm(n)[: min(n, 2000)]
plan = a[rows] * b.T * ((f[rows] + g.T - torch.cdist(x[rows], y) ** 2) / eps).exp()
row_err = (plan.sum(1, keepdim=True) / a[rows] - 1).abs().max().item()
argmax_agree = (plan.argmax(1) == j_star[rows]).double().mean().item()
print(f"dense torch check: the ArgMin finds the strongest coupling on {100 * argmax_agree:.2f}% of the rows")
if not argmax_agree > 0.99:  # float64 near-ties may break differently
    raise SystemExit(f"check failed: the strongest couplings agree with dense torch on {argmax_agree:.4f}")
print(f"dense torch check: max relative row marginal error {row_err:.2e} on {len(rows)} rows")
if n <= 2000:
    col_err = (plan.sum(0)[:, None] - b).abs().sum().item()
    print(f"dense torch check: column marginal L1 error {col_err:.2e}")
    if not col_err < 1e-3:
        raise SystemExit(f"check failed: dense column marginal error {col_err:.2e}")
if not row_err < 0.05:
    raise SystemExit(f"check failed: dense row marginal relative error {row_err:.2e}")
print("check passed")
