"""First-call latency: precompiled kernels (no compile) and a JIT-compiled formula,
pykmr vs pykeops (when importable), each with an empty cache, side by side in one run.

    python benchmarks/bench_compile.py
"""

import os
import subprocess
import sys
import tempfile

CHILD = r"""
import os, sys, time
import torch
which, formula, aliases = sys.argv[1], sys.argv[2], sys.argv[3].split(";")
t0 = time.perf_counter()
if which == "pykmr":
    from pykmr.torch import Genred
else:
    import pykeops
    pykeops.set_verbose(False)
    pykeops.set_build_folder(os.environ["BENCH_CACHE"])
    from pykeops.torch import Genred
t_import = time.perf_counter() - t0
torch.manual_seed(0)
x, y = torch.randn(1000, 3), torch.randn(2000, 3)
b = torch.randn(2000, 1)
args = {"Pm": torch.tensor([0.5])}
ins = []
for a in aliases:
    name, spec = [s.strip() for s in a.split("=")]
    if spec.startswith("Pm"):
        ins.append(torch.tensor([0.5]))
    elif spec.startswith("Vi"):
        ins.append(x)
    elif spec.endswith("(1)"):
        ins.append(b)
    else:
        ins.append(y)
t0 = time.perf_counter()
routine = Genred(formula, aliases, reduction_op="Sum", axis=1)
out = routine(*ins, backend="CPU")
t_first = time.perf_counter() - t0
t0 = time.perf_counter()
routine(*ins, backend="CPU")
t_second = time.perf_counter() - t0
print(f"{t_import:.3f} {t_first:.3f} {t_second:.5f}")
"""

CASES = [
    ("Gaussian (precompiled in pykmr)", "Exp(-G*SqDist(X,Y))*B", "G = Pm(1);X = Vi(3);Y = Vj(3);B = Vj(1)"),
    ("generic formula (JIT in both)", "Sin((X|Y))*Exp(-SqNorm2(X-Y))*B", "X = Vi(3);Y = Vj(3);B = Vj(1)"),
]


def run(which, formula, aliases):
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, KMR_CACHE_DIR=cache, BENCH_CACHE=cache, KMR_QUIET="1")
        p = subprocess.run([sys.executable, "-c", CHILD, which, formula, aliases], env=env,
                           capture_output=True, text=True)
        if p.returncode != 0:
            return None, p.stderr.strip().splitlines()[-1] if p.stderr else "failed"
        return [float(v) for v in p.stdout.split()[-3:]], ""


def main():
    try:
        import pykeops  # noqa: F401

        libs = ["pykmr", "pykeops"]
    except ImportError:
        libs = ["pykmr"]
        print("pykeops not importable: pykmr only")
    print(f"{'case':34s} {'library':8s} {'import s':>9s} {'first call s':>13s} {'second call s':>14s}")
    for label, formula, aliases in CASES:
        for lib in libs:
            res, err = run(lib, formula, aliases)
            if res is None:
                print(f"{label:34s} {lib:8s} failed: {err}")
            else:
                print(f"{label:34s} {lib:8s} {res[0]:9.3f} {res[1]:13.3f} {res[2]:14.5f}")


if __name__ == "__main__":
    main()
