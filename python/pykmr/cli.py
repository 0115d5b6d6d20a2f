"""Command line: `python -m pykmr {demo, info, cache, compile}`.

demo [--max-n N] [--no-plot] [--output FILE]   the seed's experiment (pykmr.demo)
info [--json]                                  version, build, SIMD, threads, CUDA, cache
cache info | cache clear                       the JIT cache ($KMR_CACHE_DIR)
compile --backend cuda|cpu [--arch sm_90] [--reduction Sum] [--axis 1] [--dtype float32] FORMULA ALIAS...
                                               compiles a formula into the cache (no GPU needed); the last
                                               line printed is the cubin/PTX path (cuda) or the CPU module
"""

from __future__ import annotations

import argparse
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


def find_nvrtc():
    """libnvrtc as pip or a CUDA toolkit installed it (see pykmr._cuda)."""
    from pykmr import _cuda

    return _cuda.find_nvrtc()


def cuda_info():
    """The CUDA part of `info`: AOT kernels, libcuda and GPUs, NVRTC (found the way kernels will find it)."""
    from pykmr import _cuda, _kmr

    _cuda.prepare()
    c = _kmr.cuda_info()
    return {
        "built": c["built"],
        "compiled": c["compiled"],
        "archs": list(c["archs"]),
        "aot_kernels": c["aot_kernels"],
        "libcuda": c["driver_path"] or None,
        "driver_version": c["driver_version"] or None,
        "libcuda_error": c["driver_error"] or None,
        "devices": list(c["devices"]),
        "libnvrtc": c["nvrtc_path"] or None,
        "nvrtc_version": c["nvrtc_version"] or None,
        "nvrtc_error": c["nvrtc_error"] or None,
    }


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
            "kernels": _kmr.cpu_isa(),
            "note": "cpu_level/cpu_flags: what the CPU offers; kernels: what the precompiled kernels use "
            "(the JIT compiles for the host)",
        },
        "threads": _kmr.num_threads(),
        "cuda": cuda_info(),
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
    row("SIMD (kernels use)", simd["kernels"])
    row("CPU threads", info["threads"])
    if not cuda["built"]:
        row("CUDA", "not built (KMR_CUDA=OFF)")
    else:
        row("CUDA AOT kernels", f"{cuda['aot_kernels']} ({', '.join(cuda['archs'])})" if cuda["compiled"]
            else "none (NVRTC compiles every GPU kernel)")
        row("libcuda", f"{cuda['libcuda']} (driver {cuda['driver_version']})" if cuda["libcuda"]
            else f"not found: {_first_line(cuda['libcuda_error'])}")
        for d in cuda["devices"]:
            row(f"GPU {d['index']}", f"{d['name']} ({d['arch']}, {d['multiprocessors']} SMs)")
        row("libnvrtc", f"{cuda['libnvrtc']} ({cuda['nvrtc_version']})" if cuda["libnvrtc"]
            else "not found (pip install nvidia-cuda-nvrtc)")
    if cache["dir"]:
        row("cache", f"{cache['dir']} ({_entries(cache['entries'])}, {_human(cache['size_bytes'] or 0)})")
    else:
        row("cache", f"unavailable: {cache['error']}")
    row("torch / numpy", f"{info['torch'] or 'not installed'} / {info['numpy'] or 'not installed'}")


def _first_line(text):
    return (text or "").strip().splitlines()[0] if text else ""


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


def _cmd_compile(args, out):
    """Compiles one formula into the cache without running it (no GPU needed for --backend cuda)."""
    from pykmr import _cuda, _kmr

    g = _kmr.Genred(args.formula, list(args.aliases), args.reduction, args.axis, args.opt_arg or 0,
                    args.formula2 or "", "auto", "auto")
    if args.backend == "cpu":
        where = g.prepare(args.dtype)
        print(f"CPU kernel for {g.key} [{args.dtype}]: {where}", file=sys.stderr)
        print(where if where == "precompiled" else f"jit (cache {_kmr.cache_dir()})", file=out)
        return 0
    _cuda.prepare()
    if g.is_precompiled_cuda(args.dtype):
        print(f"note: libkmr embeds this kernel precompiled for {', '.join(_kmr.cuda_info()['archs'])}; "
              "compiling it with NVRTC anyway", file=sys.stderr)
    path = g.prepare_cuda(args.dtype, args.arch, True)
    print(f"CUDA kernel for {g.key} [{args.dtype}], {args.arch}:", file=sys.stderr)
    print(path, file=out)
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
    sub = p.add_subparsers(dest="command", metavar="{demo,info,cache,compile}")
    sub.required = True

    d = sub.add_parser("demo", help="Gaussian convolution timings: pykmr vs a dense N x N reference")
    d.add_argument("--max-n", type=_positive_int, default=200_000, help="largest N (default 2e5)")
    d.add_argument("--no-plot", action="store_true", help="print the table only")
    d.add_argument("--output", default="pykmr-demo.png", help="plot file (default pykmr-demo.png)")
    d.add_argument("--b-dim", type=int, choices=(1, 3), default=1, help="dimension of b (default 1)")
    d.add_argument(
        "--max-seconds",
        type=float,
        default=30.0,
        help="skip a size that would take longer than this, per method (default 30: N = 2e5 runs on 2 cores)",
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

    k = sub.add_parser("compile", help="compile a formula into the cache; prints the cubin/PTX path last",
                       description="Compiles FORMULA with ALIASes ('X = Vi(3)'...) into the kernel cache "
                       "without running it. --backend cuda needs NVRTC but no GPU and prints the cubin (or "
                       "PTX) path as its last line; --backend cpu pre-warms the host JIT.")
    k.add_argument("--backend", choices=("cuda", "cpu"), default="cuda")
    k.add_argument("--arch", default="sm_90", help="GPU arch for --backend cuda (default sm_90)")
    k.add_argument("--reduction", default="Sum", help="reduction (default Sum)")
    k.add_argument("--axis", type=int, choices=(0, 1), default=1,
                   help="1: reduce over j (default), 0: over i")
    k.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    k.add_argument("--opt-arg", type=int, default=None, help="K of KMin/ArgKMin/KMin_ArgKMin")
    k.add_argument("--formula2", default=None, help="weights of LogSumExp / SumSoftMaxWeight")
    k.add_argument("formula")
    k.add_argument("aliases", nargs="*", metavar="ALIAS")
    k.set_defaults(func=_cmd_compile)
    return p


def main(argv=None, out=None):
    """Entry point of `python -m pykmr`; returns the exit status."""
    args = build_parser().parse_args(argv)
    return args.func(args, out or sys.stdout)
