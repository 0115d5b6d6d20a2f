// Finding the compiled CUDA kernel of a spec: the embedded AOT fatbins first,
// else NVRTC with a disk cache (src/cuda/module_cache.cpp). Both end as a
// CUmodule loaded with cuModuleLoadData: one launch path (launch.cpp).
#pragma once
#include <string>

#include "driver_api.hpp"
#include "runtime/kernel_spec.hpp"

namespace kmr {
namespace cuda {

struct Kernel {
  CUfunction reduce = nullptr;  // map-reduce entry
  CUfunction merge = nullptr;   // merge of the split-j partials
  int max_threads = 0;          // threads per block the map-reduce can run with
  std::string origin;           // "precompiled" or the cached cubin/PTX path
};

// Pushes the primary context of `device` (the one torch uses) for the life of
// the object; throws for a bad device index.
class ContextGuard {
 public:
  explicit ContextGuard(int device);
  ~ContextGuard();
  ContextGuard(const ContextGuard&) = delete;
  ContextGuard& operator=(const ContextGuard&) = delete;
};

// Number of devices the driver sees (throws when there is no usable driver).
int device_count();
// Compute capability of `device` as 10 * major + minor.
int device_arch(int device);
int device_attribute(int device, int attribute);

// The kernel of `spec` on `device` (its primary context must be current).
// Cached per process; `what` names the formula in logs and errors.
const Kernel& kernel_for(const KernelSpec& spec, int device, const std::string& what);

// True when the embedded fatbins hold `spec`.
bool aot_has(const KernelSpec& spec);

// NVRTC: the cached cubin (or PTX) of `spec` for compute capability `arch`,
// compiled now if absent; needs no GPU. Returns the image's path.
std::string compile_for_arch(const KernelSpec& spec, int arch, const std::string& what);

// The CUDA translation unit of a spec (the same for nvcc and NVRTC).
std::string kernel_source_for(const KernelSpec& spec);
// The extern "C" name of the map-reduce in NVRTC modules.
constexpr const char* kJitKernelName = "kmr_cuda_kernel";

// ---- module_cache.cpp --------------------------------------------------------
struct CachedImage {
  std::string path;   // <cache>/<hash>.cubin or .ptx
  std::string image;  // its bytes
  bool from_disk = false;
};
// The NVRTC image of `source` (identified by `key_text`) for `target`
// ("sm_90" or "compute_90"): from the in-process map, the disk cache, or
// NVRTC. With `rebuild`, an existing entry is compiled again (it failed to load).
CachedImage nvrtc_cached(const std::string& source, const std::string& key_text, const std::string& target,
                         const std::string& what, bool rebuild);
// Test hook: forgets the in-process images, as if in a fresh process.
void reset_nvrtc_memory_for_testing();

}  // namespace cuda
}  // namespace kmr
