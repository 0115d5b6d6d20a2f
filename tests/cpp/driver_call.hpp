// A kmr_kernel_call for run_cpu on the default thread pool, shared by the CPU-driver tests.
#pragma once
#include <cstdint>

#include "cpu/thread_pool.hpp"
#include "kmr/exec/kernel_abi.h"

namespace kmr_test {

// nx rows reduced over ny, option k, arguments in canonical order, output out; `threads` both sets the
// pool's size and is what the call asks for.
inline kmr_kernel_call make_call(int64_t nx, int64_t ny, int64_t k, const void* const* args, void* out, int threads) {
  kmr_kernel_call c{};
  c.abi_version = KMR_KERNEL_ABI_VERSION;
  c.nx = nx;
  c.ny = ny;
  c.k = k;
  c.args = args;
  c.out = out;
  c.parallel_for = &kmr::cpu::parallel_for;
  c.pool = kmr::cpu::default_pool();
  c.num_threads = threads;
  kmr::cpu::set_num_threads(threads);
  return c;
}

}  // namespace kmr_test
