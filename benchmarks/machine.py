"""What the benchmarks share: the machine (CPU name, highest clock, float32 lanes of its widest vectors),
the thread setup of every library, and the optional pykeops import."""

from __future__ import annotations


def cpu_info():
    flags, mhz, name = "", 0.0, "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags") and not flags:
                    flags = line
                elif line.startswith("cpu MHz") and not mhz:
                    mhz = float(line.split(":")[1])
                elif line.startswith("model name") and name == "?":
                    name = line.split(":")[1].strip()
    except OSError:
        pass
    try:  # the highest clock, when the OS knows it
        with open("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq") as f:
            mhz = max(mhz, int(f.read()) / 1000)
    except (OSError, ValueError):
        pass
    lanes = 16 if " avx512f" in flags else 8 if " avx2" in flags else 4
    return name, mhz or 2000.0, lanes


CPU_NAME, CPU_MHZ, LANES = cpu_info()
PORTS = 2  # vector operations per cycle (two FMA-capable vector ports)


def set_threads(n):
    """n threads for torch, pykmr and the OpenMP/MKL pools (faiss, pykeops): call before importing them."""
    import os

    for var in ("OMP_NUM_THREADS", "KMR_NUM_THREADS", "MKL_NUM_THREADS"):  # read when their pools start
        os.environ[var] = str(n)
    import pykmr
    import torch

    torch.set_num_threads(n)
    pykmr.set_num_threads(n)


def import_pykeops():
    """(pykeops, pykeops.torch), or (None, None) with the reason printed: its column then stays empty."""
    try:
        import pykeops
        import pykeops.torch as keops_torch

        pykeops.set_verbose(False)
        return pykeops, keops_torch
    except Exception as e:  # noqa: BLE001 - any import failure only disables the column
        print(f"pykeops not available ({type(e).__name__}: {e}); its column stays empty")
        return None, None
