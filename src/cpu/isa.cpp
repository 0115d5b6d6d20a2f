#include "isa.hpp"

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace kmr {
namespace cpu {
namespace {

int detect() {
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
                      __builtin_cpu_supports("avx512cd");
  return avx512 ? ISA_AVX512 : avx2 ? ISA_AVX2 : ISA_BASELINE;
#else
  return ISA_BASELINE;
#endif
}

int env_cap() {
  const char* s = std::getenv("KMR_CPU_ISA");
  if (!s || !*s) return ISA_AVX512;
  for (int l = ISA_BASELINE; l <= ISA_AVX512; ++l)
    if (std::strcmp(s, isa_level_name(l)) == 0) return l;
  return ISA_AVX512;  // unknown names cap nothing
}

std::atomic<int> g_cap{-1};

}  // namespace

const char* isa_level_name(int level) {
  switch (level) {
    case ISA_AVX512: return "avx512";
    case ISA_AVX2: return "avx2";
    default: return "baseline";
  }
}

int isa_level() {
  static const int machine = [] {
    const int d = detect(), c = env_cap();
    return d < c ? d : c;
  }();
  const int cap = g_cap.load(std::memory_order_relaxed);
  return cap >= 0 && cap < machine ? cap : machine;
}

void set_isa_cap(int level) { g_cap.store(level < 0 ? -1 : level); }

}  // namespace cpu
}  // namespace kmr
