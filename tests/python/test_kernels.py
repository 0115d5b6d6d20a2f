"""Kernel(expr) and kernel_product(params, x, y, b) against dense torch float64 references."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pykmr import _kmr  # noqa: E402
from pykmr.kernels import KERNELS, Kernel, kernel_product  # noqa: E402

F64 = torch.float64


# ----------------------------------------------------------------------------- dense references
# Written independently of pykmr.kernels: the kernel's math on the full N x M matrix.


def sqdist(x, y, g):
    """g-weighted squared distances [N, M]: g scalar, per dimension (D) or a D x D matrix."""
    diff = x[:, None, :] - y[None, :, :]
    g = torch.as_tensor(g, dtype=x.dtype).reshape(-1)
    d = x.shape[1]
    if g.numel() == 1:
        return g * (diff**2).sum(-1)
    if g.numel() == d:
        return (g * diff**2).sum(-1)
    return torch.einsum("ijd,de,ije->ij", diff, g.reshape(d, d), diff)


DENSE = {
    "gaussian": lambda x, y, g: torch.exp(-sqdist(x, y, g)),
    "laplacian": lambda x, y, g: torch.exp(-torch.sqrt(sqdist(x, y, g))),
    "cauchy": lambda x, y, g: 1 / (1 + sqdist(x, y, g)),
    "inverse_multiquadric": lambda x, y, g: torch.rsqrt(1 + sqdist(x, y, g)),
    "linear": lambda x, y, g: x @ y.T,
}


def rand(*shape, seed, dtype=F64, grad=False):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=gen, dtype=dtype).requires_grad_(grad)


def randn(*shape, seed, dtype=F64, grad=False):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen, dtype=dtype).requires_grad_(grad)


def assert_close(a, ref, rtol=1e-10, atol=1e-12):
    torch.testing.assert_close(a, ref, rtol=rtol, atol=atol)


# ----------------------------------------------------------------------------- Kernel parsing


def test_kernel_attributes_and_formula():
    k = Kernel("gaussian(x,y) * linear(u,v)**2")
    assert k.x_vars == ("x", "u") and k.y_vars == ("y", "v")
    assert k.terms == ("gaussian", "linear")
    assert repr(k) == "Kernel('gaussian(x,y) * linear(u,v)**2')"
    assert Kernel(k) == k and Kernel("  1+cauchy(x,y)+cauchy(x,y) ").terms == ("cauchy", "cauchy")


@pytest.mark.parametrize(
    "name, formula",
    [
        ("gaussian", "Exp(-G0*SqDist(X0,Y0))*B"),
        ("cauchy", "Inv(1+G0*SqDist(X0,Y0))*B"),
        ("laplacian", "Exp(-Sqrt(G0*SqDist(X0,Y0)))*B"),
        ("inverse_multiquadric", "Rsqrt(1+G0*SqDist(X0,Y0))*B"),
        ("linear", "(X0|Y0)*B"),
    ],
)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_single_kernel_spelling_is_precompiled(name, formula, dtype):
    """One kernel with a scalar gamma compiles to the manifest's formula: a precompiled kernel."""
    gdim = None if name == "linear" else 1
    f, aliases, _ = Kernel(f"{name}(x,y)").formula({"x": 3}, {"y": 3}, [gdim], 2)
    assert f == formula
    assert _kmr.Genred(f, aliases, "Sum", 1).is_precompiled(dtype)


def test_composite_formula_text():
    k = Kernel("-gaussian(x,y)*2 - (linear(x,y)-1)**3 + 1")
    f, aliases, slots = k.formula({"x": 2}, {"y": 2}, [2, None], 1)
    assert f == "((-Exp(-WeightedSqDist(G0,X0,Y0)))*2-Pow((X0|Y0)-1,3)+1)*B"
    assert aliases == ["G0 = Pm(2)", "X0 = Vi(2)", "Y0 = Vj(2)", "B = Vj(1)"] and slots == [0]


@pytest.mark.parametrize(
    "expr, match",
    [
        ("gausian(x,y)", r"unknown kernel 'gausian' \(did you mean 'gaussian'\?\)"),
        ("energy(x,y) + gaussian(x,y)", "unknown kernel 'energy'"),
        ("gaussian(x,y", r"expected '\)', got the end"),
        ("gaussian(x)", r"expected ',', got '\)'"),
        ("gaussian(x,y) +", "got the end"),
        ("gaussian(x,y))", r"unexpected '\)'"),
        ("2.5*gaussian(x,y)", "constants must be integers"),
        ("gaussian(x,y)**0", "positive integers"),
        ("gaussian(x,y)**-1", "positive integers"),
        ("gaussian(x,y)**u", "expected an integer"),
        ("gaussian(x,y) / 2", "unexpected character '/'"),
        ("gaussian(x,y) + gaussian(y,x)", "variable 'y' is the first"),
        ("gaussian(x,y) + \u00e9", "non-ASCII"),
        ("", "expected a kernel"),
        ("1 + 2", "no kernel term"),
    ],
)
def test_bad_kernel_expressions(expr, match):
    with pytest.raises(ValueError, match=match):
        Kernel(expr)


def test_parse_error_shows_a_caret():
    with pytest.raises(ValueError) as e:
        Kernel("gaussian(x,y) * cauchi(x,y)")
    lines = str(e.value).splitlines()
    assert lines[-1].index("^") - 2 == lines[-2].index("cauchi") - 2 == 16


def test_kernel_rejects_non_strings():
    with pytest.raises(TypeError, match="expected a string"):
        Kernel(3)


# ----------------------------------------------------------------------------- values


@pytest.mark.parametrize("name", sorted(KERNELS))
@pytest.mark.parametrize("d, e", [(1, 1), (3, 2)])
def test_single_kernels(name, d, e):
    x, y, b = rand(30, d, seed=1), rand(25, d, seed=2), randn(25, e, seed=3)
    g = None if name == "linear" else 2.5
    a = kernel_product({"id": Kernel(f"{name}(x,y)"), "gamma": g}, x, y, b)
    assert a.shape == (30, e) and a.dtype == F64
    assert_close(a, DENSE[name](x, y, g) @ b)


def test_float32_and_tensor_gamma():
    x, y, b = (
        rand(40, 3, seed=1, dtype=torch.float32),
        rand(30, 3, seed=2, dtype=torch.float32),
        randn(30, 1, seed=3, dtype=torch.float32),
    )
    for g in (4.0, torch.tensor(4.0), torch.tensor([4.0], dtype=F64), np.float32(4.0)):
        a = kernel_product({"id": Kernel("gaussian(x,y)"), "gamma": g}, x, y, b)
        assert a.dtype == torch.float32
        ref = DENSE["gaussian"](x.double(), y.double(), 4.0) @ b.double()
        assert_close(a.double(), ref, rtol=1e-5, atol=1e-6)


def _talk_cases():
    """The talk's three kernels, plus a few more sums, products, powers and constants."""
    g1, g2 = 1 / 0.5**2, 1 / 0.8**2
    K = DENSE
    return [
        ("gaussian(x,y)", g1, 1, lambda xs, ys, gs: K["gaussian"](xs[0], ys[0], gs[0])),
        (
            "gaussian(x,y) * linear(u,v)**2",
            (g1, None),
            2,
            lambda xs, ys, gs: K["gaussian"](xs[0], ys[0], gs[0]) * K["linear"](xs[1], ys[1], None) ** 2,
        ),
        (
            "1 + cauchy(x,y) + cauchy(x,y)",
            (g1, g2),
            1,
            lambda xs, ys, gs: 1 + K["cauchy"](xs[0], ys[0], gs[0]) + K["cauchy"](xs[0], ys[0], gs[1]),
        ),
        (
            "laplacian(x,y) * (2 - inverse_multiquadric(u,v))**3",
            (g2, g1),
            2,
            lambda xs, ys, gs: (
                K["laplacian"](xs[0], ys[0], gs[0])
                * (2 - K["inverse_multiquadric"](xs[1], ys[1], gs[1])) ** 3
            ),
        ),
        (
            "-linear(x,y) + 3*gaussian(x,y)*cauchy(u,v) - linear(u,v)",
            (None, g1, g2, None),
            2,
            lambda xs, ys, gs: (
                -K["linear"](xs[0], ys[0], None)
                + 3 * K["gaussian"](xs[0], ys[0], gs[1]) * K["cauchy"](xs[1], ys[1], gs[2])
                - K["linear"](xs[1], ys[1], None)
            ),
        ),
    ]


def _points(nvars, n, seed):
    dims = (3, 2)
    return tuple(rand(n, dims[k], seed=seed + k) for k in range(nvars))


@pytest.mark.parametrize(
    "expr, gamma, nvars, dense", _talk_cases(), ids=lambda c: c if isinstance(c, str) else ""
)
def test_combinations(expr, gamma, nvars, dense):
    xs, ys, b = _points(nvars, 35, seed=10), _points(nvars, 28, seed=20), randn(28, 3, seed=30)
    gs = gamma if isinstance(gamma, tuple) else (gamma,)
    a = kernel_product({"id": Kernel(expr), "gamma": gamma}, xs if nvars > 1 else xs[0], ys, b)
    assert_close(a, dense(xs, ys, gs) @ b)


def test_points_as_tuple_list_or_tensor():
    x, y, b = rand(20, 3, seed=1), rand(15, 3, seed=2), randn(15, 2, seed=3)
    params = {"id": Kernel("gaussian(x,y)"), "gamma": 1.5}
    a = kernel_product(params, x, y, b)
    assert_close(kernel_product(params, (x,), [y], b), a, rtol=0, atol=0)
    # the variables are matched by order of appearance, whatever their names
    params2 = {"id": Kernel("linear(p,q) * gaussian(s,t)"), "gamma": (None, 1.5)}
    u, v = rand(20, 2, seed=4), rand(15, 2, seed=5)
    ref = DENSE["linear"](u, v, None) * DENSE["gaussian"](x, y, 1.5) @ b
    assert_close(kernel_product(params2, (u, x), (v, y), b), ref)


def test_kernel_given_as_a_string_and_backend_key():
    x, y, b = rand(20, 3, seed=1), rand(15, 3, seed=2), randn(15, 2, seed=3)
    a = kernel_product({"id": "cauchy(x,y)", "gamma": 2.0, "backend": "CPU"}, x, y, b)
    assert_close(a, DENSE["cauchy"](x, y, 2.0) @ b)


# ----------------------------------------------------------------------------- per-dimension gamma


@pytest.mark.parametrize("name", ["gaussian", "laplacian", "cauchy", "inverse_multiquadric"])
def test_per_dimension_gamma(name):
    x, y, b = rand(30, 3, seed=1), rand(20, 3, seed=2), randn(20, 2, seed=3)
    g = torch.tensor([0.5, 2.0, 4.0], dtype=F64)
    a = kernel_product({"id": Kernel(f"{name}(x,y)"), "gamma": g}, x, y, b)
    assert_close(a, DENSE[name](x, y, g) @ b)


def test_matrix_gamma_and_mixed_gammas():
    x, y, b = rand(30, 2, seed=1), rand(20, 2, seed=2), randn(20, 1, seed=3)
    m = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=F64)  # symmetric positive definite
    d = torch.tensor([1.0, 3.0], dtype=F64)
    params = {"id": Kernel("gaussian(x,y) + cauchy(x,y)"), "gamma": (m, d)}
    ref = (DENSE["gaussian"](x, y, m) + DENSE["cauchy"](x, y, d)) @ b
    assert_close(kernel_product(params, x, y, b), ref)


# ----------------------------------------------------------------------------- gradients


def _grads(out, wrt, w):
    return torch.autograd.grad((out * w).sum(), wrt)


@pytest.mark.parametrize(
    "expr, gamma, nvars, dense", _talk_cases()[:3], ids=["gaussian", "gauss*lin^2", "1+2cauchy"]
)
def test_gradients_match_dense(expr, gamma, nvars, dense):
    xs = tuple(p.requires_grad_() for p in _points(nvars, 25, seed=40))
    ys = tuple(p.requires_grad_() for p in _points(nvars, 18, seed=50))
    b = randn(18, 2, seed=60, grad=True)
    gs = gamma if isinstance(gamma, tuple) else (gamma,)
    gts = tuple(None if g is None else torch.tensor([g], dtype=F64, requires_grad=True) for g in gs)
    params = {"id": Kernel(expr), "gamma": gts if isinstance(gamma, tuple) else gts[0]}
    w = randn(25, 2, seed=70)
    wrt = [*xs, *ys, b, *(g for g in gts if g is not None)]
    got = _grads(kernel_product(params, xs, ys, b), wrt, w)
    ref = _grads(dense(xs, ys, gts) @ b, wrt, w)
    for gv, rv in zip(got, ref):
        assert_close(gv, rv, rtol=1e-9, atol=1e-10)


def test_per_dimension_gamma_gradient():
    x, y, b = rand(20, 3, seed=1, grad=True), rand(15, 3, seed=2), randn(15, 1, seed=3)
    g = torch.tensor([0.5, 2.0, 4.0], dtype=F64, requires_grad=True)
    w = randn(20, 1, seed=4)
    got = _grads(kernel_product({"id": Kernel("gaussian(x,y)"), "gamma": g}, x, y, b), [x, g], w)
    ref = _grads(DENSE["gaussian"](x, y, g) @ b, [x, g], w)
    for gv, rv in zip(got, ref):
        assert_close(gv, rv, rtol=1e-9, atol=1e-10)


def test_second_order_gradient():
    """create_graph=True through kernel_product: d/dx of |d/dx H|^2 (geodesic shooting needs it)."""
    x, b = rand(15, 2, seed=1, grad=True), randn(15, 2, seed=2)
    params = {"id": Kernel("gaussian(x,y)"), "gamma": 3.0}

    def second(conv):
        (gx,) = torch.autograd.grad((conv(x, x, b) * b).sum(), [x], create_graph=True)
        return torch.autograd.grad((gx**2).sum(), [x])[0]

    got = second(lambda p, q, c: kernel_product(params, p, q, c))
    ref = second(lambda p, q, c: DENSE["gaussian"](p, q, 3.0) @ c)
    assert_close(got, ref, rtol=1e-8, atol=1e-10)


# ----------------------------------------------------------------------------- numpy


def test_numpy_arrays_go_through_pykmr_numpy():
    rng = np.random.default_rng(0)
    x, u = rng.random((30, 3)), rng.random((30, 2))
    y, v = rng.random((20, 3)), rng.random((20, 2))
    b = rng.standard_normal((20, 2))
    params = {"id": Kernel("gaussian(x,y) * linear(u,v)**2"), "gamma": (2.0, None)}
    a = kernel_product(params, (x, u), (y, v), b)
    assert isinstance(a, np.ndarray) and a.shape == (30, 2)
    t = torch.from_numpy
    ref = DENSE["gaussian"](t(x), t(y), 2.0) * (t(u) @ t(v).T) ** 2 @ t(b)
    np.testing.assert_allclose(a, ref.numpy(), rtol=1e-10, atol=1e-12)
    a32 = kernel_product(
        {"id": Kernel("cauchy(x,y)"), "gamma": np.array([0.5, 1.0, 2.0])},
        x.astype(np.float32),
        y.astype(np.float32),
        b.astype(np.float32),
    )
    assert a32.dtype == np.float32
    ref32 = DENSE["cauchy"](t(x), t(y), torch.tensor([0.5, 1.0, 2.0], dtype=F64)) @ t(b)
    np.testing.assert_allclose(a32, ref32.numpy(), rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- bad input


def _xyb():
    return rand(10, 3, seed=1), rand(8, 3, seed=2), randn(8, 2, seed=3)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"id": Kernel("gaussian(x,y) * linear(u,v)")}, r"takes a tuple of 2 gamma\(s\)"),
        ({"id": Kernel("gaussian(x,y) * linear(u,v)"), "gamma": (1.0,)}, "got a tuple of 1"),
        ({"id": Kernel("gaussian(x,y) * linear(u,v)"), "gamma": (1.0, None, 2.0)}, "got a tuple of 3"),
        (
            {"id": Kernel("gaussian(x,y) * linear(u,v)"), "gamma": (1.0, 2.0)},
            r"gamma\[1\] \(for linear\) must be None",
        ),
        (
            {"id": Kernel("gaussian(x,y) * linear(u,v)"), "gamma": (None, None)},
            r"gamma\[0\] \(for gaussian\) must be a value",
        ),
        ({"id": Kernel("gaussian(x,y)")}, r"gamma\[0\] \(for gaussian\) must be a value"),
    ],
)
def test_wrong_gammas(params, match):
    x, y, b = _xyb()
    with pytest.raises(ValueError, match=match):
        kernel_product(
            params,
            (x, x) if "u" in params["id"].x_vars else x,
            (y, y) if "v" in params["id"].y_vars else y,
            b,
        )


def test_bad_arguments():
    x, y, b = _xyb()
    g = {"id": Kernel("gaussian(x,y)"), "gamma": 1.0}
    with pytest.raises(ValueError, match="unknown kernel 'gauss'"):
        kernel_product({"id": "gauss(x,y)", "gamma": 1.0}, x, y, b)
    with pytest.raises(ValueError, match=r"gamma\[0\] .* has 2 values; expected 1, 3 \(per dimension\) or 9"):
        kernel_product({"id": Kernel("gaussian(x,y)"), "gamma": torch.ones(2, dtype=F64)}, x, y, b)
    with pytest.raises(ValueError, match="2 x-side variable"):
        kernel_product({"id": Kernel("gaussian(x,y) * linear(u,v)"), "gamma": (1.0, None)}, x, (y, y), b)
    with pytest.raises(ValueError, match="1 y-side variable"):
        kernel_product(g, x, (y, y), b)
    with pytest.raises(ValueError, match="mode 'lse' is not supported"):
        kernel_product(g, x, y, b, mode="lse")
    with pytest.raises(ValueError, match="takes one array b"):
        kernel_product(g, x, y)
    with pytest.raises(ValueError, match="takes one array b"):
        kernel_product(g, x, y, b, b)
    with pytest.raises(ValueError, match="a per-dimension gamma is an array or a list, not a tuple"):
        kernel_product({"id": Kernel("gaussian(x,y)"), "gamma": (1.0, 2.0, 3.0)}, x, y, b)
    a = kernel_product({"id": Kernel("gaussian(x,y)"), "gamma": [1.0, 2.0, 3.0]}, x, y, b)
    assert_close(a, DENSE["gaussian"](x, y, torch.tensor([1.0, 2.0, 3.0], dtype=F64)) @ b)
    with pytest.raises(ValueError, match="unknown params key"):
        kernel_product({**g, "sigma": 1.0}, x, y, b)
    with pytest.raises(ValueError, match="no 'id'"):
        kernel_product({"gamma": 1.0}, x, y, b)
    with pytest.raises(TypeError, match="params must be a dict"):
        kernel_product([1.0], x, y, b)
    with pytest.raises(ValueError, match="x variable 'x' must be 2-D"):
        kernel_product(g, x[0], y, b)
    with pytest.raises(ValueError, match="b must be 2-D"):
        kernel_product(g, x, y, b[:, 0])
    with pytest.raises(ValueError, match="y variable 'y' has 8 points but b has 7"):
        kernel_product(g, x, y, b[:7])
    with pytest.raises(ValueError, match="'x' has dim 3 but 'y' has dim 2"):
        kernel_product(g, x, y[:, :2], b)
    with pytest.raises(ValueError, match="x variable 'u' has 9 points but x variable 'x' has 10"):
        kernel_product(
            {"id": Kernel("gaussian(x,y) * linear(u,v)"), "gamma": (1.0, None)}, (x, x[:9]), (y, y), b
        )
    with pytest.raises(TypeError, match="mix torch tensors and numpy arrays"):
        kernel_product(g, x, y, b.numpy())
    with pytest.raises(TypeError, match="must be a torch tensor or a numpy array"):
        kernel_product(g, (x.tolist(),), y, b)


# ----------------------------------------------------------------------------- nothing compiled

_PRECOMPILED_SCRIPT = textwrap.dedent(
    """
    import torch
    from pykmr.kernels import Kernel, kernel_product
    for dtype in (torch.float32, torch.float64):
        for name in ("gaussian", "cauchy", "laplacian", "inverse_multiquadric", "linear"):
            for d, e in ((1, 1), (2, 3), (3, 2)):
                x, y = torch.rand(20, d, dtype=dtype), torch.rand(15, d, dtype=dtype)
                b = torch.rand(15, e, dtype=dtype)
                g = None if name == "linear" else 2.0
                kernel_product({"id": Kernel(name + "(x,y)"), "gamma": g}, x, y, b)
        # the Gaussian's gradients (x, y, b) are precompiled too
        x, y, b = (torch.rand(20, 3, dtype=dtype, requires_grad=True) for _ in range(3))
        kernel_product({"id": Kernel("gaussian(x,y)"), "gamma": 2.0}, x, y, b).sum().backward()
    print("ok")
    """
)


def test_common_kernels_compile_nothing(tmp_path):
    """One kernel with a scalar gamma (and the Gaussian's gradients) create no file in an empty cache."""
    cache = tmp_path / "cache"
    env = {**os.environ, "KMR_CACHE_DIR": str(cache), "KMR_QUIET": "1"}
    r = subprocess.run(
        [sys.executable, "-c", _PRECOMPILED_SCRIPT], env=env, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"
    assert not cache.exists() or list(cache.iterdir()) == []


def test_front_ends_refuse_the_other_array_type():
    import pykmr.numpy as kn
    import pykmr.torch as kt

    x, y, b = np.random.rand(4, 3), np.random.rand(5, 3), np.random.rand(5, 1)
    params = {"id": Kernel("gaussian(x,y)"), "gamma": 0.5}
    with pytest.raises(TypeError, match="pykmr.torch takes torch arrays, got numpy"):
        kt.kernel_product(params, x, y, b)
    tx, ty, tb = (torch.from_numpy(a) for a in (x, y, b))
    with pytest.raises(TypeError, match="pykmr.numpy takes numpy arrays, got torch"):
        kn.kernel_product(params, tx, ty, tb)
    expected = kt.kernel_product(params, tx, ty, tb).numpy()
    np.testing.assert_allclose(kn.kernel_product(params, x, y, b), expected)
