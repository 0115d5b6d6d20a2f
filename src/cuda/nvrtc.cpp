#include "nvrtc.hpp"

#include <dirent.h>
#include <dlfcn.h>
#include <sys/stat.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <mutex>

#include "kmr/runtime/error.hpp"

#ifndef KMR_WITH_CUDA
#define KMR_WITH_CUDA 1
#endif

namespace kmr {
namespace cuda {

namespace {

std::mutex& hint_mutex() {
  static std::mutex mu;
  return mu;
}
std::string& hint() {
  static std::string h;
  return h;
}

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

bool is_file(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string parent(const std::string& p) {
  const auto s = p.find_last_of('/');
  return s == std::string::npos ? "." : (s == 0 ? "/" : p.substr(0, s));
}

// The NVRTC library files of a folder, best first: libnvrtc.so (a toolkit's
// link to its own version), then the versioned names, newest first.
std::vector<std::string> libs_in(const std::string& dir) {
  std::vector<std::string> names;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (const dirent* e = ::readdir(d)) {
      const std::string n = e->d_name;
      if (n.rfind("libnvrtc.so", 0) == 0 && n.find("builtins") == std::string::npos && n.find(".alt.") == std::string::npos)
        names.push_back(n);
    }
    ::closedir(d);
  }
  std::sort(names.begin(), names.end(), [](const std::string& a, const std::string& b) {
    if ((a == "libnvrtc.so") != (b == "libnvrtc.so")) return a == "libnvrtc.so";
    return a > b;
  });
  std::vector<std::string> out;
  for (const auto& n : names) out.push_back(dir + "/" + n);
  return out;
}

std::string libkmr_dir() {
  Dl_info info;
  if (::dladdr(reinterpret_cast<void*>(&set_nvrtc_hint), &info) != 0 && info.dli_fname && info.dli_fname[0]) {
    char buf[PATH_MAX];
    if (::realpath(info.dli_fname, buf)) return parent(buf);
  }
  return std::string();
}

std::vector<std::string> candidates() {
  std::vector<std::string> c;
  {
    std::lock_guard<std::mutex> lock(hint_mutex());
    if (!hint().empty()) c.push_back(hint());
  }
  if (!env("KMR_NVRTC").empty()) c.push_back(env("KMR_NVRTC"));
  // pip's nvidia-cuda-nvrtc wheel beside the pykmr package (site-packages/pykmr/libkmr.so).
  const std::string lib = libkmr_dir();
  if (!lib.empty())
    for (const char* sub : {"/../nvidia/cu13/lib", "/../nvidia/cuda_nvrtc/lib", "/../nvidia/cu12/lib"})
      for (const auto& f : libs_in(lib + sub)) c.push_back(f);
  for (const char* so : {"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"}) c.push_back(so);
  std::vector<std::string> homes;
  for (const char* v : {"CUDA_HOME", "CUDA_PATH"})
    if (!env(v).empty()) homes.push_back(env(v));
  const std::string path = env("PATH");
  for (std::size_t b = 0; b <= path.size();) {
    std::size_t e = path.find(':', b);
    if (e == std::string::npos) e = path.size();
    const std::string dir = path.substr(b, e - b);
    if (!dir.empty() && is_file(dir + "/nvcc")) homes.push_back(parent(dir));
    b = e + 1;
  }
  homes.push_back("/usr/local/cuda");
  for (const auto& h : homes)
    for (const char* sub : {"/lib64", "/lib", "/targets/x86_64-linux/lib", "/targets/sbsa-linux/lib"})
      for (const auto& f : libs_in(h + sub)) c.push_back(f);
  return c;
}

// libnvrtc opens its builtins (libnvrtc-builtins.so.X.Y) by name at compile
// time, which the dynamic loader does not look for next to libnvrtc (pip's
// wheel has no RUNPATH for it): load them from the same folder first, so that
// the name resolves to the already loaded library.
void preload_builtins(const std::string& lib) {
  if (lib.find('/') == std::string::npos) return;
  const std::string dir = parent(lib);
  if (DIR* d = ::opendir(dir.c_str())) {
    std::vector<std::string> names;
    while (const dirent* e = ::readdir(d)) {
      const std::string n = e->d_name;
      if (n.rfind("libnvrtc-builtins.so", 0) == 0) names.push_back(n);
    }
    ::closedir(d);
    for (const auto& n : names) ::dlopen((dir + "/" + n).c_str(), RTLD_NOW | RTLD_LOCAL);
  }
}

template <class Fn>
void bind(void* h, Fn& fn, const char* name, std::string* missing) {
  fn = reinterpret_cast<Fn>(::dlsym(h, name));
  if (!fn) *missing += (missing->empty() ? "" : ", ") + std::string(name);
}

NvrtcApi load() {
  NvrtcApi api;
  if (!KMR_WITH_CUDA) {
    api.error = "this libkmr was built with KMR_CUDA=OFF (no GPU support)";
    return api;
  }
  std::string tried;
  void* h = nullptr;
  for (const auto& c : candidates()) {
    if (c.find('/') != std::string::npos && !is_file(c)) continue;
    preload_builtins(c);
    h = ::dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (h) break;
    const char* err = ::dlerror();
    tried += "\n    " + c + ": " + (err ? err : "not found");
  }
  if (!h) {
    api.error = "NVRTC (libnvrtc) was not found; tried:" + tried;
    return api;
  }
  std::string missing;
  bind(h, api.nvrtcGetErrorString, "nvrtcGetErrorString", &missing);
  bind(h, api.nvrtcVersion, "nvrtcVersion", &missing);
  bind(h, api.nvrtcGetNumSupportedArchs, "nvrtcGetNumSupportedArchs", &missing);
  bind(h, api.nvrtcGetSupportedArchs, "nvrtcGetSupportedArchs", &missing);
  bind(h, api.nvrtcCreateProgram, "nvrtcCreateProgram", &missing);
  bind(h, api.nvrtcDestroyProgram, "nvrtcDestroyProgram", &missing);
  bind(h, api.nvrtcCompileProgram, "nvrtcCompileProgram", &missing);
  bind(h, api.nvrtcGetProgramLogSize, "nvrtcGetProgramLogSize", &missing);
  bind(h, api.nvrtcGetProgramLog, "nvrtcGetProgramLog", &missing);
  bind(h, api.nvrtcGetPTXSize, "nvrtcGetPTXSize", &missing);
  bind(h, api.nvrtcGetPTX, "nvrtcGetPTX", &missing);
  bind(h, api.nvrtcGetCUBINSize, "nvrtcGetCUBINSize", &missing);
  bind(h, api.nvrtcGetCUBIN, "nvrtcGetCUBIN", &missing);
  Dl_info info;
  if (api.nvrtcVersion && ::dladdr(reinterpret_cast<void*>(api.nvrtcVersion), &info) != 0 && info.dli_fname)
    api.path = info.dli_fname;
  if (!missing.empty()) {
    api.error = "NVRTC " + api.path + " is too old (CUDA >= 11.2 is needed): it lacks " + missing;
    return api;
  }
  api.nvrtcVersion(&api.major, &api.minor);
  int n = 0;
  if (api.nvrtcGetNumSupportedArchs(&n) == 0 && n > 0) {
    api.archs.resize(static_cast<std::size_t>(n));
    if (api.nvrtcGetSupportedArchs(api.archs.data()) != 0) api.archs.clear();
    std::sort(api.archs.begin(), api.archs.end());
  }
  if (api.archs.empty()) {
    api.error = "NVRTC " + api.path + " reports no supported GPU architecture";
    return api;
  }
  api.loaded = true;
  return api;
}

}  // namespace

void set_nvrtc_hint(const std::string& path) {
  std::lock_guard<std::mutex> lock(hint_mutex());
  hint() = path;
}

// Loaded once; a failed search is tried again when a new hint arrives (the
// Python package may hand one after something asked for NVRTC). Failed
// attempts are kept alive: references to them stay valid.
const NvrtcApi& nvrtc_api() {
  static std::mutex mu;
  static const NvrtcApi* api = nullptr;
  static std::string tried_hint;
  std::lock_guard<std::mutex> lock(mu);
  std::string h;
  {
    std::lock_guard<std::mutex> hl(hint_mutex());
    h = hint();
  }
  if (!api || (!api->loaded && h != tried_hint)) {
    tried_hint = h;
    api = new NvrtcApi(load());
  }
  return *api;
}

const NvrtcApi& nvrtc() {
  const NvrtcApi& api = nvrtc_api();
  if (!api.loaded)
    throw Error(ErrorKind::Runtime,
                "pykmr cannot compile CUDA kernels at run time: " + api.error +
                    "\n  Install it with `pip install nvidia-cuda-nvrtc` (or `pip install pykmr[cuda]`), or install "
                    "a CUDA toolkit, or set KMR_NVRTC to the path of libnvrtc.so.");
  return api;
}

std::string nvrtc_target(int arch) {
  const NvrtcApi& api = nvrtc();
  if (std::find(api.archs.begin(), api.archs.end(), arch) != api.archs.end()) return "sm_" + std::to_string(arch);
  if (arch > api.archs.back()) return "compute_" + std::to_string(api.archs.back());
  if (arch < api.archs.front())
    throw Error(ErrorKind::Runtime, "pykmr: NVRTC " + std::to_string(api.major) + "." + std::to_string(api.minor) +
                                        " (" + api.path + ") cannot compile for sm_" + std::to_string(arch) +
                                        " (it supports sm_" + std::to_string(api.archs.front()) +
                                        " and newer); install an older nvidia-cuda-nvrtc (e.g. 12.x)");
  // An arch between two supported ones (e.g. a minor variant): the closest older one runs on it.
  int best = api.archs.front();
  for (int a : api.archs)
    if (a <= arch && a / 10 == arch / 10) best = a;
  if (best / 10 != arch / 10)
    throw Error(ErrorKind::Runtime, "pykmr: NVRTC " + api.path + " cannot compile for sm_" + std::to_string(arch));
  return "sm_" + std::to_string(best);
}

// -default-device: NVRTC refuses functions without an execution space, and the
// formula headers have host-style helpers (print, vars, constexpr tables) that
// kernels use at compile time only. nvcc compiles the same source without it.
std::vector<std::string> nvrtc_options() { return {"-std=c++17", "--use_fast_math", "-default-device"}; }

NvrtcResult nvrtc_compile(const std::string& source, const std::string& target, const std::string& include_dir,
                          const std::string& source_path, const std::string& what) {
  const NvrtcApi& api = nvrtc();
  NvrtcApi::Program prog = nullptr;
  int rc = api.nvrtcCreateProgram(&prog, source.c_str(), source_path.c_str(), 0, nullptr, nullptr);
  if (rc != 0)
    throw Error(ErrorKind::Runtime, std::string("pykmr: nvrtcCreateProgram failed: ") + api.nvrtcGetErrorString(rc));
  std::vector<std::string> opts = nvrtc_options();
  opts.push_back("--gpu-architecture=" + target);
  opts.push_back("--include-path=" + include_dir);
  std::vector<const char*> argv;
  for (const auto& o : opts) argv.push_back(o.c_str());
  rc = api.nvrtcCompileProgram(prog, static_cast<int>(argv.size()), argv.data());
  NvrtcResult out;
  std::size_t n = 0;
  if (api.nvrtcGetProgramLogSize(prog, &n) == 0 && n > 1) {
    out.log.resize(n);
    api.nvrtcGetProgramLog(prog, &out.log[0]);
    out.log.resize(n - 1);
  }
  if (rc == 0) {
    out.is_cubin = target.rfind("sm_", 0) == 0;
    const int got = out.is_cubin ? api.nvrtcGetCUBINSize(prog, &n) : api.nvrtcGetPTXSize(prog, &n);
    if (got == 0 && n > 0) {
      out.image.resize(n);
      if ((out.is_cubin ? api.nvrtcGetCUBIN(prog, &out.image[0]) : api.nvrtcGetPTX(prog, &out.image[0])) != 0)
        out.image.clear();
    }
  }
  api.nvrtcDestroyProgram(&prog);
  if (rc != 0 || out.image.empty()) {
    std::string log = out.log;
    if (log.size() > 8000) log = log.substr(0, 6000) + "\n[...]\n" + log.substr(log.size() - 2000);
    throw Error(ErrorKind::Runtime, "pykmr: NVRTC failed to compile " + what + " for " + target + " (" +
                                        (rc != 0 ? api.nvrtcGetErrorString(rc) : "empty output") +
                                        ").\n  source: " + source_path + "\n  NVRTC log:\n" + log);
  }
  return out;
}

}  // namespace cuda
}  // namespace kmr
