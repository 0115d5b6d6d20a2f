#!/usr/bin/env bash
# Runs every test against what users install (DESIGN decision 16):
#   1. builds the wheel once (full manifest) with the C++ suites in the same build tree, repairs it with
#      auditwheel, prints its tag and size and checks the size budget;
#   2. installs it into a fresh virtual environment without build tools (its packages are installed while
#      the wheel builds) and runs the whole pytest suite and the downstream CMake project
#      (find_package(kmr)) there;
#   3. the C++ suites (ctest) of the wheel's build tree, against the full libkmr, then under ASan+UBSan;
#   4. the documentation site (Sphinx, warnings as errors) into docs/_build.
# The wheel is built with a compiler path that is deleted before the tests (as a manylinux image's
# /opt/rh/gcc-toolset-* is absent on users' machines): the JIT must find the compiler at run time.
#
# Environment (trial runs): KMR_PRECOMPILED (wheel manifest regex, default all), KMR_CUDA (AUTO),
# KMR_JOBS (build jobs, default nproc), KMR_WHEEL_BUDGET_MB, KMR_DOCS=0 (skip the docs: trial runs only),
# KMR_DOCS_EXAMPLES (run the gallery's examples with --small: 1, default; 0: render without running).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
JOBS=${KMR_JOBS:-$(nproc)}
PY=${PYTHON:-python3}
PRECOMPILED=${KMR_PRECOMPILED:-.*}
# The full wheel: 27 manifest families x dims x float/double x 3 CPU ISAs, plus compressed sm_80/sm_90
# fatbins (float32): about 6 MiB estimated from the per-entry sizes (README "Wheels"); 20 MiB leaves room.
BUDGET_MB=${KMR_WHEEL_BUDGET_MB:-20}
# The C++ suites are built with the wheel (KMR_BUILD_TESTS=ON in its build tree; no test is installed):
# they run against the libkmr the wheel ships (test_registry.cpp checks template keys = runtime keys for
# all of its entries) and the 16-minute library build is not done twice.
T0=$(date +%s)
stamp() { echo "[ci +$(( $(date +%s) - T0 ))s] $*"; }

VENV=$ROOT/build/venv-wheel
# The test environment's packages (test, client and documentation packages: requirements-dev.txt without
# the build tools) download and install while the wheel builds (about 2 minutes of mostly waiting).
make_venv() {
  rm -rf "$VENV"
  $PY -m venv "$VENV"
  grep -v '^-r requirements-build.txt' requirements-dev.txt > build/requirements-test.txt
  "$VENV/bin/python" -m pip install -q -r build/requirements-test.txt
}
mkdir -p build
make_venv > build/venv.log 2>&1 &
VENV_PID=$!

if [ "${KMR_CI_REUSE_WHEEL:-0}" = 1 ] && ls build/wheelhouse/pykmr-*.whl > /dev/null 2>&1; then
  # Trial runs only: the tests of a wheel this script built before (stage 1 skipped).
  stamp "== 1. wheel: reusing $(ls build/wheelhouse/pykmr-*.whl) (KMR_CI_REUSE_WHEEL=1) =="
  WHEEL=$(ls build/wheelhouse/pykmr-*.whl)
else
stamp "== 1. wheel (KMR_PRECOMPILED='$PRECOMPILED', KMR_CUDA=${KMR_CUDA:-AUTO}, with the C++ suites) =="
GONE=/tmp/kmr-ci-gone-toolset  # stands for /opt/rh/gcc-toolset-N: the compiler path baked into libkmr
rm -rf "$GONE" build/dist build/wheelhouse
mkdir -p "$GONE/bin"
ln -s "$(command -v "${CXX:-c++}")" "$GONE/bin/c++"
# (CMAKE_CXX_COMPILER explicitly: CXX alone would not change the compiler of an existing build folder; a
# folder configured with another compiler is removed, as CMake would reset it and drop pip's options.)
if [ -f build/wheel/CMakeCache.txt ] && ! grep -q "^CMAKE_CXX_COMPILER:.*=$GONE/bin/c++\$" build/wheel/CMakeCache.txt; then
  rm -rf build/wheel
fi
KMR_PRECOMPILED="$PRECOMPILED" CMAKE_BUILD_PARALLEL_LEVEL=$JOBS $PY -m pip wheel --no-build-isolation --no-deps -q \
  -w build/dist . -C build-dir=build/wheel -C cmake.define.CMAKE_CXX_COMPILER="$GONE/bin/c++" \
  -C cmake.define.KMR_BUILD_TESTS=ON
rm -rf "$GONE"
stamp "wheel built"
$PY -m auditwheel repair -w build/wheelhouse build/dist/pykmr-*.whl 2>&1 | tail -2
WHEEL=$(ls build/wheelhouse/pykmr-*.whl)
SIZE=$(stat -c %s "$WHEEL")
echo "wheel: $(basename "$WHEEL")"
echo "wheel tag: $(basename "$WHEEL" .whl | cut -d- -f3-)"
echo "wheel size: $(( SIZE / 1024 )) KiB (budget ${BUDGET_MB} MiB)"
$PY -m auditwheel show "$WHEEL" > build/auditwheel-show.txt
head -4 build/auditwheel-show.txt
if [ "$SIZE" -gt $(( BUDGET_MB * 1024 * 1024 )) ]; then
  echo "the wheel is over its size budget of ${BUDGET_MB} MiB" >&2
  exit 1
fi
fi

stamp "== 2. fresh environment: the wheel, no build tools =="
if ! wait "$VENV_PID"; then
  cat build/venv.log >&2
  echo "the test environment could not be made (build/venv.log above)" >&2
  exit 1
fi
cat build/venv.log
VPY=$VENV/bin/python
$VPY -m pip install -q --no-deps "$WHEEL"
# (pybind11 may be there: pykeops, a comparison and client-test package, needs it at run time; the build
# backend and CMake must not be.)
if $VPY -c "import scikit_build_core" 2>/dev/null || $VPY -m cmake --version > /dev/null 2>&1; then
  echo "the test environment has build tools: it would not test what users install" >&2
  exit 1
fi
(cd /tmp && $VPY -c "import pykmr, sys; print('pykmr', pykmr.__version__, 'from', pykmr.__file__)")
stamp "environment ready"

export KMR_CACHE_DIR=$ROOT/build/test-cache
rm -rf "$KMR_CACHE_DIR"
# One JIT cache for the whole run: both pytest workers and the docs' gallery (which runs the examples the
# tests ran) load what another compiled instead of compiling it again (the cache is multi-process safe).
export KMR_TEST_CACHE_DIR=$KMR_CACHE_DIR
echo "== CUDA backend of the wheel (GPU tests skip without a GPU: see the reasons below) =="
(cd /tmp && $VPY -m pykmr info | grep -E "CUDA|libcuda|libnvrtc|GPU|compiler" || true)

stamp "== pytest (against the wheel) =="
# KMR_TEST_WHEEL=1: test_wheel.py insists on an installed package whose build compiler is gone.
# Two pytest workers (pytest-xdist), one test file each at a time (module fixtures such as the Dask cluster stay
# in one process): JIT compiles are single-threaded, so this halves the suite's time on 2 cores.
KMR_TEST_WHEEL=1 KMR_TEST_SOURCE_ROOT=$ROOT $VPY -m pytest tests/python -q -p no:cacheprovider -p no:benchmark \
  -n "${KMR_TEST_WORKERS:-$JOBS}" --dist loadfile --durations=25
# (pytest's exit status 5, "no tests collected", fails the run: set -e.)

stamp "== downstream find_package(kmr) against the wheel =="
prefix=$(cd /tmp && $VPY -c "import pykmr; print(pykmr.cmake_prefix_path())")
rm -rf build/downstream
cmake -S tests/downstream -B build/downstream -G Ninja -DCMAKE_PREFIX_PATH="$prefix" > /dev/null
cmake --build build/downstream
./build/downstream/kmr_downstream

stamp "== 3. C++ suites (built with the wheel, KMR_PRECOMPILED='$PRECOMPILED') =="
if [ ! -f build/wheel/CTestTestfile.cmake ]; then
  echo "build/wheel has no C++ suites (a wheel built without KMR_BUILD_TESTS=ON): remove build/wheelhouse" >&2
  exit 1
fi
ctest --test-dir build/wheel --output-on-failure -j "$JOBS"

stamp "== ctest under ASan+UBSan (and the CUDA-less build: KMR_CUDA=OFF) =="
cmake -S . -B build/asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DKMR_SANITIZE=ON -DKMR_BUILD_TESTS=ON -DKMR_CUDA=OFF \
  -DKMR_PRECOMPILED='^(gauss|gauss_gx|sqdist_argkmin|lse)$' -DKMR_PRECOMPILED_DTYPES=double > /dev/null
cmake --build build/asan -j "$JOBS"
ASAN_OPTIONS=detect_leaks=0 ctest --test-dir build/asan --output-on-failure -j "$JOBS" -E 'Registry'

if [ "${KMR_DOCS:-1}" != 0 ]; then
  stamp "== 4. documentation (Sphinx, warnings as errors, against the wheel) =="
  rm -rf docs/_build
  (cd /tmp && KMR_DOCS_EXAMPLES=${KMR_DOCS_EXAMPLES:-1} $VPY -m sphinx -W --keep-going -q -b html \
    "$ROOT/docs" "$ROOT/docs/_build/html")
  echo "docs: $(find docs/_build/html -name '*.html' | wc -l) HTML pages in docs/_build/html"
fi

stamp "all tests passed"
