#!/usr/bin/env bash
# The GPU check: on a machine with a CUDA GPU, torch, nvcc, cmake, ninja, pybind11 and
# scikit-build-core but no network, builds pykmr with AOT kernels for sm_90 only, runs the
# GPU tests and the GPU benchmark, and writes everything under OUTDIR. Meant to fit in
# one 10-minute call.
#
#   bash scripts/gpu_check.sh OUTDIR
#
# Environment: KMR_GPU_CHECK_ARCHS (default 90), KMR_GPU_CHECK_PRECOMPILED (manifest
# filter, default all), KMR_GPU_CHECK_SIZES (benchmark, default 1e4,1e5,1e6),
# KMR_GPU_CHECK_JOBS (build jobs, default nproc).
# Output: gpu_check.log (all), nvidia-smi.txt, info.json, pytest.txt, junit.xml,
# bench_gpu.csv/.md, summary.txt. Exit status: 0 when the build and the tests pass.
set -uo pipefail
OUT=${1:?usage: scripts/gpu_check.sh OUTDIR}
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
exec > >(tee "$OUT/gpu_check.log") 2>&1
PY=${PYTHON:-python3}
ARCHS=${KMR_GPU_CHECK_ARCHS:-90}
JOBS=${KMR_GPU_CHECK_JOBS:-$(nproc)}
PREFIX=${KMR_GPU_CHECK_PREFIX:-/tmp/pykmr-gpu-check}
start=$(date +%s)
stamp() { echo "[gpu_check +$(( $(date +%s) - start ))s] $*"; }

stamp "machine"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || echo "nvidia-smi failed" > "$OUT/nvidia-smi.txt"
head -15 "$OUT/nvidia-smi.txt"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
command -v nvcc || ls /usr/local/cuda/bin/nvcc

stamp "build (KMR_CUDA=ON, archs $ARCHS, $JOBS jobs)"
rm -rf "$PREFIX"
export CMAKE_BUILD_PARALLEL_LEVEL=$JOBS
if ! $PY -m pip install --no-build-isolation --no-deps --no-index -q --target "$PREFIX" . \
    -C build-dir=build/gpu-check -C cmake.define.KMR_CUDA=ON -C cmake.define.KMR_CUDA_ARCHS="$ARCHS" \
    -C cmake.define.KMR_PRECOMPILED="${KMR_GPU_CHECK_PRECOMPILED:-.*}"; then
  stamp "BUILD FAILED"
  echo "build failed" > "$OUT/summary.txt"
  exit 1
fi
stamp "build done"
export PYTHONPATH="$PREFIX${PYTHONPATH:+:$PYTHONPATH}"
export KMR_CACHE_DIR="$OUT/.kmr-cache"
mkdir -p "$KMR_CACHE_DIR" && chmod 700 "$KMR_CACHE_DIR"
$PY -m pykmr info --json > "$OUT/info.json"
$PY -m pykmr info

stamp "GPU tests (a missing GPU fails them: KMR_TEST_REQUIRE_GPU=1)"
KMR_TEST_REQUIRE_GPU=1 PYTHONUNBUFFERED=1 timeout 300 $PY -m pytest tests/python/test_cuda.py -q -rs \
  -p no:cacheprovider --junitxml="$OUT/junit.xml" 2>&1 | tee "$OUT/pytest.txt"
tests_rc=${PIPESTATUS[0]}
stamp "GPU tests exit status $tests_rc"

stamp "GPU benchmark"
PYTHONUNBUFFERED=1 timeout 240 $PY benchmarks/bench_gpu.py --out "$OUT" --sizes "${KMR_GPU_CHECK_SIZES:-1e4,1e5,1e6}"
bench_rc=$?
stamp "benchmark exit status $bench_rc"

{
  echo "gpu_check: tests exit $tests_rc, benchmark exit $bench_rc, $(( $(date +%s) - start )) s"
  tail -3 "$OUT/pytest.txt"
  cat "$OUT/bench_gpu.md" 2>/dev/null
} > "$OUT/summary.txt"
rm -rf "$KMR_CACHE_DIR"
cat "$OUT/summary.txt"
exit "$tests_rc"
