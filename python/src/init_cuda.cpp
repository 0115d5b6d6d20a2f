#include <pybind11/stl.h>

#include "bindings.hpp"
#include "kmr/runtime/cuda.hpp"

namespace py = pybind11;

namespace kmr::python {

namespace {

py::dict info_dict() {
  const kmr::cuda::Info in = kmr::cuda::info();
  py::dict d;
  d["built"] = in.built;
  d["compiled"] = in.compiled;
  d["archs"] = in.archs;
  d["aot_kernels"] = in.aot_kernels;
  d["aot_images"] = in.aot_images;
  d["driver_loaded"] = in.driver_loaded;
  d["driver_path"] = in.driver_path;
  d["driver_version"] = in.driver_version;
  d["driver_error"] = in.driver_error;
  py::list devices;
  for (const auto& dev : in.devices) {
    py::dict e;
    e["index"] = dev.index;
    e["name"] = dev.name;
    e["arch"] = "sm_" + std::to_string(dev.arch);
    e["multiprocessors"] = dev.multiprocessors;
    devices.append(e);
  }
  d["devices"] = devices;
  d["nvrtc_loaded"] = in.nvrtc_loaded;
  d["nvrtc_path"] = in.nvrtc_path;
  d["nvrtc_version"] = in.nvrtc_version;
  d["nvrtc_archs"] = in.nvrtc_archs;
  d["nvrtc_error"] = in.nvrtc_error;
  return d;
}

}  // namespace

void init_cuda(py::module_& m) {
  m.def("cuda_info", &info_dict, "The CUDA backend: AOT kernels, libcuda, GPUs, NVRTC (opens them; never raises).");
  m.def("cuda_gpu_available", &kmr::cuda::gpu_available, "True when a CUDA GPU can run kernels.");
  m.def("cuda_set_nvrtc_hint", &kmr::cuda::set_nvrtc_hint, py::arg("path"),
        "A libnvrtc file to try first when NVRTC is first opened.");
}

}  // namespace kmr::python
