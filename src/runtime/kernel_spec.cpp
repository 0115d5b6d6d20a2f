#include "kernel_spec.hpp"

namespace kmr {

std::string KernelSpec::registry_key() const {
  return formula_key + "|" + reduction + "|" + dtype + "|" + acc + "|" + std::to_string(scheme);
}

std::string kernel_function(const KernelSpec& spec, const std::string& fn_name) {
  std::string s;
  s += "// " + spec.registry_key() + "\n";
  s += "extern \"C\" int " + fn_name + "(const kmr_kernel_call* call) {\n";
  s += "  using F = " + spec.formula_cpp + ";\n";
  s += "  using R = kmr::" + spec.reduction + "<" + spec.acc + ", F::DIM>;\n";
  s += "  return kmr::run_cpu<F, R, " + spec.dtype + ", " + std::to_string(spec.scheme) + ">(call);\n}\n";
  return s;
}

std::string kernel_source(const KernelSpec& spec, const std::string& fn_name) {
  return "#include \"kmr/exec/cpu_kernel.hpp\"\n\n" + kernel_function(spec, fn_name);
}

std::string cuda_kernel_function(const KernelSpec& spec, const std::string& fn_name) {
  const std::string types = "  using F = " + spec.formula_cpp + ";\n  using R = kmr::" + spec.reduction + "<" +
                            spec.acc + ", F::DIM>;\n";
  std::string s;
  s += "// " + spec.registry_key() + "\n";
  s += "extern \"C\" __global__ void __launch_bounds__(KMR_CUDA_MAX_BLOCK) " + fn_name +
       "(const kmr_cuda_params prm) {\n" + types;
  s += "  kmr::cuda_detail::map_reduce<F, R, " + spec.dtype + ", " + std::to_string(spec.scheme) + ">(prm);\n}\n";
  s += "extern \"C\" __global__ void __launch_bounds__(KMR_CUDA_MAX_BLOCK) " + fn_name +
       "_merge(const kmr_cuda_params prm) {\n" + types;
  s += "  kmr::cuda_detail::merge_rows<F, R, " + spec.dtype + ">(prm);\n}\n";
  return s;
}

std::string cuda_kernel_source(const KernelSpec& spec, const std::string& fn_name) {
  return "#include \"kmr/exec/cuda_driver.cuh\"\n\n" + cuda_kernel_function(spec, fn_name);
}

}  // namespace kmr
