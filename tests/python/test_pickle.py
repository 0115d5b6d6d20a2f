"""Routines travel: Genred and generic_* (torch and numpy) pickle by pickle and cloudpickle as their formula,
aliases and options, give the same results after the trip, and rebuild in another process without compiling
when the kernel is precompiled or in the JIT cache (the child's JIT counters and its stderr say so)."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pykmr.numpy as kn
import pykmr.torch as kt
import pytest
import torch

cloudpickle = pytest.importorskip(
    "cloudpickle", reason="cloudpickle is a test dependency (requirements-dev.txt)"
)

GAUSS = ("Exp(-G*SqDist(X,Y))*B", ["G = Pm(1)", "X = Vi(3)", "Y = Vj(3)", "B = Vj(1)"])  # precompiled
JIT = ("Sin(G*SqDist(X,Y))*B", ["G = Pm(1)", "X = Vi(3)", "Y = Vj(3)", "B = Vj(1)"])  # never precompiled

# (constructor kwargs) covering every option the spec carries
CASES = [
    dict(reduction_op="Sum", axis=1),
    dict(reduction_op="Sum", axis=0, dtype_acc="float64", sum_scheme="kahan_scheme"),
    dict(reduction_op="ArgKMin", axis=1, opt_arg=4),
    dict(reduction_op="Min_ArgMin", axis=1),
    dict(reduction_op="LogSumExp", axis=1, formula2="B"),
]
DUMPERS = {"pickle": pickle, "cloudpickle": cloudpickle}


def _data(frontend, dtype="float64", n=37, m=29):
    rng = np.random.default_rng(0)
    g, x, y, b = (np.array([2.0]), rng.random((n, 3)), rng.random((m, 3)), rng.random((m, 1)))
    arrays = [a.astype(dtype) for a in (g, x, y, b)]
    return arrays if frontend is kn else [torch.from_numpy(a) for a in arrays]


def _formula(kw):
    # reductions that select values take a scalar formula (SqDist: a precompiled one, fewer compiles)
    if kw["reduction_op"] in ("ArgKMin", "Min_ArgMin"):
        return "SqDist(X,Y)", ["X = Vi(3)", "Y = Vj(3)"]
    return ("-G*SqDist(X,Y)", GAUSS[1]) if kw["reduction_op"] == "LogSumExp" else GAUSS


def _same(a, b):
    if isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b)
        for u, v in zip(a, b):
            _same(u, v)
        return
    assert type(a) is type(b) and a.dtype == b.dtype and tuple(a.shape) == tuple(b.shape)
    assert (np.asarray(a) == np.asarray(b)).all()  # same kernel, same data: bitwise equal


@pytest.mark.parametrize("dumper", sorted(DUMPERS))
@pytest.mark.parametrize("frontend", [kn, kt], ids=["numpy", "torch"])
@pytest.mark.parametrize("kw", CASES, ids=lambda kw: f"{kw['reduction_op']}-axis{kw['axis']}")
def test_genred_round_trip(dumper, frontend, kw):
    formula, aliases = _formula(kw)
    routine = frontend.Genred(formula, aliases, **kw)
    back = DUMPERS[dumper].loads(DUMPERS[dumper].dumps(routine))
    assert type(back) is type(routine) and back is not routine
    assert back._core.spec() == routine._core.spec()
    args = _data(frontend)
    if len(aliases) == 2:
        args = args[1:3]
    _same(back(*args), routine(*args))


@pytest.mark.parametrize("dumper", sorted(DUMPERS))
def test_generic_routines_round_trip(dumper):
    aliases = GAUSS[1]
    routines = [
        kt.generic_sum(GAUSS[0], "A = Vi(1)", *aliases),
        kn.generic_logsumexp("-G*SqDist(X,Y)+B", "A = Vx(1)", *aliases),
        kn.generic_argmin("SqDist(X,Y)", "A = Vi(1)", *aliases),
        kt.generic_argkmin("SqDist(X,Y)", "A = Vi(3)", *aliases),
    ]
    for r in routines:
        back = DUMPERS[dumper].loads(DUMPERS[dumper].dumps(r))
        args = _data(kn if type(r).__module__.startswith("pykmr.numpy") else kt)
        _same(back(*args), r(*args))


def test_torch_gradients_after_round_trip():
    """The gradient routines are caches: dropped in the pickle, rebuilt on the first backward."""
    routine = kt.Genred(*GAUSS, axis=1)
    g, x, y, b = _data(kt)
    routine(g, x.requires_grad_(), y, b).sum().backward()
    assert routine._derived  # built by that backward; must not be shipped
    back = pickle.loads(pickle.dumps(routine))
    assert back._derived == {}
    x2 = x.detach().clone().requires_grad_()
    back(g, x2, y, b).sum().backward()
    assert torch.equal(x2.grad, x.grad)


def test_genred_core_pickles_on_its_own():
    """Objects that hold a GenredCore (LazyTensor reductions, KernelSolve) pickle through it."""
    core = kn.Genred(*GAUSS, axis=1)._core
    back = pickle.loads(pickle.dumps(core))
    assert back.spec() == core.spec() and back.kernel.key == core.kernel.key


CHILD = textwrap.dedent("""
    import pickle, sys
    import numpy as np
    from pykmr import _kmr
    routine = pickle.load(open(sys.argv[1], "rb"))
    args = pickle.load(open(sys.argv[2], "rb"))
    out = routine(*args)
    np.save(sys.argv[3], np.asarray(out))
    s = _kmr.jit_stats()
    print(s["compilations"], s["disk_hits"], routine._core.kernel.is_precompiled(str(args[1].dtype)))
""")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("which", ["precompiled", "cached"])
@pytest.mark.parametrize("dumper", sorted(DUMPERS))
def test_rebuilt_in_another_process_without_compiling(tmp_path, dumper, which, dtype):
    """A child process sharing KMR_CACHE_DIR runs the unpickled routine: no compile, no compile log line."""
    formula, aliases = GAUSS if which == "precompiled" else JIT
    routine = kn.Genred(formula, aliases, axis=1)
    args = _data(kn, dtype)
    expected = routine(*args)  # fills the JIT cache for the "cached" case
    assert routine._core.kernel.is_precompiled(dtype) == (which == "precompiled"), (
        "the test's formulas must be (or not be) in this build's precompiled set"
    )
    (tmp_path / "r.pkl").write_bytes(DUMPERS[dumper].dumps(routine))
    (tmp_path / "a.pkl").write_bytes(pickle.dumps(args))
    env = {k: v for k, v in os.environ.items() if k != "KMR_QUIET"}  # compile log lines on, if any
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            str(tmp_path / "r.pkl"),
            str(tmp_path / "a.pkl"),
            str(tmp_path / "out.npy"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    compilations, disk_hits, precompiled = r.stdout.split()
    assert compilations == "0" and "compiled" not in r.stderr, f"the child compiled:\n{r.stderr}"
    assert precompiled == str(which == "precompiled")
    # a cached kernel is loaded from disk once; a precompiled one never touches the cache
    assert disk_hits == ("1" if which == "cached" else "0"), r.stdout + r.stderr
    assert (np.load(tmp_path / "out.npy") == expected).all()


# ---------------------------------------------------------------------------------------------------------
# LazyTensor reductions and KernelSolve travel too (issue 14 section 2)
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dumper", sorted(DUMPERS))
@pytest.mark.parametrize("frontend", [kt, kn], ids=["torch", "numpy"])
def test_lazy_tensor_reduction_pickles(frontend, dumper):
    """A symbolic LazyTensor reduction (KeOps's 'reduced LazyTensor' with Vi(0, 3)... arguments) pickles and
    gives bitwise the same result on the other side."""
    dumps = DUMPERS[dumper].dumps
    _, x, y, b = _data(frontend)
    xi, yj, bj = frontend.Vi(0, 3), frontend.Vj(1, 3), frontend.Vj(2, 1)
    red = ((-((xi - yj) ** 2).sum(-1)).exp() * bj).sum(dim=1, call=False)
    back = pickle.loads(dumps(red))
    _same(red(x, y, b), back(x, y, b))


@pytest.mark.parametrize("dumper", sorted(DUMPERS))
@pytest.mark.parametrize("frontend", [kt, kn], ids=["torch", "numpy"])
def test_kernel_solve_pickles(frontend, dumper):
    dumps = DUMPERS[dumper].dumps
    g, x, _, _ = _data(frontend)
    rhs = x[:, :1] * 1.0
    ks = frontend.KernelSolve(
        "Exp(-G*SqDist(X,Y))*B", ["G = Pm(1)", "X = Vi(3)", "Y = Vj(3)", "B = Vj(1)"], "B", axis=1
    )
    back = pickle.loads(dumps(ks))
    _same(ks(g, x, x, rhs, alpha=0.5), back(g, x, x, rhs, alpha=0.5))
