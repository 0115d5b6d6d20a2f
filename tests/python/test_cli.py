"""`python -m pykmr`: info, cache, demo (run as subprocesses with a private KMR_CACHE_DIR)."""

import json
import os
import re
import subprocess
import sys

import pykmr
import pytest


def run_cli(*args, cache, cwd=None, timeout=120):
    env = {**os.environ, "KMR_CACHE_DIR": str(cache), "KMR_QUIET": "1"}
    return subprocess.run(
        [sys.executable, "-m", "pykmr", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_info_json(tmp_path):
    r = run_cli("info", "--json", cache=tmp_path)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    for key in (
        "version",
        "precompiled_kernels",
        "jit",
        "simd",
        "threads",
        "cuda",
        "cache",
        "torch",
        "numpy",
    ):
        assert key in info, key
    assert info["version"] == pykmr.__version__
    assert info["precompiled_kernels"] == pykmr.num_precompiled()
    assert isinstance(info["threads"], int) and info["threads"] >= 1
    assert set(info["jit"]) >= {"available", "compiler_command", "compiler_identity", "include_dir", "error"}
    assert info["jit"]["available"] == (info["jit"]["error"] is None)
    assert set(info["simd"]) >= {"cpu_level", "cpu_flags"}
    assert info["cuda"]["compiled"] == bool(info["cuda"]["archs"])  # AOT kernels of a build with nvcc
    assert set(info["cuda"]) >= {"built", "compiled", "archs", "libcuda", "libcuda_error", "libnvrtc",
                                 "nvrtc_error"}
    assert os.path.realpath(info["cache"]["dir"]) == os.path.realpath(tmp_path)
    assert info["cache"]["size_bytes"] == 0 and info["cache"]["entries"] == 0


def test_info_text_reports_a_missing_compiler(tmp_path):
    env_cxx = {"CXX": str(tmp_path / "no-such-compiler")}
    r = subprocess.run(
        [sys.executable, "-m", "pykmr", "info"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env_cxx, "KMR_CACHE_DIR": str(tmp_path / "c")},
    )
    assert r.returncode == 0, r.stderr
    assert "precompiled kernels" in r.stdout and "CPU threads" in r.stdout
    assert re.search(r"JIT compiler\s+unavailable: .*no-such-compiler", r.stdout), r.stdout


def _fake_entry(cache, key, suffix):
    (cache / f"{key}.{suffix}").write_bytes(b"\0" * 100)


def test_cache_info_and_clear(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    _fake_entry(cache, "0123456789abcdef0123456789abcdef", "so")
    _fake_entry(cache, "fedcba9876543210fedcba9876543210", "so")
    (cache / "notes.txt").write_text("not ours")  # the cache only removes its own entries
    r = run_cli("cache", "info", cache=cache)
    assert r.returncode == 0, r.stderr
    assert "2 entries" in r.stdout
    r = run_cli("cache", "clear", cache=cache)
    assert r.returncode == 0, r.stderr
    assert "cleared 2 entries" in r.stdout
    assert sorted(p.name for p in cache.iterdir()) == ["notes.txt"]
    assert "0 entries" in run_cli("cache", "info", cache=cache).stdout


def test_cache_clear_removes_a_compiled_kernel(tmp_path):
    cache = tmp_path / "cache"
    script = (
        "import numpy as np\n"
        "from pykmr import _kmr\n"
        "g = _kmr.Genred('Sin(X)*B', ['X = Vi(1)', 'B = Vj(1)'])\n"
        "x = np.ones((2, 1)); b = np.ones((3, 1)); out = np.empty((2, 1))\n"
        "g.run('float64', [x.ctypes.data, b.ctypes.data], 2, 3, out.ctypes.data)\n"
    )
    env = {**os.environ, "KMR_CACHE_DIR": str(cache), "KMR_QUIET": "1"}
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert any(cache.iterdir())
    r = run_cli("cache", "clear", cache=cache)
    assert r.returncode == 0, r.stderr
    assert list(cache.iterdir()) == []


def test_no_command_is_an_error(tmp_path):
    r = run_cli(cache=tmp_path)
    assert r.returncode == 2 and "demo,info,cache" in r.stderr


def test_demo_small(tmp_path):
    pytest.importorskip("torch")
    r = run_cli("demo", "--max-n", "2000", "--no-plot", cache=tmp_path / "cache", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert re.search(r"^\s+N\s+pykmr \(s\)\s+dense torch \(s\)", out, re.M), out
    for n in (100, 200, 500, 1000, 2000):
        assert re.search(rf"^\s+{n}\s+\S+\s+\S+\s+\S+x\s+\S+", out, re.M), (n, out)
    assert "precompiled" in out and "nothing compiled" in out
    assert "agree on the 5 sizes" in out
    assert not (tmp_path / "pykmr-demo.png").exists()
    assert not (tmp_path / "cache").exists() or list((tmp_path / "cache").iterdir()) == []


def test_demo_skips_what_does_not_fit(tmp_path):
    pytest.importorskip("torch")
    r = run_cli(
        "demo", "--max-n", "1000", "--no-plot", "--dense-mem-gb", "0.001", cache=tmp_path, cwd=tmp_path
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"^\s+1000\s+\S+\s+skipped \(N x N = 0\.004 GB\)", r.stdout, re.M), r.stdout


def test_demo_plot(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    r = run_cli("demo", "--max-n", "300", "--output", "out.png", cache=tmp_path / "cache", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "out.png").stat().st_size > 0
    assert "wrote the log-log plot" in r.stdout
