"""
Surface registration with LDDMM
===============================

Large Deformation Diffeomorphic Metric Mapping of a sphere onto a target surface. The deformation is the
geodesic flow of the Hamiltonian

    H(q, p) = 1/2 < p, K_q p >,    (K_q p)_i = sum_j exp(-‖q_i - q_j‖^2 / sigma^2) p_j,

integrated from the initial momenta p0 on the vertices q0 with 10 explicit Euler steps of Hamilton's
equations (dq/dt = dH/dp, dp/dt = -dH/dq, dH/dq by autograd with ``create_graph=True`` so that the
whole flow stays differentiable). The data attachment compares the deformed and target meshes as
*currents*: ‖S - T‖^2 with <S, T> = sum_ij exp(-‖c_i - c'_j‖^2 / s^2) (n_i . n'_j) over the triangles'
centers c and area normals n. L-BFGS minimises  regularity + data  over p0.

Every kernel sum is a ``pykmr.torch.kernel_product``; the N x N kernel matrices are never stored. A second
figure times one forward-backward pass of the 10-step shooting with pykmr and with dense torch.
"""

# %%
import argparse
import os
import time

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
dtype = torch.float32


# %%
# Meshes, generated here: an icosphere (subdivided icosahedron) and a target made from it by a smooth map.
def icosphere(subdivisions):
    """(vertices [V, 3], triangles [F, 3]) of a unit sphere."""
    t = (1 + 5**0.5) / 2
    # fmt: off
    verts = [(-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0), (0, -1, t), (0, 1, t), (0, -1, -t), (0, 1, -t),
             (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1)]
    faces = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4), (11, 10, 2),
             (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9), (4, 9, 5),
             (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1)]
    # fmt: on
    verts = [tuple(c / (1 + t * t) ** 0.5 for c in v) for v in verts]
    for _ in range(subdivisions):
        middle = {}  # edge -> index of its midpoint, shared by the edge's two triangles

        def mid(i, j, middle=middle):
            key = (min(i, j), max(i, j))
            if key not in middle:
                v = [(a + b) / 2 for a, b in zip(verts[i], verts[j])]
                norm = sum(c * c for c in v) ** 0.5
                verts.append(tuple(c / norm for c in v))
                middle[key] = len(verts) - 1
            return middle[key]

        new_faces = []
        for a, b, c in faces:
            ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
            new_faces += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        faces = new_faces
    return torch.tensor(verts, dtype=dtype), torch.tensor(faces)


verts, faces = icosphere(2 if args.small else 3)
x, y, z = verts.unbind(1)
# target: stretched along x, flattened along y, bent into a bean shape
target = torch.stack([1.3 * x, 0.75 * y + 0.35 * x**2, 0.9 * z + 0.2 * x], 1)
print(f"meshes: {len(verts)} vertices, {len(faces)} triangles")

# %%
# Kernels: a Gaussian of width sigma_v for the deformations, one of width sigma_w for the data term.
gaussian = Kernel("gaussian(x,y)")
sigma_v, sigma_w = 0.5, 0.25


def k_v(x, y, p):
    """(K p)_i = sum_j k_v(x_i, y_j) p_j"""
    return kernel_product({"id": gaussian, "gamma": 1 / sigma_v**2}, x, y, p)


def hamiltonian(q, p):
    return 0.5 * (p * k_v(q, q, p)).sum()


def hamilton_equations(q, p, k=k_v):
    """(dH/dp, dH/dq) = (K_q p, sum_j (p_i . p_j) grad_1 k(q_i, q_j)), the second by autograd.

    The kernel is symmetric, so dH/dq is the gradient of <p, K(q', q) p> with respect to its first slot q'
    alone: differentiating that through the flow needs the second derivatives of one gradient formula (the
    precompiled Grad(gaussian, X)), four JIT compiles instead of twelve for the three slots of H.
    """
    q_first = q.clone() if q.requires_grad else q.detach().requires_grad_(True)
    (dq_h,) = torch.autograd.grad((p * k(q_first, q, p)).sum(), q_first, create_graph=True)
    return k(q, q, p), dq_h


def shoot(q, p, k=k_v, steps=10):
    """Explicit Euler on Hamilton's equations, differentiable end to end."""
    for _ in range(steps):
        dp_h, dq_h = hamilton_equations(q, p, k)
        q, p = q + dp_h / steps, p - dq_h / steps
    return q


def centers_normals(v):
    a, b, c = v[faces[:, 0]], v[faces[:, 1]], v[faces[:, 2]]
    return (a + b + c) / 3, torch.linalg.cross(b - a, c - a) / 2


def currents_distance(v, w):
    """|S - T|^2 for the currents of meshes with vertices v and w (same triangles' orientation)."""
    (cs, ns), (ct, nt) = centers_normals(v), centers_normals(w)
    params = {"id": gaussian, "gamma": 1 / sigma_w**2}
    dot = lambda c1, n1, c2, n2: (n1 * kernel_product(params, c1, c2, n2)).sum()  # noqa: E731
    return dot(cs, ns, cs, ns) - 2 * dot(cs, ns, ct, nt) + dot(ct, nt, ct, nt)


# %%
# Registration: L-BFGS on the initial momenta.
p0 = torch.zeros_like(verts, requires_grad=True)
gamma_reg = 0.01  # weight of the deformation's energy H(q0, p0)
data_before = currents_distance(verts, target).item()
history = []


def closure():
    opt.zero_grad()
    data = currents_distance(shoot(verts, p0), target)
    loss = gamma_reg * hamiltonian(verts, p0) + data
    loss.backward()
    history.append((loss.item(), data.item()))
    return loss


opt = torch.optim.LBFGS([p0], lr=1, max_iter=10 if args.small else 15, line_search_fn="strong_wolfe")
t0 = time.perf_counter()
opt.step(closure)
elapsed = time.perf_counter() - t0
deformed = shoot(verts, p0).detach()
data_after = currents_distance(deformed, target).item()
print(
    f"registration: {len(history)} evaluations in {elapsed:.1f} s; data term {data_before:.4f} -> "
    f"{data_after:.4f}"
)

# %%
# Figure 1: source, target and deformed meshes, and the loss per evaluation.
fig = plt.figure(figsize=(16, 4.6), constrained_layout=True)
for k, (v, title, color) in enumerate(
    (
        (verts, "source (sphere)", "tab:blue"),
        (target, "target", "tab:red"),
        (deformed, "deformed source (LDDMM)", "tab:purple"),
    )
):
    ax = fig.add_subplot(1, 4, k + 1, projection="3d")
    ax.plot_trisurf(
        *v.T.numpy(),
        triangles=faces.numpy(),
        color=color,
        alpha=0.8,
        linewidth=0.1,
        edgecolor="k",
        label=title,
    )
    if k == 2:
        ax.plot_trisurf(
            *target.T.numpy(),
            triangles=faces.numpy(),
            color="none",
            linewidth=0.2,
            edgecolor="tab:red",
            alpha=0.3,
            label="target (wireframe)",
        )
        ax.legend(loc="upper left", fontsize=8)
    ax.set(
        title=title, xlabel="x", ylabel="y", zlabel="z", xlim=(-1.3, 1.3), ylim=(-1.3, 1.3), zlim=(-1.3, 1.3)
    )
    ax.view_init(elev=25, azim=-60)
ax = fig.add_subplot(1, 4, 4)
ax.semilogy([h[0] for h in history], label="regularity + data")
ax.semilogy([h[1] for h in history], label="data term |S - T|^2 (currents)")
ax.set(title="L-BFGS on the initial momenta", xlabel="function evaluation", ylabel="loss")
ax.grid(True, alpha=0.3)
ax.legend()
fig.savefig(os.path.join(args.out, "lddmm_surface.png"), dpi=80)


# %%
# Timing: one forward-backward pass of the 10-step shooting (loss = ‖q(1) - target‖^2, gradient w.r.t. p0)
# for N points, pykmr against dense torch (which stores N x N matrices at every step). Dense torch is not run
# where its memory would pass half the available RAM: the bytes its autograd graph saves are measured at a
# small N and scaled as N^2, and the N where they pass it is marked "out of memory (estimated)". Both curves
# also stop where the next size would take more than a few seconds.
def dense_k_v(x, y, p):
    # squared distances by differences, not cdist: cdist's gradient is NaN at the zero diagonal
    return torch.exp(-((x[:, None, :] - y[None, :, :]) ** 2).sum(-1) / sigma_v**2) @ p


def dense_shoot_reference(q, p, steps=10):
    """The same flow in dense torch with both of Hamilton's equations by autograd of H (for the check)."""
    for _ in range(steps):
        h = 0.5 * (p * dense_k_v(q, q, p)).sum()
        dp_h, dq_h = torch.autograd.grad(h, (p, q), create_graph=True)
        q, p = q + dp_h / steps, p - dq_h / steps
    return q


def forward_backward(n, dense, shooting=None):
    q0 = torch.randn(n, 3, dtype=dtype, requires_grad=True)
    p = (0.1 * torch.randn(n, 3, dtype=dtype)).requires_grad_(True)
    q = shooting(q0, p) if shooting else shoot(q0, p, dense_k_v if dense else k_v)
    ((q - q0.detach()) ** 2).sum().backward()
    return p.grad


def saved_bytes(n):
    """Bytes the dense pass's autograd graph saves at size n."""
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        forward_backward(n, dense=True)
    return total[0]


def timed(n, dense):
    """Best of up to 3 runs (the machine may be shared), after a warm-up."""
    forward_backward(n, dense)  # warm-up (the registration above compiled the second derivatives)
    times = []
    while len(times) < 3 and sum(times) < time_cap / 2:
        t0 = time.perf_counter()
        forward_backward(n, dense)
        times.append(time.perf_counter() - t0)
    return min(times)


with open("/proc/meminfo") if os.path.exists("/proc/meminfo") else open(os.devnull) as f:
    avail = next((int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable")), 8 << 30)
budget = avail / 2
n_probe = 150 if args.small else 400
per_n2 = saved_bytes(n_probe) / n_probe**2
n_oom = (budget / per_n2) ** 0.5  # dense torch's graph would pass the budget from this N on
print(
    f"dense torch: out of memory from N = {n_oom:.0f} (estimated: {per_n2 / 2**30:.2e} GiB x N^2 saved by "
    f"its autograd graph > {budget / 2**30:.1f} GiB, half the available memory)"
)
sizes = [100, 300] if args.small else [100, 200, 500, 1000, 2000, 5000, 10000, 20000]
time_cap = 2.0 if args.small else 3.0  # seconds: stop a curve when the next size would take longer
results = {"pykmr CPU": {}, "dense torch CPU": {}}
for n in sizes:
    for name, dense in (("pykmr CPU", False), ("dense torch CPU", True)):
        done = results[name]
        if done and done[max(done)] * (n / max(done)) ** 2 > time_cap or (dense and n > n_oom):
            continue
        done[n] = timed(n, dense)
        print(f"{name:16s} N = {n:6d}: {done[n]:.3f} s")

fig2, ax = plt.subplots(figsize=(7, 5), constrained_layout=True)
for (name, done), marker in zip(results.items(), "os"):
    ax.loglog(list(done), list(done.values()), marker=marker, label=name)
oom_label = f"dense torch: out of memory from N = {n_oom:.0f} (estimated)"
ax.axvline(n_oom, color="tab:orange", ls=":", label=oom_label)
ax.set(
    title="LDDMM forward-backward pass (10 time steps), float32",
    xlabel="number of points N",
    ylabel="time (s)",
)
ax.grid(True, which="both", alpha=0.3)
ax.legend()
fig2.savefig(os.path.join(args.out, "lddmm_timing.png"), dpi=80)

# %%
# Numeric checks: the registration at least halved the data term, and pykmr's gradient of the shooting
# equals the one of dense torch's shooting with both equations by autograd (float32, relative 1e-3).
torch.manual_seed(1)
g_pykmr = forward_backward(150, dense=False)
torch.manual_seed(1)
g_dense = forward_backward(150, dense=True, shooting=dense_shoot_reference)
err = ((g_pykmr - g_dense).abs().max() / g_dense.abs().max()).item()
print(f"shooting gradient: pykmr vs dense torch relative difference {err:.1e}")
if not data_after <= data_before / 2:
    raise SystemExit(f"check failed: the data term went from {data_before:.4f} to {data_after:.4f}")
if not err < 1e-3:
    raise SystemExit(f"check failed: shooting gradients differ by {err:.1e}")
print("check passed")
