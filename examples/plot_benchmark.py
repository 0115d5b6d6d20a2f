"""
Benchmark: a Gaussian convolution in R^3
========================================

The seed's figure: the time of the N x N Gaussian convolution

    a_i = sum_j exp(-‖x_i - y_j‖^2 / sigma^2) b_j,   x, y: N points in R^3, b: [N, 1], float32,

as N grows, with dense torch (which builds the N x N matrix) and with pykmr (which never stores it), on the
CPU, plus the same two on the GPU when torch sees one. Dense torch is not run where its N x N matrices would
need more than half the available memory: those sizes are marked "out of memory (estimated)".
"""

# %%
import argparse
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from pykmr.torch import generic_sum

parser = argparse.ArgumentParser(description=(__doc__ or "pykmr example").strip().splitlines()[0])
parser.add_argument("--small", action="store_true", help="a quick run (CI)")
parser.add_argument("--out", default=".", help="folder for the PNG figures")
args = parser.parse_args()
os.makedirs(args.out, exist_ok=True)
torch.manual_seed(0)

# %%
# The two implementations. pykmr's formula is the precompiled Gaussian kernel.
conv = generic_sum("Exp(-G*SqDist(X,Y))*B", "A = Vi(1)", "G = Pm(1)", "X = Vi(3)", "Y = Vj(3)", "B = Vj(1)")
sigma = 0.1


def pykmr_conv(x, y, b):
    return conv(1 / sigma**2, x, y, b)


def dense_conv(x, y, b):
    return torch.exp(-(torch.cdist(x, y) ** 2) / sigma**2) @ b


# %%
# Memory: the dense version holds about 3 N x N float32 arrays at once (distances, their squares and
# exponentials). Budget: half the available memory (or of the GPU's).
def available_bytes(device):
    if device == "cuda":
        return torch.cuda.mem_get_info()[0]
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable"))


def timed(fn, n, device):
    x, y = torch.rand(n, 3, device=device), torch.rand(n, 3, device=device)
    b = torch.randn(n, 1, device=device)
    fn(x, y, b)  # warm-up
    times = []
    while len(times) < 5 and sum(times) < 0.5:
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn(x, y, b)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
sizes = [100, 300, 1000, 3000, 10000] if args.small else [100, 300, 1000, 3000, 10000, 30000, 100000]
time_cap = 1.0 if args.small else 10.0  # a curve stops when its next size would take longer
curves, oom, oom_estimate = {}, {}, {}
for device in devices:
    budget = available_bytes(device) / 2
    oom_estimate[f"dense torch {'GPU' if device == 'cuda' else 'CPU'}"] = (budget / 12) ** 0.5
    for name, fn in (("pykmr", pykmr_conv), ("dense torch", dense_conv)):
        label = f"{name} {'GPU' if device == 'cuda' else 'CPU'}"
        curves[label] = {}
        for n in sizes:
            done = curves[label]
            if done and done[max(done)] * (n / max(done)) ** 2 > time_cap:
                break
            if fn is dense_conv and 3 * 4 * n * n > budget:
                oom[label] = n
                print(f"{label:16s} N = {n:6d}: out of memory (estimated {12 * n * n / 2**30:.1f} GiB)")
                break
            done[n] = timed(fn, n, device)
            print(f"{label:16s} N = {n:6d}: {done[n] * 1e3:9.3f} ms")

# %%
# Figure: time vs N, log-log; an "x" (or a dotted line, past the time cap) marks where dense torch runs out
# of memory.
fig, ax = plt.subplots(figsize=(7.5, 5.5), constrained_layout=True)
for label, done in curves.items():
    (line,) = ax.loglog(list(done), list(done.values()), "o-", label=label)
    if label in oom_estimate and label not in oom:  # stopped by the time cap: mark the estimated limit
        ax.axvline(
            oom_estimate[label],
            color=line.get_color(),
            ls=":",
            label=f"{label}: out of memory from N = {oom_estimate[label]:.0f} (estimated)",
        )
    if label in oom:
        ax.loglog([oom[label]], [max(done.values())], "x", color=line.get_color(), ms=12, mew=2)
        ax.annotate(
            "out of memory\n(estimated)",
            (oom[label], max(done.values())),
            textcoords="offset points",
            xytext=(-40, 12),
            fontsize=8,
            color=line.get_color(),
        )
ax.set(title="Gaussian convolution in R^3, N x N, float32", xlabel="number of points N", ylabel="time (s)")
ax.grid(True, which="both", alpha=0.3)
ax.legend()
fig.savefig(os.path.join(args.out, "benchmark.png"), dpi=80)

# %%
# Numeric check: pykmr equals dense torch (relative 1e-4 in float32) at the largest size both ran on CPU.
n = max(set(curves["pykmr CPU"]) & set(curves["dense torch CPU"]))
x, y, b = torch.rand(n, 3), torch.rand(n, 3), torch.randn(n, 1)
ref = dense_conv(x.double(), y.double(), b.double())
err = ((pykmr_conv(x, y, b).double() - ref).abs().max() / ref.abs().max()).item()
print(f"N = {n}: max relative difference pykmr vs dense torch (float64) {err:.1e}")
if not err < 1e-4:
    raise SystemExit(f"check failed: pykmr differs from dense torch by {err:.1e}")
print("check passed")
