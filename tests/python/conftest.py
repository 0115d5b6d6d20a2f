"""Test session setup: a private JIT cache folder (set before pykmr is imported) and a printed seed."""

import os
import shutil
import tempfile
import zlib

import pytest

# KMR_TEST_CACHE_DIR keeps compiled formulas between runs (development); by default each session gets an
# empty temporary cache, so that the suite tests the JIT too.
_OWN_CACHE = "KMR_TEST_CACHE_DIR" not in os.environ
CACHE_DIR = os.environ.get("KMR_TEST_CACHE_DIR") or tempfile.mkdtemp(prefix="pykmr-test-cache-")
os.environ["KMR_CACHE_DIR"] = CACHE_DIR


def pytest_unconfigure(config):
    if _OWN_CACHE:
        shutil.rmtree(CACHE_DIR, ignore_errors=True)


@pytest.fixture
def seed(request):
    """Seeds torch and numpy; the seed is printed (shown with a failure). KMR_TEST_SEED overrides it."""
    import numpy as np
    import torch

    value = int(os.environ.get("KMR_TEST_SEED", zlib.crc32(request.node.nodeid.encode()) % 2**31))
    print(f"seed = {value} (rerun with KMR_TEST_SEED={value})")
    torch.manual_seed(value)
    np.random.seed(value)
    return value


def _gpu_missing():
    """Why the tests marked `gpu` cannot run here (None when a CUDA GPU is usable by torch and pykmr)."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "torch sees no CUDA GPU"
    from pykmr import _cuda

    return _cuda.unavailable_reason()


# The files whose JIT warm-ups take longest (CI of stop 8, seconds on 2 cores: 854, 333, about 300, 200,
# 100; the formula fuzzer's budget: about 90), first: pytest-xdist's --dist loadfile hands files out in
# collection order, so the long ones start at once on separate workers instead of one of them starting last
# and leaving the other worker idle.
SLOW_FILES_FIRST = (
    "test_lazy_tensor_ops.py",
    "test_ops.py",
    "test_autograd.py",
    "test_lazy_tensor.py",
    "test_dask.py",
    "test_fuzz_formulas.py",
    "test_torch_func.py",
)


def _file_rank(item):
    name = item.path.name
    return SLOW_FILES_FIRST.index(name) if name in SLOW_FILES_FIRST else len(SLOW_FILES_FIRST)


def pytest_collection_modifyitems(config, items):
    """The slow files first (above); tests marked `gpu` are skipped without a CUDA GPU, with the reason;
    KMR_TEST_REQUIRE_GPU=1 (the GPU check script) makes a missing GPU an error instead, so that a GPU run
    cannot pass by skipping."""
    items.sort(key=_file_rank)  # stable: the order within a file and among the other files is kept
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    why = _gpu_missing()
    if why is None:
        return
    if os.environ.get("KMR_TEST_REQUIRE_GPU") == "1":
        raise pytest.UsageError(f"KMR_TEST_REQUIRE_GPU=1 but no GPU can be used: {why}")
    mark = pytest.mark.skip(reason=f"needs a CUDA GPU: {why}")
    for item in gpu_items:
        item.add_marker(mark)
