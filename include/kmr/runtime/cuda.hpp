// The CUDA backend, as the rest of libkmr and the bindings see it. Kernels run
// through kmr::Genred::run_cuda / run_cuda_host; this header says what is
// there. Nothing here needs a GPU, libcuda or NVRTC: what is missing is
// reported, never thrown.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace kmr {
namespace cuda {

struct DeviceInfo {
  int index = 0;
  std::string name;
  int arch = 0;  // compute capability, e.g. 90
  int multiprocessors = 0;
};

struct Info {
  bool built = false;                // false when libkmr was built with KMR_CUDA=OFF
  bool compiled = false;             // AOT kernels are embedded
  std::vector<std::string> archs;    // of the AOT kernels: "sm_80", "sm_90", "compute_90" (PTX)
  std::size_t aot_kernels = 0;       // kernel specs in the embedded fatbins
  std::size_t aot_images = 0;        // fatbins (one per manifest entry)
  bool driver_loaded = false;        // libcuda opened
  std::string driver_path;           // where libcuda was found
  int driver_version = 0;            // e.g. 13000
  std::string driver_error;          // why libcuda is unusable, or why cuInit failed
  std::vector<DeviceInfo> devices;   // empty without a driver or GPU
  bool nvrtc_loaded = false;
  std::string nvrtc_path;
  std::string nvrtc_version;         // "13.0"
  std::vector<int> nvrtc_archs;
  std::string nvrtc_error;
};

// What this process can use; opens libcuda and libnvrtc if not done yet.
Info info();

// True when a CUDA GPU can run kernels (driver loaded, cuInit succeeded, >= 1 device).
bool gpu_available();

// A libnvrtc file to try first when NVRTC is opened (the Python package
// passes the nvidia-cuda-nvrtc wheel it finds on sys.path).
void set_nvrtc_hint(const std::string& path);

// "sm_90" -> 90 ("90", "compute_90" and "sm_90a" are accepted too). Throws kmr::Error(Value).
int parse_arch(const std::string& arch);

}  // namespace cuda
}  // namespace kmr
