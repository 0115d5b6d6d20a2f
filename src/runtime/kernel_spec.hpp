// A kernel to run: the evaluated formula, the reduction, the value and
// accumulator types, the summation scheme. Its registry key selects a
// precompiled kernel; the same spec generates the JIT's translation unit.
#pragma once
#include <string>

namespace kmr {

struct KernelSpec {
  std::string formula_key;  // canonical string of the evaluated formula
  std::string formula_cpp;  // its C++ type
  std::string reduction;    // C++ reduction template, e.g. "SumReduction"
  std::string dtype;        // "float" or "double"
  std::string acc;          // accumulator: "float" or "double"
  int scheme = 1;           // kmr::SumScheme: 0 direct, 1 block

  // formula|reduction|dtype|acc|scheme: the name both the registry and the JIT cache use.
  std::string registry_key() const;
};

// The definition of `extern "C" int <fn_name>(const kmr_kernel_call*)` running the spec.
std::string kernel_function(const KernelSpec& spec, const std::string& fn_name);
// A translation unit defining `extern "C" int <fn_name>(const kmr_kernel_call*)`.
std::string kernel_source(const KernelSpec& spec, const std::string& fn_name);

// CUDA: the two `extern "C" __global__` entry points <fn_name> (map-reduce) and
// <fn_name>_merge of include/kmr/exec/cuda_driver.cuh running the spec.
std::string cuda_kernel_function(const KernelSpec& spec, const std::string& fn_name);
// A CUDA translation unit (nvcc or NVRTC) defining them.
std::string cuda_kernel_source(const KernelSpec& spec, const std::string& fn_name);

}  // namespace kmr
