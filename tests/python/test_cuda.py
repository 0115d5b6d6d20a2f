"""The CUDA backend. Without a GPU: what `info` reports, `compile --backend cuda` (NVRTC, no GPU needed),
and the errors when a GPU is asked for. With a GPU (tests marked `gpu`, skipped without one; set
KMR_TEST_REQUIRE_GPU=1 to fail instead): every reduction, gradient and seed kernel on CUDA against the CPU
(the oracle), with the tolerances named below."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pykmr.numpy as knp
import pytest
import torch
from pykmr import _kmr
from pykmr.kernels import KERNELS, Kernel, kernel_product
from pykmr.torch import Genred, generic_argkmin, generic_logsumexp, generic_sum
from test_reductions import CASES, K, routine

# Tolerances of CUDA against the CPU. float32: the GPU kernels use fast math (exp, log, division within a
# few ulp), sums run in another order (tiles of 256, chunks) than the CPU's blocks. float64: ordering only.
TOL = {torch.float32: dict(rtol=2e-4, atol=2e-5), torch.float64: dict(rtol=1e-10, atol=1e-12)}

GAUSS = "Exp(-G*SqDist(X,Y))*B"
GAUSS_ALIASES = ["G = Pm(1)", "X = Vi(3)", "Y = Vj(3)", "B = Vj(2)"]


def gpu_ok():
    return torch.cuda.is_available() and _kmr.cuda_gpu_available()


def nvrtc_path():
    from pykmr import _cuda

    _cuda.prepare()
    info = _kmr.cuda_info()
    return info["nvrtc_path"] if info["nvrtc_loaded"] else None


def run_cli(*args, cache, timeout=300):
    env = {**os.environ, "KMR_CACHE_DIR": str(cache), "KMR_QUIET": "1"}
    return subprocess.run(
        [sys.executable, "-m", "pykmr", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


# ------------------------------------------------------------------------------------- without a GPU
def test_info_reports_the_cuda_backend(tmp_path):
    r = run_cli("info", "--json", cache=tmp_path)
    assert r.returncode == 0, r.stderr
    cuda = json.loads(r.stdout)["cuda"]
    native = _kmr.cuda_info()
    assert cuda["built"] == native["built"]
    assert cuda["compiled"] == native["compiled"] == (native["aot_kernels"] > 0)
    assert cuda["archs"] == list(native["archs"])
    if cuda["compiled"]:
        assert any(a.startswith("sm_") for a in cuda["archs"]) and any(
            a.startswith("compute_") for a in cuda["archs"]
        )
    # where libcuda and NVRTC were found, or why not
    assert (cuda["libcuda"] is None) != (cuda["libcuda_error"] is None) or cuda["devices"] == []
    assert (cuda["libnvrtc"] is None) == (cuda["nvrtc_error"] is not None)


def test_compile_cuda_prints_the_cubin_path_last(tmp_path):
    if nvrtc_path() is None:
        why = _kmr.cuda_info()["nvrtc_error"]
        # .ci/run installs nvidia-cuda-nvrtc (requirements-dev.txt): never skipped there
        if os.environ.get("CI"):
            pytest.fail(f"NVRTC must be found in CI: {why}")
        pytest.skip(f"NVRTC, an optional package (pip install pykmr[cuda]), is not installed: {why}")
    r = run_cli(
        "compile",
        "--backend",
        "cuda",
        "--arch",
        "sm_90",
        "--reduction",
        "Sum",
        "--axis",
        "1",
        "Exp(-G*SqDist(X,Y))*Sin(B)",
        "G = Pm(1)",
        "X = Vi(3)",
        "Y = Vj(3)",
        "B = Vj(2)",
        cache=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    path = r.stdout.strip().splitlines()[-1]
    assert path.endswith(".cubin") and os.path.dirname(path) == os.path.realpath(tmp_path)
    with open(path, "rb") as f:
        assert f.read(4) == b"\x7fELF"
    # and its gradient, in float64, for axis 0
    r = run_cli(
        "compile",
        "--backend",
        "cuda",
        "--arch",
        "sm_90",
        "--axis",
        "0",
        "--dtype",
        "float64",
        "Grad(Exp(-G*SqDist(X,Y))*Sin(B),Y,E)",
        "G = Pm(1)",
        "X = Vi(3)",
        "Y = Vj(3)",
        "B = Vj(2)",
        "E = Vi(2)",
        cache=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1].endswith(".cubin")


def test_compile_cpu_prewarms_the_cache(tmp_path):
    r = run_cli(
        "compile", "--backend", "cpu", "Cos(X-Y)*B", "X = Vi(2)", "Y = Vj(2)", "B = Vj(1)", cache=tmp_path
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1].startswith("jit")
    assert any(n.endswith(".so") for n in os.listdir(tmp_path))


def test_compile_reports_bad_input(tmp_path):
    r = run_cli("compile", "--backend", "cuda", "Exp(X", "X = Vi(3)", cache=tmp_path)
    assert r.returncode != 0 and "Exp(X" in r.stderr


def test_gpu_backend_says_what_is_missing_or_runs():
    """backend="GPU": without a GPU a RuntimeError names what is missing and points to the CPU; with one, the
    same call runs there and agrees with the CPU."""
    x, y, b = torch.rand(5, 3), torch.rand(4, 3), torch.rand(4, 2)
    conv_t, conv_n = Genred(GAUSS, GAUSS_ALIASES, axis=1), knp.Genred(GAUSS, GAUSS_ALIASES, axis=1)
    args_n = (np.array([0.5], dtype=np.float32), x.numpy(), y.numpy(), b.numpy())
    if not gpu_ok():
        with pytest.raises(RuntimeError, match=r"(?s)needs a CUDA GPU.*CPU"):
            conv_t(0.5, x, y, b, backend="GPU")
        with pytest.raises(RuntimeError, match=r"(?s)needs a CUDA GPU.*CPU"):
            conv_n(*args_n, backend="GPU")
    else:
        got, want = conv_t(0.5, x, y, b, backend="GPU"), conv_t(0.5, x, y, b)
        torch.testing.assert_close(got, want, **TOL[torch.float32])
        np.testing.assert_allclose(conv_n(*args_n, backend="GPU"), conv_n(*args_n), rtol=2e-4, atol=2e-5)
    # the CPU is unaffected
    assert Genred(GAUSS, GAUSS_ALIASES, axis=1)(0.5, x, y, b).shape == (5, 2)


# ------------------------------------------------------------------------------------- with a GPU
gpu = pytest.mark.gpu


@pytest.fixture(scope="module", autouse=True)
def _compile_in_parallel():
    """With a GPU: the CPU oracle's JIT modules (and the NVRTC kernels) are compiled in parallel first."""
    if not gpu_ok():
        return
    from helpers import warm_up

    def job(red, axis, dtype, dev):
        x, y, b = (torch.rand(8, 2, dtype=dtype, device=dev) for _ in range(3))
        routine(red, axis)(x, y, b)

    warm_up(
        [
            lambda r=r, a=a, d=d, v=v: job(r, a, d, v)
            for r in CASES
            for a in (0, 1)
            for d in (torch.float32, torch.float64)
            for v in ("cpu", "cuda")
        ]
    )


SIZES = [(7, 5), (300, 5000), (3000, 700), (1, 20000)]  # tiles, split-j chunks, many rows, one row


def on(dev, *ts):
    return [t.to(dev) for t in ts]


def _is_selection(red):
    return "Arg" in red or "KMin" in red or red in ("Min", "Max")


# Selections are compared in float64 only (float32 may flip near-ties); KMin needs K <= the reduced size.
REDUCTION_CASES = [
    (red, axis, n, m, dtype)
    for red in CASES
    for axis in (1, 0)
    for n, m in SIZES
    for dtype in (torch.float32, torch.float64)
    if not (dtype == torch.float32 and _is_selection(red))
    and not ("KMin" in red and (m if axis == 1 else n) < K)
]


@gpu
@pytest.mark.parametrize("red, axis, n, m, dtype", REDUCTION_CASES)
def test_reduction_cuda_vs_cpu(red, axis, n, m, dtype, seed):
    x, y, b = (
        torch.rand(n, 2, dtype=dtype) * 2 - 1,
        torch.rand(m, 2, dtype=dtype) * 2 - 1,
        torch.rand(m, 2, dtype=dtype),
    )
    r = routine(red, axis)
    cpu = r(x, y, b)
    got = r(*on("cuda", x, y, b))
    cpu, got = (cpu, got) if isinstance(cpu, tuple) else ((cpu,), (got,))
    for g, c in zip(got, cpu):
        assert g.device.type == "cuda" and g.dtype == c.dtype and g.shape == c.shape
        if c.dtype == torch.int64:
            torch.testing.assert_close(g.cpu(), c)
        else:
            torch.testing.assert_close(g.cpu(), c, **TOL[dtype])


@gpu
@pytest.mark.parametrize("k", [1, 10, 40])  # 40 > KMR_CUDA_KMIN_LOCAL: accumulators in global memory
def test_argkmin_cuda_vs_cpu(k, seed):
    x, y = torch.randn(2000, 3, dtype=torch.float64), torch.randn(3000, 3, dtype=torch.float64)
    knn = generic_argkmin("SqDist(X,Y)", f"A = Vi({k})", "X = Vi(3)", "Y = Vj(3)")
    torch.testing.assert_close(knn(*on("cuda", x, y)).cpu(), knn(x, y))


@gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_precompiled_and_nvrtc_kernels(dtype, seed):
    """The Gaussian runs from the embedded fatbin (when built with nvcc); a formula outside the manifest
    through NVRTC; both agree with the CPU."""
    x, y, b = (
        torch.rand(1000, 3, dtype=dtype),
        torch.rand(2000, 3, dtype=dtype),
        torch.rand(2000, 2, dtype=dtype),
    )
    g = torch.tensor([2.0], dtype=dtype)
    conv = Genred(GAUSS, GAUSS_ALIASES, axis=1)
    name = "float32" if dtype == torch.float32 else "float64"
    if name == "float32":  # the AOT value types default to float32 (KMR_CUDA_PRECOMPILED_DTYPES)
        assert conv._core.kernel.is_precompiled_cuda(name) == _kmr.cuda_info()["compiled"]
    torch.testing.assert_close(conv(*on("cuda", g, x, y, b)).cpu(), conv(g, x, y, b), **TOL[dtype])
    other = Genred("Exp(-G*SqDist(X,Y))*Sin(B)+Atan((X|Y))", GAUSS_ALIASES, axis=0)
    torch.testing.assert_close(other(*on("cuda", g, x, y, b)).cpu(), other(g, x, y, b), **TOL[dtype])


@gpu
@pytest.mark.parametrize("name", list(KERNELS))
def test_seed_kernels_and_gradients_cuda_vs_cpu(name, seed):
    x, y = torch.rand(500, 3, dtype=torch.float64), torch.rand(700, 3, dtype=torch.float64)
    b = torch.rand(700, 2, dtype=torch.float64)
    gamma = None if KERNELS[name] is None else torch.tensor([1.5], dtype=torch.float64)  # linear: no gamma
    params = {"id": Kernel(f"{name}(x,y)"), "gamma": gamma}
    ins_cpu = [t.clone().requires_grad_() for t in (x, y, b)]
    ins_gpu = [t.cuda().requires_grad_() for t in (x, y, b)]
    out_cpu = kernel_product(params, *ins_cpu)
    params_gpu = {"id": params["id"], "gamma": None if gamma is None else gamma.cuda()}
    out_gpu = kernel_product(params_gpu, *ins_gpu)
    torch.testing.assert_close(out_gpu.cpu(), out_cpu.detach(), **TOL[torch.float64])
    w = torch.rand_like(out_cpu)
    g_cpu = torch.autograd.grad((out_cpu * w).sum(), ins_cpu)
    g_gpu = torch.autograd.grad((out_gpu * w.cuda()).sum(), ins_gpu)
    for a, c in zip(g_gpu, g_cpu):
        torch.testing.assert_close(a.cpu(), c, **TOL[torch.float64])


@gpu
def test_gradcheck_on_cuda(seed):
    """Double backward on the GPU (gradgradcheck), LogSumExp and Sum."""
    x = torch.rand(20, 2, dtype=torch.float64, device="cuda", requires_grad=True)
    y = torch.rand(30, 2, dtype=torch.float64, device="cuda", requires_grad=True)
    b = torch.rand(30, 1, dtype=torch.float64, device="cuda", requires_grad=True)
    conv = Genred("Exp(-SqDist(X,Y))*B", ["X = Vi(2)", "Y = Vj(2)", "B = Vj(1)"], axis=1)
    lse = generic_logsumexp("-SqDist(X,Y)+B", "A = Vi(1)", "X = Vi(2)", "Y = Vj(2)", "B = Vj(1)")
    for f in (conv, lse):
        assert torch.autograd.gradcheck(f, (x, y, b))
        assert torch.autograd.gradgradcheck(f, (x, y, b))


@gpu
def test_every_aot_kernel_runs_and_matches_the_cpu(seed):
    """Each kernel of the embedded fatbins (the manifest) loads on this GPU and agrees with the CPU."""
    if not _kmr.cuda_info()["compiled"]:
        if os.environ.get("KMR_TEST_WHEEL") == "1":  # scripts/test.sh builds the wheel with nvcc
            pytest.fail("the wheel under test has no AOT CUDA kernels: it was built without nvcc")
        pytest.skip(
            "this build has no AOT CUDA kernels (built without nvcc, or KMR_CUDA=OFF): no fatbin to check"
        )
    import re

    from pykmr.common import parse_alias

    manifest = os.path.join(os.path.dirname(__file__), "..", "..", "src", "precompiled", "manifest.txt")
    assert os.path.exists(manifest), f"the tests run from the source tree: {manifest} is missing"
    count = 0
    with open(manifest) as f:
        lines = f.read().splitlines()
    for line in lines:
        if not re.match(r"^[a-z]", line):
            continue
        fields = [f.strip() for f in line.split("|")]
        red, axis, formula, aliases = fields[1], int(fields[2]), "|".join(fields[3:-1]), fields[-1]
        for d in (1, 2, 3):
            al = aliases.replace("{D}", str(d)).replace("{E}", str(d)).split()
            r = Genred(formula, al, red, axis=axis, opt_arg=3 if "KMin" in red else None)
            if not r._core.kernel.is_precompiled_cuda("float32"):
                continue  # not in this build's KMR_CUDA_PRECOMPILED subset
            args = []
            for text in al:
                a = parse_alias(text)
                shape = {0: (40, a.dim), 1: (50, a.dim), 2: (a.dim,)}[a.cat]
                # multiples of 1/8, i-points off the j-grid: distances are exact in float32 and never 0, so
                # selections (ties too) agree and no derivative hits Sqrt(0)
                args.append(torch.randint(0, 8, shape).float() / 4 + (0.125 if a.cat == 0 else 0.25))
            cpu = r(*args)
            got = r(*on("cuda", *args))
            for g, c in zip(
                got if isinstance(got, tuple) else (got,), cpu if isinstance(cpu, tuple) else (cpu,)
            ):
                torch.testing.assert_close(g.cpu(), c, **TOL[torch.float32])
            count += 1
    assert count > 0


@gpu
def test_torch_current_stream_and_cpu_copies(seed):
    x, y, b = torch.rand(3000, 3), torch.rand(4000, 3), torch.rand(4000, 2)
    g = torch.tensor([1.0])
    conv = generic_sum(GAUSS, "A = Vi(2)", *GAUSS_ALIASES)
    want = conv(g, x, y, b)
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        ins = on("cuda", g, x, y, b)
        got = conv(*ins)
    s.synchronize()
    torch.testing.assert_close(got.cpu(), want, **TOL[torch.float32])
    # CPU tensors with backend="GPU": copied to the GPU and back, with gradients
    xr = x.clone().requires_grad_()
    out = conv(g, xr, y, b, backend="GPU")
    assert out.device.type == "cpu"
    torch.testing.assert_close(out, want, **TOL[torch.float32])
    (gx,) = torch.autograd.grad(out.sum(), xr)
    xc = x.clone().requires_grad_()
    (gc,) = torch.autograd.grad(conv(g, xc, y, b).sum(), xc)
    torch.testing.assert_close(gx, gc, **TOL[torch.float32])
    # numpy arrays with backend="GPU"
    nconv = knp.generic_sum(GAUSS, "A = Vi(2)", *GAUSS_ALIASES)
    np.testing.assert_allclose(
        nconv(g.numpy(), x.numpy(), y.numpy(), b.numpy(), backend="GPU"), want.numpy(), **TOL[torch.float32]
    )


@gpu
def test_cuda_bad_input():
    x, y, b = torch.rand(5, 3), torch.rand(4, 3), torch.rand(4, 2)
    conv = Genred(GAUSS, GAUSS_ALIASES, axis=1)
    with pytest.raises(ValueError, match="put all arguments on one device"):
        conv(0.5, x.cuda(), y, b)
    with pytest.raises(ValueError, match="backend='CPU'"):
        conv(0.5, x.cuda(), y.cuda(), b.cuda(), backend="CPU")
    if torch.cuda.device_count() > 1:
        with pytest.raises(ValueError, match="one device"):
            conv(0.5, x.cuda(0), y.cuda(1), b.cuda(1))
    free, _ = torch.cuda.mem_get_info()
    huge = int(free // 8) + 1  # rows whose output cannot fit next to them: torch or pykmr raises
    with pytest.raises((RuntimeError, torch.OutOfMemoryError)):
        Genred("SqDist(X,Y)", ["X = Vi(1)", "Y = Vj(1)"], "KMin_ArgKMin", axis=1, opt_arg=64)(
            torch.zeros(huge // 64, 1, device="cuda"), torch.zeros(64, 1, device="cuda")
        )


@gpu
def test_empty_and_tiny_sizes_on_cuda():
    conv = Genred(GAUSS, GAUSS_ALIASES, axis=1)
    g = torch.tensor([1.0], device="cuda")
    out = conv(
        g, torch.rand(3, 3, device="cuda"), torch.rand(0, 3, device="cuda"), torch.rand(0, 2, device="cuda")
    )
    torch.testing.assert_close(out.cpu(), torch.zeros(3, 2))
    out = conv(
        g, torch.rand(0, 3, device="cuda"), torch.rand(4, 3, device="cuda"), torch.rand(4, 2, device="cuda")
    )
    assert out.shape == (0, 2)


@gpu
@pytest.mark.parametrize("values", ["tenth", "uniform"])
@pytest.mark.parametrize("m", [20_000, 1_000_003])
def test_float32_sum_is_rounded_about_once_on_cuda(values, m):
    """Issue #10 §6 on the GPU: the float32 Sum over j is compensated as on the CPU (runs of 4 values,
    cascaded tile sums, range and chunk sums in double: cuda_driver.cuh), so 2e4 x 0.1 and 1e6 uniform
    values are within a rounding or two of the exact sum, for 1 row (j split in many chunks) and 300 rows."""
    rng = np.random.default_rng(0)
    print("seed = 0")
    b = rng.uniform(0.5, 1.5, (m, 1)).astype(np.float32)
    if values == "tenth":
        b[:] = 0.1
    exact = float(b.astype(np.float64).sum())
    routine = Genred("B", ["X = Vi(1)", "B = Vj(1)"], "Sum", axis=1)
    bound = 4 * 2.0**-24  # a few float32 roundings (the CPU's test_accuracy.py bound)
    for n in (1, 300):
        out = routine(torch.zeros(n, 1, device="cuda"), torch.from_numpy(b).cuda()).cpu().double()
        err = ((out - exact).abs() / abs(exact)).max().item()
        print(f"{values}, m={m}, n={n}: max rel err {err:.2e} (bound {bound:.2e})")
        assert err <= bound
