// The CUDA backend without a GPU: the embedded fatbins hold every AOT kernel
// for every built arch, NVRTC compiles generic formulas and their gradients
// to sm_90 cubins (cached, corrupt entries rebuilt), nvcc compiles the same
// generated source, the driver-API constants match cuda.h, and asking for a
// GPU without one gives a clear error. Checks that need what this machine
// lacks (nvcc, NVRTC) are skipped with the reason printed.
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "cuda/aot.hpp"
#include "cuda/driver_api.hpp"
#include "cuda/kernels.hpp"
#include "cuda/nvrtc.hpp"
#include "kmr/exec/cuda_abi.h"
#include "kmr/runtime/cuda.hpp"
#include "kmr/runtime/error.hpp"
#include "kmr/runtime/genred.hpp"
#include "kmr/runtime/jit.hpp"
#include "runtime/kernel_spec.hpp"
#include "runtime/registry.hpp"

#ifdef KMR_TEST_CUDA_H
#include <cuda.h>
#endif

namespace {

// Before any test: the wheel's NVRTC (found by CMake); the rest of the environment is test_env.cpp's.
const bool kEnvironment = [] {
#ifdef KMR_TEST_NVRTC
  setenv("KMR_NVRTC", KMR_TEST_NVRTC, 0);
#endif
  return true;
}();

std::string read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, sep))
    if (!item.empty()) out.push_back(item);
  return out;
}

// ---- a reader of the fatbin container (what nvcc --fatbin writes) ------------------
// Container: u32 magic 0xBA55ED50, u16 version, u16 header size, u64 size of the
// entries. Entry: u16 kind (1 PTX, 2 ELF), u16 version, u32 header size, u64
// payload size (padded), u32 compressed size, ..., u32 arch at byte 28, u32
// flags at byte 40 (0x8000: compressed), u64 uncompressed size at byte 56.
struct FatEntry {
  int kind = 0;  // 1 PTX, 2 ELF (cubin)
  int arch = 0;  // e.g. 90
  bool compressed = false;
  std::string payload;  // as stored
  std::uint64_t uncompressed_size = 0;
};

template <class T>
T load(const unsigned char* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

bool parse_fatbin(const unsigned char* data, std::size_t size, std::vector<FatEntry>* out, std::string* why) {
  if (size < 16 || load<std::uint32_t>(data) != 0xBA55ED50u) {
    *why = "bad magic";
    return false;
  }
  const std::size_t hsz = load<std::uint16_t>(data + 6);
  const std::uint64_t total = load<std::uint64_t>(data + 8);
  if (hsz + total > size) {
    *why = "truncated container";
    return false;
  }
  std::size_t off = hsz;
  while (off + 64 <= hsz + total) {
    const unsigned char* e = data + off;
    FatEntry f;
    f.kind = load<std::uint16_t>(e);
    const std::uint32_t ehsz = load<std::uint32_t>(e + 4);
    const std::uint64_t psz = load<std::uint64_t>(e + 8);
    const std::uint32_t csz = load<std::uint32_t>(e + 16);
    f.arch = static_cast<int>(load<std::uint32_t>(e + 28));
    const std::uint32_t flags = load<std::uint32_t>(e + 40);
    f.uncompressed_size = load<std::uint64_t>(e + 56);
    f.compressed = (flags & 0x8000u) != 0 && f.uncompressed_size > 0 && csz > 0;
    if (off + ehsz + psz > hsz + total) {
      *why = "truncated entry";
      return false;
    }
    f.payload.assign(reinterpret_cast<const char*>(e + ehsz), f.compressed ? csz : psz);
    out->push_back(f);
    off += ehsz + psz;
  }
  return true;
}

// nvcc's "-compress-mode=size" stores zstd frames; libzstd (if the machine has
// it) lets the test read the kernel names inside.
struct Zstd {
  std::size_t (*decompress)(void*, std::size_t, const void*, std::size_t) = nullptr;
  unsigned (*is_error)(std::size_t) = nullptr;
  Zstd() {
    void* h = dlopen("libzstd.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h) return;
    decompress = reinterpret_cast<decltype(decompress)>(dlsym(h, "ZSTD_decompress"));
    is_error = reinterpret_cast<decltype(is_error)>(dlsym(h, "ZSTD_isError"));
  }
  bool ok() const { return decompress && is_error; }
};

bool payload_text(const FatEntry& f, const Zstd& z, std::string* text) {
  if (!f.compressed) {
    *text = f.payload;
    return true;
  }
  if (!z.ok() || f.payload.size() < 4 || std::memcmp(f.payload.data(), "\x28\xb5\x2f\xfd", 4) != 0) return false;
  text->resize(f.uncompressed_size);
  const std::size_t n = z.decompress(&(*text)[0], text->size(), f.payload.data(), f.payload.size());
  if (z.is_error(n)) return false;
  text->resize(n);
  return true;
}

}  // namespace

TEST(CudaInfo, ReportsWithoutThrowing) {
  const kmr::cuda::Info in = kmr::cuda::info();
  EXPECT_EQ(in.built, KMR_TEST_WITH_CUDA != 0);
  std::size_t n = 0;
  kmr::cuda::aot_images(&n);
  EXPECT_EQ(in.aot_images, n);
  EXPECT_EQ(in.compiled, in.aot_kernels > 0);
  if (in.compiled) EXPECT_FALSE(in.archs.empty());
  if (!in.driver_loaded) EXPECT_FALSE(in.driver_error.empty());
  if (!in.nvrtc_loaded) EXPECT_FALSE(in.nvrtc_error.empty());
  std::printf("cuda: built=%d aot_kernels=%zu archs=%s driver=%s nvrtc=%s %s\n", in.built, in.aot_kernels,
              kmr::cuda::aot_archs(), in.driver_loaded ? in.driver_path.c_str() : in.driver_error.c_str(),
              in.nvrtc_loaded ? in.nvrtc_path.c_str() : "-", in.nvrtc_version.c_str());
}

TEST(CudaInfo, ParseArch) {
  EXPECT_EQ(kmr::cuda::parse_arch("sm_90"), 90);
  EXPECT_EQ(kmr::cuda::parse_arch("90"), 90);
  EXPECT_EQ(kmr::cuda::parse_arch("compute_80"), 80);
  EXPECT_EQ(kmr::cuda::parse_arch("sm_90a"), 90);
  EXPECT_EQ(kmr::cuda::parse_arch("sm_100"), 100);
  EXPECT_THROW(kmr::cuda::parse_arch("gfx90a"), kmr::Error);
  EXPECT_THROW(kmr::cuda::parse_arch("sm_"), kmr::Error);
}

#ifdef KMR_TEST_CUDA_H
#define KMR_SAME(name) static_assert(int(kmr::cuda::name) == int(::name), #name " differs from cuda.h")
TEST(CudaDriverApi, ConstantsMatchCudaH) {
  namespace c = kmr::cuda;
  KMR_SAME(CUDA_SUCCESS);
  KMR_SAME(CUDA_ERROR_OUT_OF_MEMORY);
  KMR_SAME(CUDA_ERROR_NO_DEVICE);
  KMR_SAME(CUDA_ERROR_INVALID_DEVICE);
  KMR_SAME(CUDA_ERROR_INVALID_IMAGE);
  KMR_SAME(CUDA_ERROR_NO_BINARY_FOR_GPU);
  KMR_SAME(CUDA_ERROR_INVALID_PTX);
  KMR_SAME(CUDA_ERROR_UNSUPPORTED_PTX_VERSION);
  KMR_SAME(CUDA_ERROR_NOT_FOUND);
  KMR_SAME(CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK);
  KMR_SAME(CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X);
  KMR_SAME(CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y);
  KMR_SAME(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK);
  KMR_SAME(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT);
  KMR_SAME(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR);
  KMR_SAME(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
  KMR_SAME(CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED);
  KMR_SAME(CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK);
  KMR_SAME(CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES);
  KMR_SAME(CU_FUNC_ATTRIBUTE_NUM_REGS);
  KMR_SAME(CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL);
  static_assert(sizeof(c::CUdeviceptr) == sizeof(::CUdeviceptr), "");
  SUCCEED();
}
#endif

// Every kernel of every AOT entry is in its fatbin, as SASS for each built arch
// and PTX for the newest; the AOT kernels are exactly the CPU precompiled set
// when KMR_CUDA_PRECOMPILED follows KMR_PRECOMPILED.
TEST(CudaAot, EveryManifestKernelInTheFatbinForEachArch) {
  std::size_t n = 0;
  const kmr::cuda::AotImage* const* images = kmr::cuda::aot_images(&n);
  if (n == 0) GTEST_SKIP() << "libkmr was built without AOT CUDA kernels (no nvcc, KMR_CUDA=OFF or an empty filter)";
  const std::vector<std::string> archs = split(kmr::cuda::aot_archs(), ';');
  ASSERT_FALSE(archs.empty());
  const Zstd zstd;
  std::set<std::string> aot_keys;
  std::size_t names_checked = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const kmr::cuda::AotImage& img = *images[i];
    SCOPED_TRACE(img.entry);
    ASSERT_EQ(reinterpret_cast<std::uintptr_t>(img.begin) % 16, 0u) << "fatbin not 16-byte aligned";
    std::vector<FatEntry> entries;
    std::string why;
    ASSERT_TRUE(parse_fatbin(img.begin, static_cast<std::size_t>(img.end - img.begin), &entries, &why)) << why;
    for (const std::string& a : archs) {
      const bool ptx = a.rfind("compute_", 0) == 0;
      const int arch = kmr::cuda::parse_arch(a);
      const FatEntry* found = nullptr;
      for (const FatEntry& f : entries)
        if (f.kind == (ptx ? 1 : 2) && f.arch == arch) found = &f;
      ASSERT_NE(found, nullptr) << "no " << (ptx ? "PTX" : "cubin") << " for " << a;
      std::string text;
      if (!payload_text(*found, zstd, &text)) continue;  // compressed and no libzstd: container checked only
      for (std::size_t k = 0; k < img.size; ++k) {
        const std::string name = img.kernels[k].name;
        for (const std::string& fn : {name, name + "_merge"}) {
          const std::string needle = ptx ? ".entry " + fn + "(" : fn + std::string(1, '\0');
          EXPECT_NE(text.find(needle), std::string::npos) << fn << " missing from the " << a << " image";
          ++names_checked;
        }
      }
    }
    for (std::size_t k = 0; k < img.size; ++k) aot_keys.insert(img.kernels[k].key);
  }
  std::printf("%zu images, %zu kernel specs, %zu kernel names found in the images (%s)\n", n, aot_keys.size(),
              names_checked, zstd.ok() ? "zstd available" : "no libzstd: names not checked in compressed images");
#if KMR_TEST_CUDA_SAME_SET
  std::set<std::string> cpu_keys;  // of the CPU entries in the AOT value types
  std::size_t tables = 0;
  const kmr::PrecompiledTable* t = kmr::precompiled_tables(&tables);
  const std::vector<std::string> dtypes = split(KMR_TEST_CUDA_DTYPES, ',');
  for (std::size_t i = 0; i < tables; ++i)
    for (std::size_t e = 0; e < t[i].size; ++e)
      for (const auto& d : dtypes)
        if (d == t[i].entries[e].dtype) cpu_keys.insert(t[i].entries[e].key);
  EXPECT_EQ(aot_keys, cpu_keys);
#endif
}

// The public API finds every AOT kernel by the key the runtime computes.
TEST(CudaAot, PublicApiFindsEveryAotKernel) {
  std::size_t tables = 0;
  const kmr::PrecompiledTable* t = kmr::precompiled_tables(&tables);
  std::size_t n = 0;
  kmr::cuda::aot_images(&n);
  if (n == 0) GTEST_SKIP() << "no AOT CUDA kernels in this build";
#if !KMR_TEST_CUDA_SAME_SET
  GTEST_SKIP() << "KMR_CUDA_PRECOMPILED differs from KMR_PRECOMPILED";
#endif
  const std::vector<std::string> dtypes = split(KMR_TEST_CUDA_DTYPES, ',');
  for (std::size_t i = 0; i < tables; ++i)
    for (std::size_t e = 0; e < t[i].size; ++e) {
      const kmr::PrecompiledEntry& en = t[i].entries[e];
      if (std::find(dtypes.begin(), dtypes.end(), std::string(en.dtype)) == dtypes.end()) continue;
      const kmr::Genred g(en.formula, split(en.aliases, ';'), en.reduction, en.axis, [&] {
        kmr::GenredOptions o;
        o.opt_arg = std::string(en.reduction).find("KMin") != std::string::npos ? 3 : 0;
        return o;
      }());
      const kmr::DType dt = std::string(en.dtype) == "float" ? kmr::DType::Float32 : kmr::DType::Float64;
      EXPECT_TRUE(g.is_precompiled_cuda(dt)) << en.formula << " " << en.reduction << " " << en.dtype;
      EXPECT_EQ(g.prepare_cuda(dt, 90), "precompiled");
    }
}

namespace {

bool have_nvrtc(std::string* why) {
  const kmr::cuda::NvrtcApi& api = kmr::cuda::nvrtc_api();
  if (!api.loaded) *why = "NVRTC not found (pip install nvidia-cuda-nvrtc): " + api.error;
  return api.loaded;
}

bool is_elf(const std::string& path) {
  const std::string s = read(path);
  return s.size() > 4 && s.compare(0, 4, "\x7f" "ELF") == 0;
}

const char* kFormula = "Exp(-G*SqDist(X,Y))*Sin(B)+Atan((X|Y))";
const std::vector<std::string> kAliases = {"G = Pm(1)", "X = Vi(3)", "Y = Vj(3)", "B = Vj(2)"};

}  // namespace

TEST(CudaNvrtc, CompilesAGenericFormulaAndItsGradientToSm90Cubins) {
  std::string why;
  if (!have_nvrtc(&why)) GTEST_SKIP() << why;
  const kmr::Genred f(kFormula, kAliases, "Sum", 1);
  const kmr::Genred grad(std::string("Grad(") + kFormula + ",X,E)", [] {
    auto a = kAliases;
    a.push_back("E = Vi(2)");
    return a;
  }(), "Sum", 1);
  const kmr::Genred lse("-G*SqDist(X,Y)+Sum(B)", kAliases, "LogSumExp", 0);
  const kmr::Genred kmin("SqDist(X,Y)*Sum(B)", kAliases, "ArgKMin", 1, [] {
    kmr::GenredOptions o;
    o.opt_arg = 40;  // above KMR_CUDA_KMIN_LOCAL: the accumulators live in global memory
    return o;
  }());
  for (const kmr::Genred* g : {&f, &grad, &lse, &kmin})
    for (kmr::DType dt : {kmr::DType::Float32, kmr::DType::Float64}) {
      const std::string path = g->prepare_cuda(dt, 90);
      SCOPED_TRACE(path);
      ASSERT_NE(path, "precompiled");
      EXPECT_EQ(path.substr(path.size() - 6), ".cubin");
      EXPECT_TRUE(is_elf(path));
      const std::string stem = path.substr(0, path.size() - 6);
      struct stat st;
      EXPECT_EQ(stat((stem + ".key").c_str(), &st), 0);
      const std::string src = read(stem + ".cu");
      EXPECT_NE(src.find("kmr_cuda_kernel"), std::string::npos);
      EXPECT_EQ(g->prepare_cuda(dt, 90), path);  // cached
    }
  // A PTX for a GPU newer than NVRTC knows: the driver compiles it.
  const std::string ptx = f.prepare_cuda(kmr::DType::Float32, 990);
  EXPECT_EQ(ptx.substr(ptx.size() - 4), ".ptx");
  EXPECT_NE(read(ptx).find(".entry kmr_cuda_kernel("), std::string::npos);
}

TEST(CudaNvrtc, CorruptCachedCubinIsRebuilt) {
  std::string why;
  if (!have_nvrtc(&why)) GTEST_SKIP() << why;
  const kmr::Genred f("Cos((X|Y))*B", {"X = Vi(2)", "Y = Vj(2)", "B = Vj(1)"}, "Sum", 1);
  const std::string path = f.prepare_cuda(kmr::DType::Float32, 80);
  ASSERT_TRUE(is_elf(path));
  const std::string good = read(path);
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << "not a cubin";
  }
  kmr::cuda::reset_nvrtc_memory_for_testing();
  EXPECT_EQ(f.prepare_cuda(kmr::DType::Float32, 80), path);
  EXPECT_EQ(read(path), good);  // NVRTC is deterministic: the same image again
}

TEST(CudaNvrtc, CompileErrorNamesTheSourceAndShowsTheLog) {
  std::string why;
  if (!have_nvrtc(&why)) GTEST_SKIP() << why;
  try {
    kmr::cuda::nvrtc_compile("this is not C++;", "sm_90", kmr::jit::include_dir(), "/tmp/kmr-bad-source.cu",
                             "a broken kernel");
    FAIL() << "expected an error";
  } catch (const kmr::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("/tmp/kmr-bad-source.cu"), std::string::npos) << msg;
    EXPECT_NE(msg.find("NVRTC log"), std::string::npos) << msg;
    EXPECT_NE(msg.find("error"), std::string::npos) << msg;
  }
}

// The translation unit NVRTC compiles is valid for nvcc too (same header, same source).
TEST(CudaNvcc, GeneratedSourceCompilesWithNvcc) {
#ifndef KMR_TEST_NVCC
  GTEST_SKIP() << "nvcc was not found when libkmr was configured (KMR_CUDA=AUTO without a CUDA toolkit, or OFF)";
#else
  const kmr::Genred grad(std::string("Grad(") + kFormula + ",Y,E)", [] {
    auto a = kAliases;
    a.push_back("E = Vi(2)");
    return a;
  }(), "Sum", 0);
  const kmr::Genred kmin("SqDist(X,Y)", {"X = Vi(3)", "Y = Vj(3)"}, "KMin_ArgKMin", 1, [] {
    kmr::GenredOptions o;
    o.opt_arg = 5;
    return o;
  }());
  std::string why;
  if (!have_nvrtc(&why)) GTEST_SKIP() << "needs NVRTC to get the cached source: " << why;
  for (const kmr::Genred* g : {&grad, &kmin}) {
    const std::string path = g->prepare_cuda(kmr::DType::Float64, 90, true);
    const std::string src = path.substr(0, path.rfind('.')) + ".cu";
    const std::string out = path.substr(0, path.rfind('.')) + ".nvcc.ptx";
    const std::string cmd = std::string("\"") + KMR_TEST_NVCC + "\" -std=c++17 --use_fast_math -arch=sm_90 -ptx -I\"" +
                            kmr::jit::include_dir() + "\" -o \"" + out + "\" \"" + src + "\" 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    EXPECT_NE(read(out).find(".entry kmr_cuda_kernel("), std::string::npos);
    std::remove(out.c_str());
  }
#endif
}

TEST(CudaInfo, BuiltWithoutCudaSaysSo) {
  if (KMR_TEST_WITH_CUDA) GTEST_SKIP() << "this libkmr has the CUDA backend (KMR_CUDA is not OFF)";
  const kmr::cuda::Info in = kmr::cuda::info();
  EXPECT_FALSE(in.compiled);
  EXPECT_NE(in.driver_error.find("KMR_CUDA=OFF"), std::string::npos) << in.driver_error;
  EXPECT_NE(in.nvrtc_error.find("KMR_CUDA=OFF"), std::string::npos) << in.nvrtc_error;
  const kmr::Genred g("SqDist(X,Y)", {"X = Vi(3)", "Y = Vj(3)"}, "Min", 1);
  EXPECT_THROW(g.prepare_cuda(kmr::DType::Float32, 90), kmr::Error);
}

TEST(CudaErrors, GpuRequestedWithoutAGpuSaysWhatIsMissing) {
  if (kmr::cuda::gpu_available()) GTEST_SKIP() << "this machine has a GPU";
  const kmr::Genred g("SqDist(X,Y)", {"X = Vi(3)", "Y = Vj(3)"}, "Min", 1);
  const float x[3] = {0, 0, 0}, y[3] = {1, 1, 1};
  float out[1];
  const void* args[2] = {x, y};
  for (int host = 0; host < 2; ++host) {
    try {
      if (host)
        g.run_cuda_host(kmr::DType::Float32, args, 2, 1, 1, out, 0);
      else
        g.run_cuda(kmr::DType::Float32, args, 2, 1, 1, out, 0, nullptr);
      FAIL() << "expected an error";
    } catch (const kmr::Error& e) {
      EXPECT_EQ(e.kind(), kmr::ErrorKind::Runtime);
      const std::string msg = e.what();
      EXPECT_NE(msg.find("GPU backend is not available"), std::string::npos) << msg;
      EXPECT_NE(msg.find("CPU"), std::string::npos) << msg;
    }
  }
}
