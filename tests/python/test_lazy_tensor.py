"""LazyTensor reductions against dense torch (values and gradients, float32 and float64), KeOps's semantics
that client libraries depend on, the precompiled hit of the LazyTensor Gaussian, KernelSolve, errors.
Tolerances: float64 1e-9 relative, float32 2e-4 relative (of the result's max)."""

from __future__ import annotations

import numpy as np
import pykmr.numpy as kn
import pykmr.torch as kt
import pytest
import torch
from pykmr import _kmr
from pykmr.torch import LazyTensor, Pm, Vi, Vj

TOL = {torch.float32: 2e-4, torch.float64: 1e-9}
DTYPES = pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])


def close(a, b, tol, what=""):
    a, b = (torch.as_tensor(t).double() for t in (a, b))
    assert a.shape == b.shape, f"{what}: shape {tuple(a.shape)} vs {tuple(b.shape)}"
    scale = max(b.abs().max().item(), 1.0)
    err = (a - b).abs().max().item()
    assert err <= tol * scale, f"{what}: max error {err:.3g} > {tol:.1g} * {scale:.3g}"


def data(dtype, n=8, m=11, d=3, e=2):
    x = torch.rand(n, d, dtype=dtype, requires_grad=True)
    y = torch.rand(m, d, dtype=dtype, requires_grad=True)
    b = torch.rand(m, e, dtype=dtype, requires_grad=True)
    return x, y, b


def grads(out, inputs, w):
    return torch.autograd.grad((out * w).sum(), inputs, allow_unused=True, retain_graph=True)


def compare(lazy_out, dense_out, inputs, dtype, what):
    """Values and gradients (same random weights) of a LazyTensor result vs its dense float64 version."""
    close(lazy_out, dense_out, TOL[dtype], what)
    w = torch.randn(dense_out.shape, dtype=torch.float64)
    g1 = grads(lazy_out, inputs, w.to(dtype))
    g2 = grads(dense_out, inputs, w.to(dense_out.dtype))
    for k, (a, b) in enumerate(zip(g1, g2)):
        if b is not None:
            close(a, b, TOL[dtype] * 10, f"{what}: gradient {k}")


# ---------------------------------------------------------------------------------------------------------
# Reductions
# ---------------------------------------------------------------------------------------------------------
def _kernel(x, y, lazy):
    xi, yj = (LazyTensor(x[:, None, :]), LazyTensor(y[None, :, :])) if lazy else (x[:, None, :], y[None])
    d2 = ((xi - yj) ** 2).sum(-1) if lazy else ((xi - yj) ** 2).sum(-1, keepdim=True)
    return d2


@DTYPES
@pytest.mark.parametrize("dim", [0, 1])
def test_sum_logsumexp_softmax(dtype, dim, seed):
    x, y, b = data(dtype)
    w = b[:, :1]
    d_l, d_d = _kernel(x, y, True), _kernel(x.double(), y.double(), False)
    k_l, k_d = (-d_l).exp(), (-d_d).exp()
    compare(k_l.sum(dim=dim), k_d.sum(dim), (x, y), dtype, "sum")
    bj = LazyTensor(b[None, :, :])
    if dim == 1:
        compare((k_l * bj).sum(dim=1), (k_d * b.double()[None]).sum(1), (x, y, b), dtype, "sum of K*b")
        compare(k_l.sum(dim=1, weight=bj), (k_d * b.double()[None]).sum(1), (x, y, b), dtype, "sum weight")
        compare(k_l @ b, k_d[..., 0] @ b.double(), (x, y, b), dtype, "K @ b")
        compare(k_l @ b[:, 0], k_d[..., 0] @ b.double()[:, 0], (x, y, b), dtype, "K @ vector")
    compare((-d_l).logsumexp(dim=dim), (-d_d).logsumexp(dim), (x, y), dtype, "logsumexp")
    wl = LazyTensor(w[None, :, :]) if dim == 1 else LazyTensor(x[:, None, :1])
    wd = w.double()[None] if dim == 1 else x.double()[:, None, :1]
    compare(
        (-d_l).logsumexp(dim=dim, weight=wl),
        (-d_d + wd.log()).logsumexp(dim),
        (x, y, b),
        dtype,
        "logsumexp weight",
    )
    vl = LazyTensor(b[None, :, :]) if dim == 1 else LazyTensor(x[:, None, :])
    vd = b.double()[None] if dim == 1 else x.double()[:, None, :]
    soft = torch.softmax(-d_d, dim=dim)
    compare((-d_l).sumsoftmaxweight(vl, dim=dim), (soft * vd).sum(dim), (x, y, b), dtype, "sumsoftmaxweight")


@DTYPES
@pytest.mark.parametrize("dim", [0, 1])
def test_min_max_kmin(dtype, dim, seed):
    x, y, _ = data(dtype)
    d_l, d_d = _kernel(x, y, True), _kernel(x.double(), y.double(), False)
    compare(d_l.min(dim=dim), d_d.min(dim).values, (x, y), dtype, "min")
    compare(d_l.max(dim=dim), d_d.max(dim).values, (x, y), dtype, "max")
    assert torch.equal(d_l.argmin(dim=dim), d_d.argmin(dim))
    assert torch.equal(d_l.argmax(dim=dim), d_d.argmax(dim))
    v, i = d_l.min_argmin(dim=dim)
    compare(v, d_d.min(dim).values, (x, y), dtype, "min_argmin")
    assert torch.equal(i, d_d.argmin(dim))
    v, i = d_l.max_argmax(dim=dim)
    assert torch.equal(i, d_d.argmax(dim))
    K = 3
    ref = d_d.squeeze(-1).sort(dim=dim)
    refv = ref.values[:K] if dim == 0 else ref.values[:, :K]
    refi = ref.indices[:K] if dim == 0 else ref.indices[:, :K]
    refv, refi = (refv.t(), refi.t()) if dim == 0 else (refv, refi)
    compare(d_l.Kmin(K, dim=dim), refv, (x, y), dtype, "Kmin")
    assert torch.equal(d_l.argKmin(K, dim=dim), refi)
    v, i = d_l.Kmin_argKmin(K, dim=dim)
    compare(v, refv, (x, y), dtype, "Kmin_argKmin")
    assert torch.equal(i, refi)


@DTYPES
def test_transpose_and_matmul(dtype, seed):
    x, y, b = data(dtype)
    k = (-_kernel(x, y, True)).exp()
    kd = (-_kernel(x.double(), y.double(), False)).exp()[..., 0]
    assert k.T.shape == (11, 8) and k.t().shape == (11, 8)
    u = torch.rand(8, 2, dtype=dtype, requires_grad=True)
    compare(k.T @ u, kd.t() @ u.double(), (x, y, u), dtype, "K.T @ u")


@DTYPES
def test_solve(dtype, seed):
    """(alpha Id + K) a = b by CG vs torch.linalg.solve; gradients in b, x and alpha-free (KeOps's solve)."""
    n = 20
    x = torch.rand(n, 2, dtype=dtype, requires_grad=True)
    b = torch.rand(n, 2, dtype=dtype, requires_grad=True)
    alpha = 0.5
    xi, xj = LazyTensor(x[:, None, :]), LazyTensor(x[None, :, :])
    K = (-((xi - xj) ** 2).sum(-1) * 4.0).exp()
    a = K.solve(LazyTensor(b[:, None, :]), alpha=alpha, eps=1e-12 if dtype == torch.float64 else 1e-6)
    x64, b64 = x.double(), b.double()
    Kd = (-((x64[:, None] - x64[None]) ** 2).sum(-1) * 4.0).exp()
    ref = torch.linalg.solve(alpha * torch.eye(n, dtype=torch.float64) + Kd, b64)
    tol = 1e-8 if dtype == torch.float64 else 1e-3
    close(a, ref, tol, "solve")
    w = torch.randn(n, 2, dtype=torch.float64)
    g1 = grads(a, (x, b), w.to(dtype))
    g2 = grads(ref, (x, b), w)
    close(g1[0], g2[0], tol * 10, "solve: gradient in x")
    close(g1[1], g2[1], tol * 10, "solve: gradient in b")


def test_solve_var(seed):
    """solve(var=a_j): self is linear in a symbolic j-variable (KeOps's form K_ij * a_j, and a two-term one
    K_ij * a_j + 0.5 * L_ij * a_j): the same solution as torch.linalg.solve; bad var values are refused."""
    n = 18
    x = torch.rand(n, 2, dtype=torch.float64, requires_grad=True)
    b = torch.rand(n, 3, dtype=torch.float64)
    xi, xj = LazyTensor(x[:, None, :]), LazyTensor(x[None, :, :])
    d2 = ((xi - xj) ** 2).sum(-1)
    a_j = Vj(0, 3)
    x64 = x.detach()
    dd = ((x64[:, None] - x64[None]) ** 2).sum(-1)
    for lt, kd in (
        ((-d2 * 4.0).exp() * a_j, (-dd * 4.0).exp()),
        (
            (-d2 * 4.0).exp() * a_j + 0.5 * (-d2.sqrt()).exp() * a_j,
            (-dd * 4.0).exp() + 0.5 * (-dd.sqrt()).exp(),
        ),
    ):
        a = lt.solve(Vi(b), var=a_j, alpha=0.3, eps=1e-12)
        ref = torch.linalg.solve(0.3 * torch.eye(n, dtype=torch.float64) + kd, b)
        close(a, ref, 1e-8, "solve(var=)")
    g = torch.autograd.grad(a.sum(), x)[0]
    assert torch.isfinite(g).all()
    K = (-d2).exp()
    with pytest.raises(TypeError, match="symbolic variable"):
        (K * a_j).solve(Vi(b), var=LazyTensor(b[None, :, :]))
    with pytest.raises(ValueError, match="indexed by j"):
        (K * Vi(0, 3)).solve(Vi(b), var=Vi(0, 3))
    with pytest.raises(ValueError, match="one dim"):
        (K * Vj(0, 2)).solve(Vi(b), var=Vj(0, 2))
    with pytest.raises(ValueError, match="does not contain var"):
        (K * Vj(0, 3)).solve(Vi(b), var=Vj(1, 3))


def test_kernel_solve_second_order(seed):
    """KernelSolve's gradients are differentiable again: gradgradcheck in b, x and a tensor alpha (float64,
    CG to 1e-13 so that finite differences see the exact solve)."""
    n = 8
    x = torch.rand(n, 2, dtype=torch.float64, requires_grad=True)
    b = torch.rand(n, 1, dtype=torch.float64, requires_grad=True)
    alpha = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    Kinv = kt.KernelSolve("Exp(-SqDist(X,Y))*B", ["X = Vi(2)", "Y = Vj(2)", "B = Vj(1)"], "B", axis=1)

    def f(x, b, alpha):
        return Kinv(x, x, b, alpha=alpha, eps=1e-13)

    assert torch.autograd.gradcheck(f, (x, b, alpha), atol=1e-6, rtol=1e-5)
    assert torch.autograd.gradgradcheck(f, (x, b, alpha), atol=1e-6, rtol=1e-5)


def test_kernel_solve_class(seed):
    x = torch.rand(15, 3, dtype=torch.float64)
    b = torch.rand(15, 1, dtype=torch.float64)
    Kinv = kt.KernelSolve("Exp(-SqDist(X,Y))*B", ["X = Vi(3)", "Y = Vj(3)", "B = Vj(1)"], "B", axis=1)
    a = Kinv(x, x, b, alpha=0.1, eps=1e-12)
    Kd = (-((x[:, None] - x[None]) ** 2).sum(-1)).exp()
    close(a, torch.linalg.solve(0.1 * torch.eye(15, dtype=torch.float64) + Kd, b), 1e-8, "KernelSolve")
    an = kn.KernelSolve("Exp(-SqDist(X,Y))*B", ["X = Vi(3)", "Y = Vj(3)", "B = Vj(1)"], "B", axis=1)(
        x.numpy(), x.numpy(), b.numpy(), alpha=0.1, eps=1e-12
    )
    close(an, a, 1e-8, "numpy KernelSolve")


# ---------------------------------------------------------------------------------------------------------
# Semantics clients depend on
# ---------------------------------------------------------------------------------------------------------
def test_shapes():
    x, y = torch.rand(5, 3), torch.rand(7, 3)
    xi, yj = LazyTensor(x[:, None, :]), LazyTensor(y[None, :, :])
    c = ((xi - yj) ** 2).sum(-1)
    assert c.shape == (5, 7) and c._shape == (5, 7, 1) and c.ndim == 1 and c.nbatchdims == 0
    assert (xi - yj).shape == (5, 7, 3) and (xi - yj).ndim == 3
    assert xi.shape == (5, 1, 3) and c.dim() == 3
    assert c.sum(dim=1).shape == (5, 1) and c.sum(dim=0).shape == (7, 1)  # the vector dim is kept
    assert (xi - yj).sum(-1).ndim == 1 and (xi - yj).sum(dim=-1).ndim == 1
    assert Vi(x).shape == (5, 1, 3) and Vj(y).shape == (1, 7, 3) and Pm(torch.rand(2)).shape == (1, 1, 2)
    assert LazyTensor(x, axis=0).shape == (5, 1, 3) and LazyTensor(y, axis=1).shape == (1, 7, 3)
    xb = LazyTensor(torch.rand(2, 5, 1, 3))
    assert xb.nbatchdims == 1 and xb._shape == (2, 5, 1, 3)
    assert "Sum" in str(c) or "SqNorm2" in str(c)


def test_constants_and_wrapping():
    x, y = torch.rand(5, 3, dtype=torch.float64), torch.rand(7, 3, dtype=torch.float64)
    xi = LazyTensor(x[:, None, :])
    assert "IntCst(3)" in (xi * 3).formula  # exact integer constant
    f = xi * 0.5
    assert "IntCst" not in f.formula and "Pm" in f.formula  # a float is a parameter of the call's dtype
    assert f.sum(dim=1).dtype == torch.float64
    assert (xi * 0) == 0 and (xi * 1) is xi and (xi + 0) is xi
    # tensors are wrapped by their shape: (1, M, D) -> j, (D,) -> parameter
    g = (xi - y[None, :, :]).sqnorm2()
    assert g.shape == (5, 7)
    close(g.sum(dim=1), ((x[:, None] - y[None]) ** 2).sum(-1).sum(1, keepdim=True), 1e-12)
    p = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    close((xi * p).sum(dim=1), x * p, 1e-12)


def test_same_tensor_as_vi_and_vj_gradients_add(seed):
    x = torch.rand(6, 2, dtype=torch.float64, requires_grad=True)
    k = (-((LazyTensor(x[:, None, :]) - LazyTensor(x[None, :, :])) ** 2).sum(-1)).exp()
    s = k.sum(dim=1).sum()
    kd = (-((x[:, None] - x[None]) ** 2).sum(-1)).exp().sum()
    (g,) = torch.autograd.grad(s, x)
    (gd,) = torch.autograd.grad(kd, x)
    close(g, gd, 1e-10, "Vi + Vj gradient")


def test_not_a_tensor_and_comparisons_are_formulas():
    xi = LazyTensor(torch.rand(4, 1, 2))
    assert not isinstance(xi, torch.Tensor)
    assert isinstance(xi == xi, LazyTensor) and isinstance(xi < 1, LazyTensor)
    with pytest.raises(TypeError):
        bool(xi)
    # a dense tensor on the left defers to the LazyTensor
    assert isinstance(torch.rand(1, 3, 2) + xi, LazyTensor)


def test_numpy_dtype_follows():
    x = np.random.rand(5, 3)
    y = np.random.rand(6, 3).astype(np.float32)
    xi = kn.LazyTensor(x[:, None, :])
    out = ((xi - kn.LazyTensor(x[None, :, :])) ** 2).sum(-1).sum(dim=1)
    assert out.dtype == np.float64 and out.shape == (5, 1)
    ref = ((x[:, None] - x[None]) ** 2).sum(-1).sum(1, keepdims=True)
    np.testing.assert_allclose(out, ref, rtol=1e-12)
    o32 = (kn.LazyTensor(y[:, None, :]) * 0.5).sum(dim=1)
    assert o32.dtype == np.float32
    np.testing.assert_allclose(o32, 0.5 * y, rtol=1e-6)
    k = kn.Vi(x).sqdist(kn.Vj(x))
    np.testing.assert_array_equal(k.argmin(dim=1).ravel(), np.arange(5))


def test_symbolic_variables():
    f = (Vi(0, 3) - Vj(1, 3)).sqnorm2().exp().sum_reduction(axis=1)
    x, y = torch.rand(4, 3, dtype=torch.float64), torch.rand(5, 3, dtype=torch.float64)
    close(f(x, y), ((x[:, None] - y[None]) ** 2).sum(-1).exp().sum(1, keepdim=True), 1e-12)


def test_gaussian_lazytensor_compiles_nothing():
    """The LazyTensor spellings of a Gaussian convolution lower onto the precompiled kernel's formula."""
    x, y, b = torch.rand(10, 3), torch.rand(12, 3), torch.rand(12, 1)
    xi, yj = LazyTensor(x[:, None, :]), LazyTensor(y[None, :, :])
    d2 = ((xi - yj) ** 2).sum(-1)
    g = torch.tensor([2.0])
    from pykmr.lazy_tensor import Reduced

    for k in ((-d2 * g).exp(), (d2 * g).__neg__().exp(), (-2.0 * d2).exp(), (d2 * -2.0).exp()):
        red = Reduced(k * LazyTensor(b[None, :, :]), "Sum", 1, None, None, {})
        gen = _kmr.Genred(red.formula, red.aliases, "Sum", 1, 0, "", "auto", "auto")
        assert gen.is_precompiled("float32"), (red.formula, red.aliases)


def test_errors():
    x = torch.rand(4, 3)
    xi = LazyTensor(x[:, None, :])
    with pytest.raises(ValueError, match="axis"):
        LazyTensor(x)
    with pytest.raises(ValueError, match="shape"):
        LazyTensor(torch.rand(2, 3, 4))
    with pytest.raises(ValueError, match="dims"):
        xi + LazyTensor(torch.rand(1, 5, 2))
    with pytest.raises(ValueError, match="j-rows"):
        LazyTensor(torch.rand(1, 5, 3)) + LazyTensor(torch.rand(1, 6, 3))
    with pytest.raises(ValueError, match="dim"):
        xi.sum(dim=5)
    with pytest.raises(ValueError, match="coordinate by coordinate"):  # a vector F takes weights of its dim
        xi.logsumexp(dim=1, weight=LazyTensor(torch.rand(1, 5, 2)))
    with pytest.raises(IndexError):
        xi[..., 3]
    with pytest.raises(TypeError):
        xi + "a"
    with pytest.raises(TypeError, match="numpy"):
        xi + kn.LazyTensor(np.zeros((1, 2, 3)))


# ---------------------------------------------------------------------------------------------------------
# Batch dims and block-sparse ranges: passed straight to Genred (the engine's batch/ranges support)
# ---------------------------------------------------------------------------------------------------------
@DTYPES
def test_batch_dims(dtype, seed):
    x = torch.rand(2, 6, 3, dtype=dtype, requires_grad=True)
    y = torch.rand(1, 7, 3, dtype=dtype, requires_grad=True)
    xi, yj = LazyTensor(x[:, :, None, :]), LazyTensor(y[:, None, :, :])
    out = (-((xi - yj) ** 2).sum(-1)).exp().sum(dim=2)
    ref = (-((x.double()[:, :, None] - y.double()[:, None]) ** 2).sum(-1, keepdim=True)).exp().sum(2)
    compare(out, ref, (x, y), dtype, "batch sum")


@DTYPES
def test_ranges_vs_dense_mask(dtype, seed):
    from pykmr.torch.cluster import cluster_ranges_centroids, from_matrix, grid_cluster, sort_clusters

    x = torch.rand(40, 2, dtype=dtype)
    lab = grid_cluster(x, 0.25)
    x, lab = sort_clusters(x, lab)
    ranges, cent, _ = cluster_ranges_centroids(x, lab)
    keep = ((cent[:, None] - cent[None]) ** 2).sum(-1) < 0.1
    x = x.requires_grad_()
    k = (-((LazyTensor(x[:, None, :]) - LazyTensor(x[None, :, :])) ** 2).sum(-1)).exp()
    k.ranges = from_matrix(ranges, ranges, keep)
    out = k.sum(dim=1)
    mask = keep[lab][:, lab]
    x64 = x.double()
    ref = ((-((x64[:, None] - x64[None]) ** 2).sum(-1)).exp() * mask).sum(1, keepdim=True)
    compare(out, ref, (x,), dtype, "ranges")
