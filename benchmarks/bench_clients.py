"""Client libraries' KeOps code paths on pykmr vs on pykeops, in the same run.

For each case (GeomLoss Sinkhorn and Gaussian MMD, GPyTorch's KeOps RBF marginal likelihood, TorchDR's
entropic affinity, the KeOps tutorials' k-means and k-NN) and each backend, `pykeops` is made to be that
backend (pykmr through module aliases, as in tests/python/clients), the client modules are re-imported,
and the case runs: the first call (compile included: both backends start from an empty cache folder) and
the median of the next calls (compile excluded). pykeops compiles slowly: keep sizes small; --cap bounds a
case's repeated calls.

    python benchmarks/bench_clients.py                  # all cases, both backends, CSV + Markdown table
    python benchmarks/bench_clients.py --cases kmeans,knn --backends pykmr --repeats 3

Writes benchmarks/out/bench_clients.csv and .md (--out DIR).
"""

from __future__ import annotations

import argparse
import csv
import importlib
import os
import statistics
import sys
import tempfile
import time

CLIENTS = ("pykeops", "keopscore", "geomloss", "gpytorch", "torchdr", "ot")


def use_backend(name):
    """Makes `import pykeops` give `name`'s modules; re-imports the clients on the next import."""
    for k in [k for k in sys.modules if any(k == c or k.startswith(c + ".") for c in CLIENTS)]:
        del sys.modules[k]
    if name == "pykmr":
        import pykmr
        import pykmr.numpy
        import pykmr.numpy.cluster
        import pykmr.torch
        import pykmr.torch.cluster

        sys.modules.update(
            {
                "pykeops": pykmr,
                "pykeops.torch": pykmr.torch,
                "pykeops.torch.cluster": pykmr.torch.cluster,
                "pykeops.numpy": pykmr.numpy,
                "pykeops.numpy.cluster": pykmr.numpy.cluster,
            }
        )
    else:
        import pykeops

        pykeops.set_verbose(False)
        pykeops.set_build_folder(tempfile.mkdtemp(prefix="bench-pykeops-"))
    importlib.invalidate_caches()


# ---------------------------------------------------------------------------------------------------------
# Cases: each returns a function that runs the client's KeOps path once (forward + backward where it has one)
# ---------------------------------------------------------------------------------------------------------
def case_geomloss_sinkhorn(torch, n):
    from geomloss import SamplesLoss

    x, y = torch.rand(n, 3), torch.rand(n, 3)
    loss = SamplesLoss("sinkhorn", p=2, blur=0.05, backend="online")

    def run():
        xx = x.clone().requires_grad_()
        torch.autograd.grad(loss(xx, y), xx)

    return run


def case_geomloss_gaussian(torch, n):
    from geomloss import SamplesLoss

    x, y = torch.rand(n, 3), torch.rand(n, 3)
    loss = SamplesLoss("gaussian", blur=0.1, backend="online")

    def run():
        xx = x.clone().requires_grad_()
        torch.autograd.grad(loss(xx, y), xx)

    return run


def case_gpytorch_rbf(torch, n):
    import gpytorch

    x = torch.rand(n, 2)
    y = torch.sin(6 * x[:, 0])

    class GP(gpytorch.models.ExactGP):
        def __init__(self):
            lik = gpytorch.likelihoods.GaussianLikelihood()
            super().__init__(x, y, lik)
            self.cov = gpytorch.kernels.ScaleKernel(gpytorch.kernels.keops.RBFKernel())

        def forward(self, t):
            return gpytorch.distributions.MultivariateNormal(torch.zeros(t.shape[0]), self.cov(t))

    model = GP()
    model.train()
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)

    def run():
        with gpytorch.settings.max_cholesky_size(0), gpytorch.settings.max_cg_iterations(50):
            (-mll(model(x), y)).backward()

    return run


def case_torchdr_affinity(torch, n):
    from torchdr import EntropicAffinity

    x = torch.randn(n, 10)

    def run():
        EntropicAffinity(perplexity=30, backend="keops", sparsity=False, verbose=False, device="cpu")(x)

    return run


def case_kmeans(torch, n):
    from pykeops.torch import LazyTensor

    x = torch.rand(n, 2)
    K = 50

    def run():
        c = x[:K].clone()
        x_i, c_j = LazyTensor(x.view(n, 1, 2)), LazyTensor(c.view(1, K, 2))
        for _ in range(10):
            cl = ((x_i - c_j) ** 2).sum(-1).argmin(dim=1).long().view(-1)
            c.zero_()
            c.scatter_add_(0, cl[:, None].repeat(1, 2), x)
            c /= torch.bincount(cl, minlength=K).type_as(c).view(K, 1).clamp(min=1)

    return run


def case_knn(torch, n):
    from pykeops.torch import LazyTensor

    x, q = torch.rand(n, 3), torch.rand(n // 2, 3)

    def run():
        ((LazyTensor(q[:, None, :]) - LazyTensor(x[None, :, :])) ** 2).sum(-1).argKmin(10, dim=1)

    return run


CASES = {
    "geomloss_sinkhorn": (case_geomloss_sinkhorn, 2000),
    "geomloss_gaussian": (case_geomloss_gaussian, 2000),
    "gpytorch_rbf": (case_gpytorch_rbf, 1000),
    "torchdr_affinity": (case_torchdr_affinity, 1000),
    "kmeans": (case_kmeans, 10000),
    "knn": (case_knn, 10000),
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated: " + ", ".join(CASES))
    ap.add_argument("--backends", default="pykmr,pykeops")
    ap.add_argument("--repeats", type=int, default=5, help="timed calls after the first (compile) call")
    ap.add_argument("--cap", type=float, default=60.0, help="seconds of repeated calls per case at most")
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies every case's size")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "out"))
    args = ap.parse_args(argv)
    os.environ.setdefault("KMR_CACHE_DIR", tempfile.mkdtemp(prefix="bench-pykmr-"))
    os.environ["KMR_QUIET"] = "1"
    import torch

    torch.set_num_threads(args.threads)
    os.environ["KMR_NUM_THREADS"] = str(args.threads)
    rows = []
    for backend in args.backends.split(","):
        for name in args.cases.split(","):
            make, n = CASES[name]
            n = max(10, int(n * args.scale))
            try:
                use_backend(backend)
                torch.manual_seed(0)
                run = make(torch, n)
                t0 = time.perf_counter()
                run()
                first = time.perf_counter() - t0
                times, start = [], time.perf_counter()
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    run()
                    times.append(time.perf_counter() - t0)
                    if time.perf_counter() - start > args.cap:
                        break
                row = {
                    "case": name,
                    "n": n,
                    "backend": backend,
                    "first_s": first,
                    "median_s": statistics.median(times),
                    "calls": len(times),
                    "error": "",
                }
            except Exception as e:  # a backend that fails a case is reported, not fatal
                row = {
                    "case": name,
                    "n": n,
                    "backend": backend,
                    "first_s": float("nan"),
                    "median_s": float("nan"),
                    "calls": 0,
                    "error": f"{type(e).__name__}: {e}"[:200],
                }
            rows.append(row)
            print(
                f"{name:18s} n={n:6d} {backend:8s} first {row['first_s']:8.3f} s  median "
                f"{row['median_s']:8.4f} s  {row['error']}",
                flush=True,
            )
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench_clients.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    by = {(r["case"], r["backend"]): r for r in rows}
    lines = [
        "| case | n | pykmr first (s) | pykeops first (s) | pykmr median (s) | pykeops median (s) | "
        "speed-up (median) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in args.cases.split(","):
        a, b = by.get((name, "pykmr")), by.get((name, "pykeops"))

        def f(r, k):
            return f"{r[k]:.3f}" if r and r[k] == r[k] else "-"

        sp = (
            f"{b['median_s'] / a['median_s']:.1f}x"
            if a and b and a["median_s"] > 0 and b["median_s"] == b["median_s"]
            else "-"
        )
        n = (a or b)["n"]
        lines.append(
            f"| {name} | {n} | {f(a, 'first_s')} | {f(b, 'first_s')} | {f(a, 'median_s')} | "
            f"{f(b, 'median_s')} | {sp} |"
        )
    with open(os.path.join(args.out, "bench_clients.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
