// Run-time choice of the instruction set of the precompiled kernels.
//
// Each precompiled kernel is compiled for the baseline of the target (x86-64:
// SSE2) and, on x86-64, again for AVX2+FMA and AVX-512 (KMR_CPU_ISAS). Its
// registry entry is a small dispatcher that calls the best variant this CPU
// runs (isa_level). The JIT compiles for the host (-march=native) instead.
#pragma once

namespace kmr {
namespace cpu {

enum IsaLevel : int { ISA_BASELINE = 0, ISA_AVX2 = 1, ISA_AVX512 = 2 };

// The best level this CPU and OS run (x86-64: cpuid + xgetbv through the
// compiler's __builtin_cpu_supports), capped by the environment variable
// KMR_CPU_ISA (baseline, avx2 or avx512) and by set_isa_cap.
int isa_level();
// Caps isa_level (tests); a negative value removes the cap.
void set_isa_cap(int level);
// "baseline", "avx2", "avx512".
const char* isa_level_name(int level);
// The level of a variant name of KMR_CPU_ISAS ("avx2", "avx512"); unknown names: above all levels.
constexpr int isa_level_of(const char* name) {
  return (name[0] == 'a' && name[1] == 'v' && name[2] == 'x' && name[3] == '2' && name[4] == 0)   ? ISA_AVX2
         : (name[0] == 'a' && name[1] == 'v' && name[2] == 'x' && name[3] == '5' && name[4] == '1' &&
            name[5] == '2' && name[6] == 0)                                                        ? ISA_AVX512
                                                                                                   : 99;
}

}  // namespace cpu
}  // namespace kmr
