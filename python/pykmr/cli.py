"""Command line: `python -m pykmr {demo, info, cache}`.

demo [--max-n N] [--no-plot] [--output FILE]   the seed's experiment (pykmr.demo)
info [--json]                                  version, build, SIMD, threads, CUDA, cache
cache info | cache clear                       the JIT cache ($KMR_CACHE_DIR)
"""

from __future__ import annotations

import argparse
import ctypes.util
import glob
import json
import os
import platform
import re
import sys

_HASH_ENTRY = re.compile(r"^[0-9a-f]{32}\.")  # cache entries are <32-hex key>.<suffix>
_SIMD_LEVELS = ("sse2", "sse4_2", "avx", "avx2", "avx512f")  # x86, lowest to highest


def _try(fn):
    """(value, None) or (None, error message) for a native call that may fail."""
    try:
        return fn(), None
    except (RuntimeError, ValueError, OSError) as e:
        return None, str(e)


def cpu_simd():
    """What the CPU offers, from /proc/cpuinfo: (highest level, the relevant flags)."""
    flags = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key = line.split(":", 1)[0].strip().lower()
                if key in ("flags", "features"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    relevant = [f for f in (*_SIMD_LEVELS, "fma", "avx512bw", "avx512vl", "asimd", "sve") if f in flags]
    level = None
    for name in _SIMD_LEVELS:
        if name in flags:
            level = name
    if level is None and "asimd" in flags:
        level = "sve" if "sve" in flags else "asimd"
    return level, relevant


def _site_dirs():
    dirs = list(sys.path)
    try:
        import site

        dirs += site.getsitepackages() + [site.getusersitepackages()]
    except AttributeError:  # virtualenvs with an old site module
        pass
    return [d for d in dict.fromkeys(dirs) if d and os.path.isdir(d)]


def find_nvrtc():
    """libnvrtc: the dynamic loader's search, the nvidia-cuda-nvrtc wheel, then CUDA_HOME."""
    name = ctypes.util.find_library("nvrtc")
    if name:
        return name
    patterns = [
        os.path.join(d, "nvidia", sub, "lib", "libnvrtc.so*")
        for d in _site_dirs()
        for sub in ("cuda_nvrtc", "cu*")
    ]
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home:
            patterns.append(os.path.join(home, "lib64", "libnvrtc.so*"))
    for pattern in patterns:
        hits = sorted(p for p in glob.glob(pattern) if "builtins" not in os.path.basename(p))
        if hits:
            return hits[0]
    return None


def _cache_entries(path):
    try:
        names = os.listdir(path)
    except OSError:
        return 0
    return len({n[:32] for n in names if _HASH_ENTRY.match(n)})


def _package_version(name):
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def collect_info():
    """Everything `info` prints, as a JSON-able dict."""
    from pykmr import _kmr

    compiler, compiler_error = _try(_kmr.compiler_command)
    identity, identity_error = _try(_kmr.compiler_identity) if compiler is not None else (None, None)
    include_dir, include_error = _try(_kmr.include_dir)
    cache_dir, cache_error = _try(_kmr.cache_dir)
    cache_size, _ = _try(_kmr.cache_size_bytes) if cache_dir is not None else (None, None)
    level, flags = cpu_simd()
    jit_error = compiler_error or identity_error or include_error
    return {
        "version": _kmr.__version__,
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "precompiled_kernels": _kmr.num_precompiled(),
        "jit": {
            "available": jit_error is None,
            "compiler_command": compiler,
            "compiler_identity": identity,
            "include_dir": include_dir,
            "error": jit_error,
        },
        "simd": {
            "cpu_level": level,
            "cpu_flags": flags,
            "note": "what the CPU offers (from /proc/cpuinfo), not yet what the kernels use",
        },
        "threads": _kmr.num_threads(),
        "cuda": {
            "compiled": False,
            "archs": [],
            "libcuda": ctypes.util.find_library("cuda"),
            "libnvrtc": find_nvrtc(),
        },
        "cache": {
            "dir": cache_dir,
            "size_bytes": cache_size,
            "entries": _cache_entries(cache_dir) if cache_dir else 0,
            "error": cache_error,
        },
        "torch": _package_version("torch"),
        "numpy": _package_version("numpy"),
    }


def _entries(n):
    return f"{n} {'entry' if n == 1 else 'entries'}"


def _human(n):
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def print_info(info, out):
    def row(k, v):
        print(f"  {k:<22}{v}", file=out)

    jit, simd, cuda, cache = info["jit"], info["simd"], info["cuda"], info["cache"]
    print(f"pykmr {info['version']} (Python {info['python']}, {info['platform']})", file=out)
    row("precompiled kernels", info["precompiled_kernels"])
    if jit["available"]:
        row("JIT compiler", f"{jit['compiler_command']}: {jit['compiler_identity']}")
    else:
        row("JIT compiler", f"unavailable: {jit['error']}")
    row("JIT include dir", jit["include_dir"] or "-")
    row(
        "SIMD (CPU offers)", f"{simd['cpu_level'] or 'unknown'} ({' '.join(simd['cpu_flags']) or 'no flags'})"
    )
    row("CPU threads", info["threads"])
    row("CUDA kernels", "compiled in" if cuda["compiled"] else "not compiled in (CPU only)")
    row("CUDA archs", ", ".join(cuda["archs"]) or "-")
    row("libcuda", cuda["libcuda"] or "not found")
    row("libnvrtc", cuda["libnvrtc"] or "not found (pip install nvidia-cuda-nvrtc)")
    if cache["dir"]:
        row("cache", f"{cache['dir']} ({_entries(cache['entries'])}, {_human(cache['size_bytes'] or 0)})")
    else:
        row("cache", f"unavailable: {cache['error']}")
    row("torch / numpy", f"{info['torch'] or 'not installed'} / {info['numpy'] or 'not installed'}")


def _cmd_info(args, out):
    info = collect_info()
    if args.json:
        print(json.dumps(info, indent=2), file=out)
    else:
        print_info(info, out)
    return 0


def _cmd_cache(args, out):
    from pykmr import _kmr

    path = _kmr.cache_dir()
    before, entries = _kmr.cache_size_bytes(), _cache_entries(path)
    if args.action == "clear":
        _kmr.clear_cache()
        print(f"cleared {_entries(entries)} ({_human(before)}) from {path}", file=out)
    else:
        print(f"{path}: {_entries(entries)}, {_human(before)}", file=out)
    return 0


def _cmd_demo(args, out):
    from pykmr import demo

    return demo.run(
        max_n=args.max_n,
        plot=not args.no_plot,
        output=args.output,
        b_dim=args.b_dim,
        max_seconds=args.max_seconds,
        dense_mem_gb=args.dense_mem_gb,
        out=out,
    )


def _positive_int(text):
    n = int(float(text))  # accepts 2e5
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return n


def build_parser():
    p = argparse.ArgumentParser(prog="python -m pykmr", description="pykmr: kernel map-reductions.")
    sub = p.add_subparsers(dest="command", metavar="{demo,info,cache}")
    sub.required = True

    d = sub.add_parser("demo", help="Gaussian convolution timings: pykmr vs a dense N x N reference")
    d.add_argument("--max-n", type=_positive_int, default=200_000, help="largest N (default 2e5)")
    d.add_argument("--no-plot", action="store_true", help="print the table only")
    d.add_argument("--output", default="pykmr-demo.png", help="plot file (default pykmr-demo.png)")
    d.add_argument("--b-dim", type=int, choices=(1, 3), default=1, help="dimension of b (default 1)")
    d.add_argument(
        "--max-seconds",
        type=float,
        default=10.0,
        help="skip a size that would take longer than this, per method (default 10)",
    )
    d.add_argument(
        "--dense-mem-gb",
        type=float,
        default=None,
        help="memory the dense reference may use (default: a quarter of the available memory)",
    )
    d.set_defaults(func=_cmd_demo)

    i = sub.add_parser("info", help="version, build options, SIMD, threads, CUDA, cache")
    i.add_argument("--json", action="store_true", help="machine-readable output")
    i.set_defaults(func=_cmd_info)

    c = sub.add_parser("cache", help="the JIT cache ($KMR_CACHE_DIR or ~/.cache/pykmr/<version>)")
    c.add_argument("action", choices=("info", "clear"))
    c.set_defaults(func=_cmd_cache)
    return p


def main(argv=None, out=None):
    """Entry point of `python -m pykmr`; returns the exit status."""
    args = build_parser().parse_args(argv)
    return args.func(args, out or sys.stdout)
