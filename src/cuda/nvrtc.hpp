// NVRTC, opened with dlopen at first use (DESIGN decision 8), and one
// compilation of a CUDA source to a cubin (or PTX).
#pragma once
#include <string>
#include <vector>

namespace kmr {
namespace cuda {

struct NvrtcApi {
  bool loaded = false;
  std::string path;                 // the library file that was opened
  std::string error;                // why it is not loaded (with what was tried)
  int major = 0, minor = 0;         // nvrtcVersion
  std::vector<int> archs;           // nvrtcGetSupportedArchs: 75, 80, 86, ..., ascending

  using Program = struct _nvrtcProgram*;
  const char* (*nvrtcGetErrorString)(int) = nullptr;
  int (*nvrtcVersion)(int*, int*) = nullptr;
  int (*nvrtcGetNumSupportedArchs)(int*) = nullptr;
  int (*nvrtcGetSupportedArchs)(int*) = nullptr;
  int (*nvrtcCreateProgram)(Program*, const char*, const char*, int, const char* const*, const char* const*) = nullptr;
  int (*nvrtcDestroyProgram)(Program*) = nullptr;
  int (*nvrtcCompileProgram)(Program, int, const char* const*) = nullptr;
  int (*nvrtcGetProgramLogSize)(Program, std::size_t*) = nullptr;
  int (*nvrtcGetProgramLog)(Program, char*) = nullptr;
  int (*nvrtcGetPTXSize)(Program, std::size_t*) = nullptr;
  int (*nvrtcGetPTX)(Program, char*) = nullptr;
  int (*nvrtcGetCUBINSize)(Program, std::size_t*) = nullptr;
  int (*nvrtcGetCUBIN)(Program, char*) = nullptr;
};

// A file tried first when NVRTC is opened (the Python package hands the
// nvidia-cuda-nvrtc wheel's library it found on sys.path). No effect once loaded.
void set_nvrtc_hint(const std::string& path);

// Opens libnvrtc once per process; never throws: check .loaded. Search order:
// the hint, $KMR_NVRTC (a file), the nvidia-cuda-nvrtc wheel next to the
// folder of libkmr (site-packages/nvidia/{cu13,cuda_nvrtc}/lib), the dynamic
// loader (libnvrtc.so.13, .so.12, .so), then CUDA toolkits ($CUDA_HOME,
// $CUDA_PATH, the nvcc in PATH, /usr/local/cuda).
const NvrtcApi& nvrtc_api();
// Loaded, or throws kmr::Error(Runtime) saying how to install NVRTC.
const NvrtcApi& nvrtc();

// What NVRTC will build for a GPU of compute capability `arch` (e.g. 90):
// "sm_90" (a cubin) when it supports it, else "compute_<newest it knows>"
// (PTX, compiled by the driver) for a newer GPU. Throws for an older GPU
// than NVRTC supports.
std::string nvrtc_target(int arch);

// The options every kernel is compiled with (part of the cache key), except
// the target and the include folder.
std::vector<std::string> nvrtc_options();

struct NvrtcResult {
  std::string image;  // cubin (ELF) or PTX text
  bool is_cubin = false;
  std::string log;
};
// Compiles `source` for `target` (nvrtc_target's form). On a compile error,
// throws kmr::Error(Runtime) with NVRTC's log, naming `source_path` (where
// the caller saved the source) and `what`.
NvrtcResult nvrtc_compile(const std::string& source, const std::string& target, const std::string& include_dir,
                          const std::string& source_path, const std::string& what);

}  // namespace cuda
}  // namespace kmr
