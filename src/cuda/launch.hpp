// The one launch path of CUDA kernels (AOT or NVRTC): grid sizing, split-j
// partials, launch on the caller's stream.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/kernel_spec.hpp"

namespace kmr {
namespace cuda {

struct LaunchRequest {
  KernelSpec spec;
  std::string what;                // the formula and reduction, for messages
  int dj = 0;                      // total dim of the j-variables (canonical formula)
  int dimf = 1;                    // dim of the evaluated formula
  bool runtime_k = false;          // KMin-like reduction
  long long k = 0;
  std::vector<const void*> args;   // canonical order
  std::vector<std::size_t> bytes;  // size of each argument (for the host-copy path and checks)
  std::int64_t nx = 0, ny = 0;     // kernel rows (output) and reduced rows
  void* out = nullptr;
  int out_dim = 0;
  int device = 0;
  void* stream = nullptr;          // a CUstream of `device`'s primary context; null: the default stream
  std::int64_t nbatch = 1;                 // batches: out is [nbatch, nx, out_dim]
  std::vector<std::int64_t> batch_strides;  // canonical order, values between batches (0: shared); empty: none
  std::vector<std::int64_t> ranges, slices, redranges;  // KeOps's triple of the kernel's rows (host); empty: dense
};

// args and out are device memory of r.device. Asynchronous on r.stream.
void launch(const LaunchRequest& r);
// args and out are host memory: copied to the device and back (blocking).
void launch_host(LaunchRequest r);

}  // namespace cuda
}  // namespace kmr
