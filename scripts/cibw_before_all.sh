#!/usr/bin/env bash
# cibuildwheel's before-all in the manylinux_2_28 image: git (CMake fetches the pinned xsimd) and, on
# x86_64, nvcc and the CUDA headers for the precompiled GPU kernels (libkmr links nothing of CUDA: the
# driver and NVRTC are opened at run time).
set -euxo pipefail
dnf install -y git
if [ "$(uname -m)" = x86_64 ]; then
  dnf install -y dnf-plugins-core
  dnf config-manager --add-repo https://developer.download.nvidia.com/compute/cuda/repos/rhel8/x86_64/cuda-rhel8.repo
  dnf install -y cuda-nvcc-13-0 cuda-cudart-devel-13-0
  ln -sfn /usr/local/cuda-13.0 /usr/local/cuda
  /usr/local/cuda/bin/nvcc --version
fi
