"""
Normalised LDDMM
================

In plain LDDMM, the velocity field carried by momenta P_j on points x_j is v(x) = sum_j k(x, x_j) P_j and
its kinetic energy is 1/2 <P, K P>: it depends on the geometry of the points, not on the mass they carry.
For a measure mu = sum_i mu_i delta_{x_i}, the *normalised* kernel

    k~(x_i, x_j) = lambda_i k(x_i, x_j) lambda_j,   with   lambda_i sum_j k(x_i, x_j) mu_j lambda_j = 1,

(lambda: a few iterations of symmetric Sinkhorn) reproduces constants on the measure, so translating mu by v
with the momentum v per unit mass costs exactly 1/2 ‖mu‖ ‖v‖^2, a physical kinetic energy. We use the
heavy-tailed kernel k = 1 + cauchy(sigma=0.1) + cauchy(sigma=1), compare the translation costs of plain and
normalised LDDMM, and shoot a translation with both.
"""

# %%
import argparse
import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from pykmr.torch import Kernel, kernel_product

parser = argparse.ArgumentParser(description=(__doc__ or "pykmr example").strip().splitlines()[0])
parser.add_argument("--small", action="store_true", help="a quick run (CI)")
parser.add_argument("--out", default=".", help="folder for the PNG figures")
args = parser.parse_args()
os.makedirs(args.out, exist_ok=True)
torch.manual_seed(0)
dtype = torch.float64

# %%
# The heavy-tailed kernel: k(x, y) = 1 + 1 / (1 + ‖x-y‖^2 / 0.1^2) + 1 / (1 + ‖x-y‖^2 / 1^2). As a Kernel
# expression of ``pykmr.torch.kernel_product`` it is one formula, compiled on first use. The sums below use
# its three terms instead: sum_j 1 b_j is a torch sum, and each Cauchy term is the precompiled Cauchy kernel
# (gradients included), so the shooting compiles nothing. The figure and the checks use the expression too.
heavy_tailed = {"id": Kernel("1 + cauchy(x,y) + cauchy(x,y)"), "gamma": (1 / 0.1**2, 1 / 1.0**2)}
cauchy = Kernel("cauchy(x,y)")


def k_mul(x, y, b):
    """sum_j k(x_i, y_j) b_j"""
    out = b.sum(0, keepdim=True).expand(x.shape[0], b.shape[1])
    for gamma in heavy_tailed["gamma"]:
        out = out + kernel_product({"id": cauchy, "gamma": gamma}, x, y, b)
    return out


# %%
# lambda by symmetric Sinkhorn: lambda <- sqrt(lambda / K(mu lambda)), a fixed point iteration that
# converges in a few steps for this kernel (written in the log domain for the averaging).
def normaliser(x, mu, iterations=20):
    log_lam = torch.zeros_like(mu)
    for _ in range(iterations):
        log_lam = 0.5 * (log_lam - k_mul(x, x, mu * log_lam.exp()).log())
    return log_lam.exp()


def velocity_normalised(x, mu, p):
    """v_i = sum_j k~(x_i, x_j) mu_j p_j  (p: momentum per unit mass)"""
    lam = normaliser(x, mu)
    return lam * k_mul(x, x, lam * mu * p)


# %%
# Translation costs. Normalised: p = v on every point gives the velocity v everywhere; its energy is
# 1/2 sum_i mu_i p_i . v_i. Plain: the cheapest momenta giving the velocity v at every point solve K P = v
# (conjugate gradient, each product by K a pykmr reduction); the energy is 1/2 <P, K P> = 1/2 <P, v>.
def conjugate_gradient(x, rhs, iterations=500, tol=1e-10):
    sol = torch.zeros_like(rhs)
    r = rhs.clone()
    d = r.clone()
    rr = (r * r).sum(0)
    for _ in range(iterations):
        kd = k_mul(x, x, d)
        alpha = rr / (d * kd).sum(0)
        sol, r = sol + alpha * d, r - alpha * kd
        rr_new = (r * r).sum(0)
        if rr_new.max().sqrt() < tol * rhs.norm():
            break
        d, rr = r + rr_new / rr * d, rr_new
    return sol


v = torch.tensor([[1.0, 0.5]], dtype=dtype)  # the translation
n = 150 if args.small else 600
unit_disk = torch.randn(n, 2, dtype=dtype)
unit_disk = unit_disk / unit_disk.norm(dim=1, keepdim=True) * torch.rand(n, 1, dtype=dtype).sqrt()
radii = torch.logspace(-1.5, 0.5, 6 if args.small else 12, dtype=dtype)
mass, cost_plain, cost_norm, vel_err = [], [], [], []
for r in radii:
    x = r * unit_disk
    mu = torch.full((n, 1), math.pi * r.item() ** 2 / n, dtype=dtype)  # density 1: |mu| = area
    p = v.expand(n, 2)
    vel = velocity_normalised(x, mu, p)
    vel_err.append((vel - v).abs().max().item())
    cost_norm.append(0.5 * (mu * p * vel).sum().item())
    big_p = conjugate_gradient(x, v.expand(n, 2).clone())
    cost_plain.append(0.5 * (big_p * v).sum().item())
    mass.append(mu.sum().item())
    half_v2 = 0.5 * v.square().sum().item()
    print(
        f"radius {r:.3f}: |mu| = {mass[-1]:.4f}, translation cost / (|v|^2/2): plain "
        f"{cost_plain[-1] / half_v2:.4f}, normalised {cost_norm[-1] / half_v2:.4f}"
    )


# %%
# Geodesic shooting of the translation with the Hamiltonian of each model, 10 Euler steps; the normalised
# Hamiltonian depends on q through lambda too, and autograd differentiates through the Sinkhorn loop.
def h_plain(q, p, mu):
    big_p = mu * p  # the same momentum per unit mass
    return 0.5 * (big_p * k_mul(q, q, big_p)).sum()


def h_normalised(q, p, mu):
    return 0.5 * (mu * p * velocity_normalised(q, mu, p)).sum()


def shoot(hamiltonian, q, p, mu, steps=10):
    energies = []
    for _ in range(steps):
        q, p = q.detach().requires_grad_(True), p.detach().requires_grad_(True)
        h = hamiltonian(q, p, mu)
        dq, dp = torch.autograd.grad(h, (p, q))
        energies.append(h.item())
        q, p = q + dq / (steps * mu), p - dp / (steps * mu)  # momentum per unit mass: divide by mu
    return q.detach(), energies


t = torch.linspace(0, 2 * math.pi, n + 1, dtype=dtype)[:-1, None]
shape = torch.cat([0.5 * t.cos(), 0.25 * t.sin() + 0.1 * (3 * t).sin()], 1)  # a wavy closed curve
mu_shape = (0.2 + (t.cos() + 1)) / n  # a non-uniform mass along it
mu_shape = mu_shape / mu_shape.sum() * 0.5  # |mu| = 0.5
moved_plain, e_plain = shoot(h_plain, shape, v.expand(n, 2), mu_shape)
moved_norm, e_norm = shoot(h_normalised, shape, v.expand(n, 2), mu_shape)
disp_err = (moved_norm - shape - v).abs().max().item()
print(
    f"shooting: normalised LDDMM moved every point by v within {disp_err:.1e}; energy "
    f"{e_norm[-1]:.6f} (|mu| |v|^2 / 2 = {0.5 * 0.5 * v.square().sum().item():.6f})"
)

# %%
# Figure: the kernel's profile, the translation costs, and the shot shapes.
fig, axes = plt.subplots(1, 3, figsize=(17, 5), constrained_layout=True)
r = torch.logspace(-3, 2, 200, dtype=dtype)
origin, one = torch.zeros(1, 2, dtype=dtype), torch.ones(1, 1, dtype=dtype)
profile = kernel_product(heavy_tailed, torch.stack([r, 0 * r], 1), origin, one)
axes[0].loglog(r, profile, label="1 + cauchy(0.1) + cauchy(1)")
axes[0].loglog(r, 3 * torch.exp(-(r**2)), label="3 gaussian(1), for comparison")
axes[0].set(title="heavy-tailed kernel profile", xlabel="|x - y|", ylabel="k(x, y)", ylim=(1e-3, 5))
axes[0].legend()
half_v2 = 0.5 * v.square().sum().item()
axes[1].loglog(mass, [c / half_v2 for c in cost_plain], "o-", label="plain LDDMM (min over momenta)")
axes[1].loglog(mass, [c / half_v2 for c in cost_norm], "s-", label="normalised LDDMM")
axes[1].loglog(mass, mass, "k--", label="|mu| (kinetic energy)")
axes[1].set(
    title="cost of translating a disk by v", xlabel="mass |mu| (disk area)", ylabel="cost / (|v|^2 / 2)"
)
axes[1].legend()
for ax in axes[:2]:
    ax.grid(True, which="both", alpha=0.3)
ax = axes[2]
ax.scatter(*shape.T, s=4 + 3000 * mu_shape[:, 0], c="k", label="initial shape (size: mass)")
ax.scatter(*moved_plain.T, s=4, c="tab:red", label="plain LDDMM, momentum v per unit mass")
ax.scatter(*moved_norm.T, s=4, c="tab:blue", label="normalised LDDMM, momentum v per unit mass")
ax.plot(*(shape + v).T, c="tab:blue", lw=0.5, alpha=0.5, label="exact translation by v")
ax.set(title="shooting a translation (10 Euler steps)", xlabel="x[0]", ylabel="x[1]", aspect="equal")
ax.legend(loc="lower right", fontsize=8)
fig.savefig(os.path.join(args.out, "normalized_lddmm.png"), dpi=80)

# %%
# Numeric checks: the sum of the three terms equals the Kernel expression (relative 1e-12), the normalised
# velocity is v everywhere and the normalised translation cost is ‖mu‖ ‖v‖^2 / 2 (relative 1e-6), the
# shooting moved every point by v (1e-4) and kept the energy ‖mu‖ ‖v‖^2 / 2 at every step (relative 1e-5).
b_test = torch.randn(n, 1, dtype=dtype)
expr_err = (k_mul(shape, shape, b_test) - kernel_product(heavy_tailed, shape, shape, b_test)).abs().max()
expr_err = (expr_err / k_mul(shape, shape, b_test).abs().max()).item()
print(f"three precompiled terms vs the Kernel expression: relative difference {expr_err:.1e}")
if not expr_err < 1e-12:
    raise SystemExit(f"check failed: the kernel's terms differ from its expression by {expr_err:.1e}")
cost_err = max(abs(c / (m * half_v2) - 1) for c, m in zip(cost_norm, mass))
print(f"max velocity error {max(vel_err):.1e}, max relative cost error {cost_err:.1e}")
if not (max(vel_err) < 1e-6 and cost_err < 1e-6):
    raise SystemExit("check failed: the normalised kernel does not reproduce translations")
energy_err = max(abs(e / (0.5 * half_v2) - 1) for e in e_norm)  # |mu| = 0.5
print(f"normalised shooting: max relative energy error {energy_err:.1e}")
if not energy_err < 1e-5:
    raise SystemExit(f"check failed: the normalised shooting changed the energy (relative {energy_err:.1e})")
if not disp_err < 1e-4:
    raise SystemExit(f"check failed: normalised shooting is not a translation (error {disp_err:.1e})")
if not max(cost_plain) < 1.0 * half_v2 + 1e-9:
    raise SystemExit("check failed: the plain translation cost should stay below |v|^2 / 2 for k = 1 + ...")
print("check passed")
