#include "kernels.hpp"

#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "aot.hpp"
#include "jit/jit_internal.hpp"
#include "kmr/exec/cuda_abi.h"
#include "kmr/runtime/cuda.hpp"
#include "kmr/runtime/error.hpp"
#include "nvrtc.hpp"

#ifndef KMR_WITH_CUDA
#define KMR_WITH_CUDA 1
#endif

namespace kmr {
namespace cuda {

namespace {

[[noreturn]] void fail(const std::string& msg) { throw Error(ErrorKind::Runtime, msg); }

// ---- devices and their primary contexts ----------------------------------------
struct Devices {
  std::mutex mu;
  std::map<int, CUcontext> primary;  // retained once, kept for the process life
};
Devices& devices() {
  static auto* d = new Devices();
  return *d;
}

CUcontext primary_context(int device) {
  const DriverApi& api = driver();
  Devices& d = devices();
  std::lock_guard<std::mutex> lock(d.mu);
  auto it = d.primary.find(device);
  if (it != d.primary.end()) return it->second;
  const int n = device_count();
  if (device < 0 || device >= n)
    throw Error(ErrorKind::Value, "pykmr: no CUDA device " + std::to_string(device) + " (this machine has " +
                                      std::to_string(n) + ")");
  CUdevice dev = 0;
  check(api.cuDeviceGet(&dev, device), "cuDeviceGet");
  CUcontext ctx = nullptr;
  check(api.cuDevicePrimaryCtxRetain(&ctx, dev), "cuDevicePrimaryCtxRetain");
  d.primary[device] = ctx;
  return ctx;
}

// ---- the embedded fatbins ---------------------------------------------------------
struct AotRef {
  const AotImage* image;
  const char* name;
};
const std::unordered_map<std::string, AotRef>& aot_map() {
  static const auto* m = [] {
    auto* out = new std::unordered_map<std::string, AotRef>();
    std::size_t n = 0;
    const AotImage* const* images = aot_images(&n);
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t k = 0; k < images[i]->size; ++k)
        out->emplace(images[i]->kernels[k].key, AotRef{images[i], images[i]->kernels[k].name});
    return out;
  }();
  return *m;
}

std::string cuda_key_text(const KernelSpec& spec) {
  return "cuda|abi" + std::to_string(KMR_CUDA_ABI_VERSION) + "|" + spec.registry_key();
}

// ---- modules and kernels, per device ------------------------------------------------
struct State {
  std::mutex mu;
  std::map<std::pair<int, const void*>, CUmodule> aot_modules;  // (device, AotImage*)
  std::map<std::pair<int, const AotImage*>, CUresult> aot_failures;
  std::map<std::pair<int, std::string>, std::unique_ptr<Kernel>> kernels;  // (device, registry key)
};
State& state() {
  static auto* s = new State();
  return *s;
}

bool get_functions(CUmodule mod, const std::string& name, Kernel* k) {
  const DriverApi& api = driver();
  if (api.cuModuleGetFunction(&k->reduce, mod, name.c_str()) != CUDA_SUCCESS) return false;
  if (api.cuModuleGetFunction(&k->merge, mod, (name + "_merge").c_str()) != CUDA_SUCCESS) return false;
  int t = 0;
  check(api.cuFuncGetAttribute(&t, CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, k->reduce), "cuFuncGetAttribute");
  k->max_threads = t;
  return true;
}

// The AOT kernel, or false when the fatbins lack it or hold no code for this GPU.
bool try_aot(const KernelSpec& spec, int device, Kernel* k) {
  const auto& m = aot_map();
  auto it = m.find(spec.registry_key());
  if (it == m.end()) return false;
  const AotImage* img = it->second.image;
  State& s = state();
  CUmodule mod = nullptr;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    if (s.aot_failures.count({device, img})) return false;
    auto mi = s.aot_modules.find({device, img});
    if (mi != s.aot_modules.end()) mod = mi->second;
  }
  if (!mod) {
    const CUresult rc = driver().cuModuleLoadData(&mod, img->begin);
    if (rc == CUDA_ERROR_OUT_OF_MEMORY) check(rc, "cuModuleLoadData");
    std::lock_guard<std::mutex> lock(s.mu);
    if (rc != CUDA_SUCCESS) {  // e.g. CUDA_ERROR_NO_BINARY_FOR_GPU: NVRTC builds it for this GPU
      s.aot_failures[{device, img}] = rc;
      jit::detail::log_line("the precompiled CUDA kernels '" + std::string(img->entry) + "' do not load on GPU " +
                            std::to_string(device) + " (" + error_text(rc, "cuModuleLoadData") +
                            "); compiling with NVRTC instead",
                            jit::LogLevel::Warning);
      return false;
    }
    auto ins = s.aot_modules.emplace(std::make_pair(device, static_cast<const void*>(img)), mod);
    if (!ins.second) mod = ins.first->second;  // another thread loaded it first (one module leaks: harmless)
  }
  if (!get_functions(mod, it->second.name, k))
    fail(std::string("pykmr: the precompiled CUDA module '") + img->entry + "' lacks the kernel " + it->second.name);
  k->origin = "precompiled";
  return true;
}

void jit_kernel(const KernelSpec& spec, int device, const std::string& what, Kernel* k) {
  const std::string target = nvrtc_target(device_arch(device));
  const std::string src = kernel_source_for(spec);
  const std::string key = cuda_key_text(spec);
  CachedImage img = nvrtc_cached(src, key, target, what, false);
  CUmodule mod = nullptr;
  CUresult rc = driver().cuModuleLoadData(&mod, img.image.c_str());
  if (rc != CUDA_SUCCESS && rc != CUDA_ERROR_OUT_OF_MEMORY && img.from_disk) {
    jit::detail::log_line("cache entry " + img.path + " does not load (" + error_text(rc, "cuModuleLoadData") +
                          "); recompiling it",
                          jit::LogLevel::Warning);
    img = nvrtc_cached(src, key, target, what, true);
    rc = driver().cuModuleLoadData(&mod, img.image.c_str());
  }
  if (rc != CUDA_SUCCESS)
    fail("pykmr: the CUDA kernel compiled for " + what + " (" + img.path + ") does not load on GPU " +
         std::to_string(device) + ": " + error_text(rc, "cuModuleLoadData"));
  if (!get_functions(mod, kJitKernelName, k)) fail("pykmr: the module " + img.path + " lacks its kernels");
  k->origin = img.path;
}

}  // namespace

ContextGuard::ContextGuard(int device) {
  CUcontext ctx = primary_context(device);
  check(driver().cuCtxPushCurrent(ctx), "cuCtxPushCurrent");
}
ContextGuard::~ContextGuard() {
  CUcontext popped = nullptr;
  driver().cuCtxPopCurrent(&popped);
}

int device_count() {
  const DriverApi& api = driver();
  int n = 0;
  check(api.cuDeviceGetCount(&n), "cuDeviceGetCount");
  return n;
}

int device_attribute(int device, int attribute) {
  const DriverApi& api = driver();
  CUdevice dev = 0;
  check(api.cuDeviceGet(&dev, device), "cuDeviceGet");
  int v = 0;
  check(api.cuDeviceGetAttribute(&v, attribute, dev), "cuDeviceGetAttribute");
  return v;
}

int device_arch(int device) {
  return 10 * device_attribute(device, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR) +
         device_attribute(device, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
}

std::string kernel_source_for(const KernelSpec& spec) { return cuda_kernel_source(spec, kJitKernelName); }

bool aot_has(const KernelSpec& spec) { return aot_map().count(spec.registry_key()) != 0; }

const Kernel& kernel_for(const KernelSpec& spec, int device, const std::string& what) {
  State& s = state();
  const std::pair<int, std::string> id{device, spec.registry_key()};
  {
    std::lock_guard<std::mutex> lock(s.mu);
    auto it = s.kernels.find(id);
    if (it != s.kernels.end()) return *it->second;
  }
  auto k = std::make_unique<Kernel>();
  if (!try_aot(spec, device, k.get())) jit_kernel(spec, device, what, k.get());
  std::lock_guard<std::mutex> lock(s.mu);
  auto ins = s.kernels.emplace(id, std::move(k));
  return *ins.first->second;
}

std::string compile_for_arch(const KernelSpec& spec, int arch, const std::string& what) {
  const std::string target = nvrtc_target(arch);
  return nvrtc_cached(kernel_source_for(spec), cuda_key_text(spec), target, what, false).path;
}

// ---- public API (kmr/runtime/cuda.hpp) -------------------------------------------
Info info() {
  Info in;
  in.built = KMR_WITH_CUDA != 0;
  std::size_t n = 0;
  const AotImage* const* images = aot_images(&n);
  in.aot_images = n;
  for (std::size_t i = 0; i < n; ++i) in.aot_kernels += images[i]->size;
  in.compiled = in.aot_kernels > 0;
  const std::string archs = aot_archs();
  for (std::size_t b = 0; b < archs.size();) {
    std::size_t e = archs.find(';', b);
    if (e == std::string::npos) e = archs.size();
    if (e > b) in.archs.push_back(archs.substr(b, e - b));
    b = e + 1;
  }
  const DriverApi& api = driver_api();
  in.driver_loaded = api.loaded;
  in.driver_path = api.path;
  in.driver_version = api.version;
  in.driver_error = api.error;
  if (api.loaded) {
    try {
      const int count = device_count();
      for (int d = 0; d < count; ++d) {
        DeviceInfo di;
        di.index = d;
        CUdevice dev = 0;
        char name[256] = {0};
        if (api.cuDeviceGet(&dev, d) == CUDA_SUCCESS) api.cuDeviceGetName(name, sizeof name - 1, dev);
        di.name = name;
        di.arch = device_arch(d);
        di.multiprocessors = device_attribute(d, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT);
        in.devices.push_back(di);
      }
    } catch (const std::exception& e) {
      in.driver_error = e.what();
    }
  }
  const NvrtcApi& nv = nvrtc_api();
  in.nvrtc_loaded = nv.loaded;
  in.nvrtc_path = nv.path;
  if (nv.major > 0) in.nvrtc_version = std::to_string(nv.major) + "." + std::to_string(nv.minor);
  in.nvrtc_archs = nv.archs;
  in.nvrtc_error = nv.error;
  return in;
}

bool gpu_available() {
  try {
    return device_count() > 0;
  } catch (const std::exception&) {
    return false;
  }
}

int parse_arch(const std::string& arch) {
  std::string s = arch;
  for (const char* prefix : {"sm_", "compute_", "sm", "compute"})
    if (s.rfind(prefix, 0) == 0) {
      s = s.substr(std::string(prefix).size());
      break;
    }
  while (!s.empty() && (s.back() == 'a' || s.back() == 'f')) s.pop_back();  // sm_90a, sm_100f: the base arch
  int v = 0;
  bool ok = !s.empty() && s.size() <= 4;
  for (char c : s) {
    if (c < '0' || c > '9') ok = false;
    v = v * 10 + (c - '0');
  }
  if (!ok || v < 10) throw Error(ErrorKind::Value, "pykmr: bad GPU arch '" + arch + "', expected e.g. sm_90");
  return v;
}

}  // namespace cuda
}  // namespace kmr
