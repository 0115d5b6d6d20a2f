"""What a pip user installs: pykmr is the installed package (not the source tree), its binaries carry no
path of the build machine and only relative RPATHs, the exported CMake target is clean, the JIT's headers
sit beside libkmr, and the JIT finds a C++ compiler at run time (the build-time one may be gone).

KMR_TEST_WHEEL=1 (set by scripts/test.sh for the repaired wheel) also requires that the build-time
compiler no longer exists, so that the run-time search is what the suite exercises."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pykmr
import pytest
from pykmr import _kmr

PKG = os.path.dirname(os.path.realpath(pykmr.__file__))
SOURCE_ROOT = os.path.realpath(
    os.environ.get("KMR_TEST_SOURCE_ROOT") or os.path.join(os.path.dirname(__file__), "..", "..")
)
IN_WHEEL_CI = os.environ.get("KMR_TEST_WHEEL") == "1"


def _package_files():
    """Files of the installed package (and of the libraries auditwheel grafted beside it), no bytecode."""
    roots = [PKG] + [os.path.join(os.path.dirname(PKG), d) for d in ("pykmr.libs",)]
    for root in roots:
        for d, _, fs in os.walk(root):
            if "__pycache__" in d:
                continue
            for f in fs:
                yield os.path.join(d, f)


def _shared_objects():
    return [p for p in _package_files() if re.search(r"\.so(\.|$)", os.path.basename(p))]


def test_pykmr_is_the_installed_package_not_the_source_tree():
    src_pkg = os.path.join(SOURCE_ROOT, "python", "pykmr")
    assert not PKG.startswith(os.path.realpath(src_pkg)), f"pykmr imported from the source tree: {PKG}"
    if IN_WHEEL_CI:
        assert PKG.startswith(os.path.realpath(sys.prefix)), f"pykmr not from this environment: {PKG}"


def test_no_build_tree_path_in_the_package():
    """Like `strings FILE | grep SOURCE_ROOT` on every installed file: the source and build trees (the build
    tree is under the source tree here) must not leak into binaries, CMake files or headers."""
    needle = SOURCE_ROOT.encode()
    leaks = []
    for p in _package_files():
        with open(p, "rb") as f:
            if needle in f.read():
                leaks.append(os.path.relpath(p, PKG))
    assert leaks == [], f"{SOURCE_ROOT} found in {leaks}"


def _tool(name, package):
    """A binary-inspection tool; in CI (.ci/run installs it) its absence fails, elsewhere it skips."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") or IN_WHEEL_CI:
            pytest.fail(f"{name} ({package}) must be installed in CI (.ci/run installs it)")
        pytest.skip(f"{name} ({package}), the optional tool this check reads binaries with, is missing")
    return path


def test_rpaths_are_relative():
    """Linux: every RPATH/RUNPATH entry starts with $ORIGIN (readelf); macOS: every LC_RPATH with
    @loader_path (otool); Windows DLLs have no run path (they are found beside the extension)."""
    sos = _shared_objects() if sys.platform != "darwin" else [
        p for p in _package_files() if p.endswith((".so", ".dylib"))
    ]
    if sys.platform == "win32":
        assert not any(p.endswith(".so") for p in sos), sos
        return
    assert any(os.path.basename(p).startswith("libkmr") for p in sos), sos
    if sys.platform == "darwin":
        otool = _tool("otool", "Xcode command line tools")
        for p in sos:
            out = subprocess.run([otool, "-l", p], capture_output=True, text=True, check=True).stdout
            for entry in re.findall(r"cmd LC_RPATH\s+cmdsize \d+\s+path (\S+)", out):
                assert entry.startswith("@loader_path"), f"{os.path.basename(p)}: absolute LC_RPATH {entry!r}"
        return
    readelf = _tool("readelf", "binutils")
    for p in sos:
        out = subprocess.run([readelf, "-d", p], capture_output=True, text=True, check=True).stdout
        for m in re.finditer(r"\((?:RPATH|RUNPATH)\).*\[(.*)\]", out):
            for entry in m.group(1).split(":"):
                assert entry.startswith("$ORIGIN"), f"{os.path.basename(p)}: absolute RPATH entry {entry!r}"


def test_exported_target_is_clean():
    """kmr::kmr exports only pykmr/include (the public API needs no xsimd), relative to the package."""
    targets = os.path.join(PKG, "lib", "cmake", "kmr", "kmrTargets.cmake")
    assert os.path.exists(targets), targets
    with open(targets) as f:
        text = f.read()
    dirs = re.findall(r'INTERFACE_INCLUDE_DIRECTORIES "([^"]*)"', text)
    assert dirs, "kmr::kmr exports no include folder"
    for d in dirs:
        assert "third_party" not in d and "xsimd" not in d, f"xsimd exported by kmr::kmr: {d}"
        for entry in d.split(";"):
            assert entry.startswith("${_IMPORT_PREFIX}"), f"absolute include folder exported: {entry}"


def test_jit_headers_live_beside_libkmr():
    inc = os.path.realpath(_kmr.include_dir())
    assert inc == os.path.join(PKG, "include"), inc
    assert os.path.exists(os.path.join(inc, "kmr", "config.hpp"))
    if IN_WHEEL_CI:  # .ci/run builds with xsimd (libxsimd-dev): its copy is in the wheel
        assert os.path.exists(os.path.join(inc, "kmr", "third_party", "xsimd", "xsimd.hpp"))


COMPILER_SCRIPT = """
import json, pykmr
from pykmr import _kmr
out = {"command": _kmr.compiler_command(), "build": _kmr.build_compiler()}
try:
    out["identity"] = _kmr.compiler_identity()
except RuntimeError as e:
    out["error"] = str(e)
print(json.dumps(out))
"""


def _compiler_probe(path_dirs, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CXX"}
    env["PATH"] = os.pathsep.join(str(d) for d in path_dirs)
    env["KMR_CACHE_DIR"] = str(tmp_path / "cache")
    r = subprocess.run(
        [sys.executable, "-c", COMPILER_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(tmp_path),
    )
    assert r.returncode == 0, r.stderr
    import json

    return json.loads(r.stdout)


def _real_compiler():
    for prog in ("c++", "g++", "clang++"):
        p = shutil.which(prog)
        if p:
            return os.path.realpath(p)
    pytest.fail("no C++ compiler on PATH: the JIT tests need one")


@pytest.mark.parametrize("present", [("clang++",), ("g++", "clang++"), ("c++", "g++")])
def test_compiler_found_on_path_at_run_time(tmp_path, present):
    """Without CXX the JIT takes the first of c++, g++, clang++ on PATH (the build-time path comes last)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in present:
        os.symlink(_real_compiler(), bindir / name)
    got = _compiler_probe([bindir], tmp_path)
    assert got["command"] == present[0], got
    assert "identity" in got and str(bindir) not in got["identity"], got  # resolved to the real file


def test_no_compiler_anywhere_gives_the_install_hint(tmp_path):
    """Empty PATH, no CXX: the build-time compiler if it still exists, else the clear 'install' error."""
    empty = tmp_path / "empty"
    empty.mkdir()
    got = _compiler_probe([empty], tmp_path)
    if IN_WHEEL_CI:
        assert not os.path.exists(got["build"]), f"the CI wheel's build compiler should be gone: {got}"
    if os.path.exists(got["build"]):
        assert got["command"] == got["build"] and "identity" in got, got
    else:
        assert got["command"] == "c++", got
        err = got.get("error", "")
        assert "install a C++17 compiler" in err and "set CXX" in err, got
        assert "c++, g++, clang++" in err, got


def test_cxx_overrides_the_search(tmp_path):
    env = dict(os.environ, CXX=_real_compiler(), KMR_CACHE_DIR=str(tmp_path / "cache"))
    r = subprocess.run(
        [sys.executable, "-c", "from pykmr import _kmr; print(_kmr.compiler_command())"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and r.stdout.strip() == _real_compiler(), r.stdout + r.stderr
