#include "driver_api.hpp"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>

#include "kmr/runtime/error.hpp"

#ifndef KMR_WITH_CUDA
#define KMR_WITH_CUDA 1
#endif

namespace kmr {
namespace cuda {

namespace {

std::string loaded_file(void* handle, const char* symbol) {
  Dl_info info;
  void* sym = ::dlsym(handle, symbol);
  if (sym && ::dladdr(sym, &info) != 0 && info.dli_fname) return info.dli_fname;
  return std::string();
}

template <class Fn>
bool bind(void* h, Fn& fn, const char* name, std::string* missing) {
  fn = reinterpret_cast<Fn>(::dlsym(h, name));
  if (!fn && missing) *missing += (missing->empty() ? "" : ", ") + std::string(name);
  return fn != nullptr;
}

DriverApi load() {
  DriverApi api;
  if (!KMR_WITH_CUDA) {
    api.error = "this libkmr was built with KMR_CUDA=OFF (no GPU support); rebuild it with KMR_CUDA=AUTO";
    return api;
  }
  std::string tried;
  void* h = nullptr;
  const char* env = std::getenv("KMR_LIBCUDA");
  std::string candidates[3] = {env && *env ? env : "", "libcuda.so.1", "libcuda.so"};
  for (const std::string& c : candidates) {
    if (c.empty()) continue;
    h = ::dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (h) break;
    const char* err = ::dlerror();
    tried += "\n    " + c + ": " + (err ? err : "not found");
  }
  if (!h) {
    api.error = "the CUDA driver library (libcuda.so.1, installed with the NVIDIA driver) could not be loaded:" + tried;
    return api;
  }
  std::string missing;
  bind(h, api.cuInit, "cuInit", &missing);
  bind(h, api.cuDriverGetVersion, "cuDriverGetVersion", &missing);
  bind(h, api.cuGetErrorName, "cuGetErrorName", &missing);
  bind(h, api.cuGetErrorString, "cuGetErrorString", &missing);
  bind(h, api.cuDeviceGetCount, "cuDeviceGetCount", &missing);
  bind(h, api.cuDeviceGet, "cuDeviceGet", &missing);
  bind(h, api.cuDeviceGetName, "cuDeviceGetName", &missing);
  bind(h, api.cuDeviceGetAttribute, "cuDeviceGetAttribute", &missing);
  bind(h, api.cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain", &missing);
  bind(h, api.cuCtxPushCurrent, "cuCtxPushCurrent_v2", &missing);
  bind(h, api.cuCtxPopCurrent, "cuCtxPopCurrent_v2", &missing);
  bind(h, api.cuModuleLoadData, "cuModuleLoadData", &missing);
  bind(h, api.cuModuleGetFunction, "cuModuleGetFunction", &missing);
  bind(h, api.cuFuncGetAttribute, "cuFuncGetAttribute", &missing);
  bind(h, api.cuOccupancyMaxActiveBlocksPerMultiprocessor, "cuOccupancyMaxActiveBlocksPerMultiprocessor", &missing);
  bind(h, api.cuLaunchKernel, "cuLaunchKernel", &missing);
  bind(h, api.cuMemAlloc, "cuMemAlloc_v2", &missing);
  bind(h, api.cuMemFree, "cuMemFree_v2", &missing);
  bind(h, api.cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2", &missing);
  bind(h, api.cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2", &missing);
  bind(h, api.cuStreamSynchronize, "cuStreamSynchronize", &missing);
  bind(h, api.cuPointerGetAttribute, "cuPointerGetAttribute", &missing);
  bind(h, api.cuMemAllocAsync, "cuMemAllocAsync", nullptr);  // optional
  bind(h, api.cuMemFreeAsync, "cuMemFreeAsync", nullptr);
  api.path = loaded_file(h, "cuInit");
  if (!missing.empty()) {
    api.error = "the CUDA driver " + api.path + " is too old: it lacks " + missing + "; update the NVIDIA driver";
    return api;  // the handle stays open: harmless
  }
  if (api.cuDriverGetVersion(&api.version) != CUDA_SUCCESS) api.version = 0;
  api.loaded = true;
  return api;
}

}  // namespace

const DriverApi& driver_api() {
  static const DriverApi* api = new DriverApi(load());  // never unloaded
  return *api;
}

std::string error_text(CUresult rc, const char* what) {
  const DriverApi& api = driver_api();
  const char* name = nullptr;
  const char* text = nullptr;
  if (api.cuGetErrorName) api.cuGetErrorName(rc, &name);
  if (api.cuGetErrorString) api.cuGetErrorString(rc, &text);
  std::string s = std::string(what) + " failed: " + (name ? name : "CUDA error " + std::to_string(rc));
  if (text) s += std::string(" (") + text + ")";
  return s;
}

void check(CUresult rc, const char* what) {
  if (rc == CUDA_SUCCESS) return;
  std::string msg = "pykmr: " + error_text(rc, what);
  if (rc == CUDA_ERROR_OUT_OF_MEMORY) msg = "pykmr: CUDA out of memory (" + error_text(rc, what) + ")";
  throw Error(ErrorKind::Runtime, msg);
}

const DriverApi& driver() {
  const DriverApi& api = driver_api();
  if (!api.loaded)
    throw Error(ErrorKind::Runtime, "pykmr: the GPU backend is not available: " + api.error +
                                        ". Run on the CPU instead (backend='CPU', or CPU tensors with backend='auto').");
  static std::once_flag once;
  static CUresult init_rc = CUDA_SUCCESS;
  std::call_once(once, [&] { init_rc = api.cuInit(0); });
  if (init_rc != CUDA_SUCCESS) {
    if (init_rc == CUDA_ERROR_NO_DEVICE)
      throw Error(ErrorKind::Runtime, "pykmr: the GPU backend is not available: the CUDA driver (" + api.path +
                                          ") sees no GPU (cuInit: CUDA_ERROR_NO_DEVICE). Run on the CPU instead "
                                          "(backend='CPU').");
    throw Error(ErrorKind::Runtime, "pykmr: the GPU backend is not available: " + error_text(init_rc, "cuInit") +
                                        ". Run on the CPU instead (backend='CPU').");
  }
  return api;
}

}  // namespace cuda
}  // namespace kmr
