"""The benchmarks' machine description: CPU name, highest clock, float32 lanes of its widest vectors."""

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
