"""What the front ends need of the CUDA backend: finding NVRTC on sys.path (the nvidia-cuda-nvrtc wheel),
handing it to libkmr before its first GPU use, and a clear error when no GPU can be used.

libkmr opens libcuda and libnvrtc itself (dlopen, at first GPU use); nothing here imports torch.
"""

from __future__ import annotations

import ctypes.util
import glob
import os
import sys
import threading

from pykmr import _kmr

_lock = threading.Lock()
_hinted = False


def _site_dirs():
    dirs = list(sys.path)
    try:
        import site

        dirs += site.getsitepackages() + [site.getusersitepackages()]
    except AttributeError:  # virtualenvs with an old site module
        pass
    return [d for d in dict.fromkeys(dirs) if d and os.path.isdir(d)]


def _wheel_nvrtc():
    """libnvrtc of a pip nvidia-cuda-nvrtc wheel on sys.path (newest CUDA first), or None."""
    hits = []
    for d in _site_dirs():
        for sub in ("cu13", "cuda_nvrtc", "cu12", "cu*"):
            hits += glob.glob(os.path.join(d, "nvidia", sub, "lib", "libnvrtc.so*"))
    hits = [h for h in dict.fromkeys(hits) if "builtins" not in os.path.basename(h) and ".alt." not in h]
    return sorted(hits, key=lambda p: ("cu13" in p, "cuda_nvrtc" in p, p))[-1] if hits else None


def find_nvrtc():
    """A libnvrtc for display: the wheel's, the dynamic loader's, then CUDA_HOME's (libkmr's own search is in
    src/cuda/nvrtc.cpp; `info` reports where it really found it)."""
    found = _wheel_nvrtc() or ctypes.util.find_library("nvrtc")
    if found:
        return found
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home:
            pattern = os.path.join(home, "lib64", "libnvrtc.so*")
            hits = sorted(p for p in glob.glob(pattern) if "builtins" not in p)
            if hits:
                return hits[0]
    return None


def prepare():
    """Once per process, before the first GPU kernel: tells libkmr where pip put NVRTC."""
    global _hinted
    if _hinted:
        return
    with _lock:
        if not _hinted:
            path = _wheel_nvrtc()
            if path:
                _kmr.cuda_set_nvrtc_hint(path)
            _hinted = True


def unavailable_reason():
    """Why no CUDA GPU can be used (None when one can)."""
    if _kmr.cuda_gpu_available():
        return None
    info = _kmr.cuda_info()
    if not info["built"]:
        return "this pykmr was built without CUDA (KMR_CUDA=OFF)"
    if not info["driver_loaded"]:
        return info["driver_error"] or "the CUDA driver (libcuda) was not found"
    return info["driver_error"] or "the CUDA driver sees no GPU"


def require_gpu():
    """Raises RuntimeError saying what is missing when no CUDA GPU can be used."""
    why = unavailable_reason()
    if why is not None:
        raise RuntimeError(
            f"pykmr: backend='GPU' needs a CUDA GPU, but none can be used: {why}. "
            "Run on the CPU instead (backend='CPU', or 'auto' with CPU arrays)."
        )
