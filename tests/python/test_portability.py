"""POSIX-only calls live in a known list of files (the host JIT, the CUDA library loaders, the thread
pool's fork handling): everything else, the public headers above all, must compile on Windows too. A new
POSIX call elsewhere fails here; a Windows port replaces exactly the files of POSIX_FILES. Reads the
source tree (the tests run from a checkout)."""

from __future__ import annotations

import glob
import os
import re

import pytest

ROOT = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", ".."))
# Files allowed to use POSIX-only APIs, each with why (and how it is guarded where it is).
POSIX_FILES = {
    "src/jit/cache.cpp": "dlopen of cache entries, stat/unlink",
    "src/jit/compiler.cpp": "posix_spawn of the compiler, pipes, waitpid",
    "src/jit/paths.cpp": "getpwuid_r, realpath, dladdr, mkdir modes, uid checks",
    "src/jit/store.cpp": "flock, O_EXCL writes, opendir",
    "src/jit/key.cpp": "stat of the headers, pthread_atfork (fresh tables in a fork()ed child)",
    "src/cuda/driver_api.cpp": "dlopen of libcuda",
    "src/cuda/nvrtc.cpp": "dlopen of libnvrtc, opendir of the wheel's folder",
    "src/cpu/thread_pool.cpp": "pthread_atfork, sched affinity (under #if __unix__/__APPLE__)",
    "python/src/interrupt.cpp": "sigaction around CPU runs, for Ctrl-C (under #if __unix__/__APPLE__)",
}
POSIX = re.compile(
    r"#include\s*<(unistd|dlfcn|spawn|pwd|dirent|fcntl|pthread|sched|sys/[a-z_]+)\.h>"
    r"|\b(fork|vfork|mmap|munmap|dlopen|dlsym|dladdr|pipe2?|posix_spawnp?|flock|getpwuid_r|waitpid|sigaction)\s*\("
)


def _sources():
    for pattern in (
        "src/**/*.cpp",
        "src/**/*.hpp",
        "src/**/*.h",
        "include/**/*.hpp",
        "include/**/*.h",
        "include/**/*.cuh",
        "python/src/*.cpp",
        "python/src/*.hpp",
    ):
        yield from glob.glob(os.path.join(ROOT, pattern), recursive=True)


def test_source_tree_is_present():
    if not os.path.exists(os.path.join(ROOT, "src", "runtime", "op_table.cpp")):
        pytest.fail(f"the tests run from a checkout: {ROOT}/src is missing")


def test_posix_calls_only_in_the_listed_files():
    offenders = {}
    for path in _sources():
        rel = os.path.relpath(path, ROOT).replace(os.sep, "/")
        if rel in POSIX_FILES:
            continue
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        for n, line in enumerate(lines, 1):
            if POSIX.search(line.split("//")[0]):
                offenders.setdefault(rel, []).append(f"{n}: {line.strip()}")
    assert offenders == {}, f"POSIX-only calls outside {sorted(POSIX_FILES)}: {offenders}"


def test_listed_files_exist():
    missing = [f for f in POSIX_FILES if not os.path.exists(os.path.join(ROOT, f))]
    assert missing == [], f"stale entries in POSIX_FILES: {missing}"
