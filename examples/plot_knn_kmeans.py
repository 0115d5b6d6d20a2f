"""
k-nearest neighbours and k-means at scale
=========================================

Two classics built on nearest-neighbour searches that never store the N x M distance matrix:

* a **k-NN classifier**: the K nearest training points of each query (an ``ArgKMin`` reduction of
  ``SqDist(X,Y)``) vote for its class;
* **k-means** (Lloyd's algorithm) on 1e5+ points: each iteration assigns every point to its nearest centroid
  (an ``ArgMin`` reduction) and moves the centroids to the means of their clusters.

Both are timed against scikit-learn (``KNeighborsClassifier``, ``KMeans``) doing the same work.
"""

# %%
import argparse
import math
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from pykmr.torch import generic_argkmin, generic_argmin
from sklearn.cluster import KMeans
from sklearn.neighbors import KNeighborsClassifier

parser = argparse.ArgumentParser(description=(__doc__ or "pykmr example").strip().splitlines()[0])
parser.add_argument("--small", action="store_true", help="a quick run (CI)")
parser.add_argument("--out", default=".", help="folder for the PNG figures")
args = parser.parse_args()
os.makedirs(args.out, exist_ok=True)
torch.manual_seed(0)
dtype = torch.float32


# %%
# A synthetic 2D classification problem: three interleaved spirals with label noise.
def spirals(n):
    label = torch.randint(0, 3, (n,))
    t = torch.rand(n) * 3 * math.pi + 0.3
    angle = t + label * 2 * math.pi / 3
    pts = torch.stack([t * angle.cos(), t * angle.sin()], 1) / (3 * math.pi) + 0.04 * torch.randn(n, 2)
    flip = torch.rand(n) < 0.05
    label = torch.where(flip, torch.randint(0, 3, (n,)), label)
    return pts.to(dtype), label


n_train, n_test, k = (20000, 5000, 10) if args.small else (200000, 50000, 10)
x_train, y_train = spirals(n_train)
x_test, y_test = spirals(n_test)

# %%
# k-NN classification: indices of the K nearest training points (int64 [n_test, K]), then a majority vote.
knn = generic_argkmin("SqDist(X,Y)", f"I = Vi({k})", "X = Vi(2)", "Y = Vj(2)")


def knn_predict(queries):
    neighbours = knn(queries, x_train)  # [n, K]
    votes = torch.nn.functional.one_hot(y_train[neighbours], 3).sum(1)  # [n, 3]
    return votes.argmax(1)


knn_predict(x_test[:100])  # warm-up
t0 = time.perf_counter()
pred = knn_predict(x_test)
t_knn = time.perf_counter() - t0
accuracy = (pred == y_test).float().mean().item()

sk_knn = KNeighborsClassifier(n_neighbors=k).fit(x_train.numpy(), y_train.numpy())
t0 = time.perf_counter()
sk_pred = torch.from_numpy(sk_knn.predict(x_test.numpy()))
t_sk_knn = time.perf_counter() - t0
agreement = (pred == sk_pred).float().mean().item()
print(
    f"k-NN ({n_train} train, {n_test} test, K={k}): pykmr {t_knn:.3f} s, scikit-learn {t_sk_knn:.3f} s; "
    f"accuracy {accuracy:.3f}, agreement with scikit-learn {agreement:.4f}"
)

# %%
# k-means: Lloyd's iterations from the same initial centroids as scikit-learn's Lloyd run.
n_points, n_clusters, iterations = (30000, 30, 10) if args.small else (400000, 100, 10)
centers_true = 4 * torch.rand(n_clusters, 2) - 2
points = (centers_true[torch.randint(0, n_clusters, (n_points,))] + 0.15 * torch.randn(n_points, 2)).to(dtype)
init = points[torch.randperm(n_points)[:n_clusters]].clone()
nearest = generic_argmin("SqDist(X,C)", "A = Vi(1)", "X = Vi(2)", "C = Vj(2)")


def kmeans(x, c, iterations):
    inertia = []
    for _ in range(iterations):
        labels = nearest(x, c).reshape(-1)
        inertia.append(((x - c[labels]) ** 2).sum().item())
        counts = torch.bincount(labels, minlength=len(c)).to(x.dtype)[:, None]
        sums = torch.zeros_like(c).index_add_(0, labels, x)
        c = torch.where(counts > 0, sums / counts.clamp(min=1), c)  # an empty cluster keeps its centroid
    return c, labels, inertia


kmeans(points[:1000], init, 1)  # warm-up
t0 = time.perf_counter()
centroids, labels, inertia = kmeans(points, init, iterations)
t_kmeans = time.perf_counter() - t0
sk_kmeans = KMeans(n_clusters, init=init.numpy(), n_init=1, max_iter=iterations, tol=0, algorithm="lloyd")
t0 = time.perf_counter()
sk_kmeans.fit(points.numpy())
t_sk_kmeans = time.perf_counter() - t0
final_inertia = ((points - centroids[nearest(points, centroids).reshape(-1)]) ** 2).sum().item()
print(
    f"k-means ({n_points} points, {n_clusters} clusters, {iterations} iterations): pykmr {t_kmeans:.3f} s, "
    f"scikit-learn {t_sk_kmeans:.3f} s; inertia {final_inertia:.2f} vs scikit-learn {sk_kmeans.inertia_:.2f}"
)

# %%
# Figure: the classifier's decision map, the clusters, and the timings.
fig, axes = plt.subplots(1, 3, figsize=(17, 5.2), constrained_layout=True)
ticks = torch.linspace(-1.1, 1.1, 200, dtype=dtype)
gx, gy = torch.meshgrid(ticks, ticks, indexing="xy")
decision = knn_predict(torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)).reshape(200, 200)
axes[0].contourf(gx, gy, decision, levels=[-0.5, 0.5, 1.5, 2.5], colors=["#fbb4ae", "#b3cde3", "#ccebc5"])
for c, color in enumerate(["tab:red", "tab:blue", "tab:green"]):
    sel = y_test[:1500] == c
    axes[0].scatter(*x_test[:1500][sel].T, s=2, c=color, label=f"class {c} (test points)")
axes[0].set(
    title=f"{k}-NN decision map, accuracy {accuracy:.3f}", xlabel="x[0]", ylabel="x[1]", aspect="equal"
)
axes[0].legend(loc="lower left", fontsize=8, markerscale=4)
shown = torch.randperm(n_points)[:20000]
axes[1].scatter(*points[shown].T, s=1, c=labels[shown] % 10, cmap="tab10")
axes[1].scatter(*centroids.T, marker="x", c="k", s=20, label="centroids")
axes[1].set(
    title=f"k-means, {n_clusters} clusters of {n_points} points (20000 drawn)",
    xlabel="x[0]",
    ylabel="x[1]",
    aspect="equal",
)
axes[1].legend(loc="lower left")
names = ["k-NN classify", "k-means"]
pos = torch.arange(2).float()
axes[2].bar(pos - 0.2, [t_knn, t_kmeans], 0.4, label="pykmr (CPU)")
axes[2].bar(pos + 0.2, [t_sk_knn, t_sk_kmeans], 0.4, label="scikit-learn")
axes[2].set_xticks(pos.tolist(), names)
axes[2].set(title="wall time (shared machine)", ylabel="seconds")
axes[2].legend()
fig.savefig(os.path.join(args.out, "knn_kmeans.png"), dpi=80)

# %%
# Numeric checks: the classifier is accurate (> 0.85 with 5% label noise) and agrees with scikit-learn on
# 99% of the queries (ties in float32 distances may break differently); the k-means inertia decreased at
# every iteration and ends within 1e-3 of scikit-learn's from the same start.
inertia_gap = abs(final_inertia - sk_kmeans.inertia_) / sk_kmeans.inertia_
if not (accuracy > 0.85 and agreement > 0.99):
    raise SystemExit(f"check failed: k-NN accuracy {accuracy:.3f}, agreement {agreement:.4f}")
if not all(b <= a * (1 + 1e-6) for a, b in zip(inertia, inertia[1:])):
    raise SystemExit(f"check failed: the k-means inertia went up: {inertia}")
if not inertia_gap < 1e-3:
    raise SystemExit(
        f"check failed: k-means inertia {final_inertia:.3f}, scikit-learn {sk_kmeans.inertia_:.3f}"
    )
print("check passed")
