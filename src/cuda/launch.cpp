#include "launch.hpp"

#include <algorithm>
#include <memory>

#include "driver_api.hpp"
#include "kernels.hpp"
#include "kmr/exec/cuda_abi.h"
#include "kmr/runtime/error.hpp"

namespace kmr {
namespace cuda {

namespace {

constexpr std::size_t kMaxTileBytes = 48 * 1024;            // dynamic shared memory without opt-in
constexpr std::size_t kMaxPartialBytes = std::size_t(256) << 20;  // split-j accumulators at most
constexpr long long kMinTilesPerChunk = 2;

long long ceil_div(long long a, long long b) { return (a + b - 1) / b; }

// Device memory freed on `stream` (stream-ordered when the driver has memory pools).
class DeviceBuffer {
 public:
  DeviceBuffer(std::size_t bytes, CUstream stream, bool async) : stream_(stream), async_(async) {
    if (bytes == 0) return;
    const DriverApi& api = driver();
    check(async_ ? api.cuMemAllocAsync(&ptr_, bytes, stream_) : api.cuMemAlloc(&ptr_, bytes),
          async_ ? "cuMemAllocAsync" : "cuMemAlloc");
  }
  ~DeviceBuffer() {
    if (!ptr_) return;
    const DriverApi& api = driver();
    if (async_) {
      api.cuMemFreeAsync(ptr_, stream_);
    } else {
      api.cuStreamSynchronize(stream_);  // the kernels may still use it
      api.cuMemFree(ptr_);
    }
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* get() const { return reinterpret_cast<void*>(ptr_); }

 private:
  CUdeviceptr ptr_ = 0;
  CUstream stream_;
  bool async_;
};

bool stream_ordered_alloc(int device) {
  const DriverApi& api = driver();
  return api.cuMemAllocAsync && api.cuMemFreeAsync &&
         device_attribute(device, CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED) != 0;
}

std::size_t value_bytes(const std::string& type) { return type == "float" ? 4 : 8; }

void check_pointer(const LaunchRequest& r, const void* p, const std::string& name) {
  if (!p) return;
  int ordinal = -1;
  const CUresult rc = driver().cuPointerGetAttribute(&ordinal, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL,
                                                     reinterpret_cast<CUdeviceptr>(p));
  if (rc != CUDA_SUCCESS)
    throw Error(ErrorKind::Value, "pykmr: " + name + " of " + r.what + " is not CUDA device memory (" +
                                      error_text(rc, "cuPointerGetAttribute") +
                                      "); pass GPU arrays, or host arrays through the host-copy path");
  if (ordinal != r.device)
    throw Error(ErrorKind::Value, "pykmr: " + name + " of " + r.what + " is on GPU " + std::to_string(ordinal) +
                                      ", but the kernel runs on GPU " + std::to_string(r.device) +
                                      "; put all arguments on one device");
}

}  // namespace

void launch(const LaunchRequest& r) {
  if (r.nx <= 0) return;
  const DriverApi& api = driver();
  if (r.args.size() > KMR_CUDA_MAX_ARGS)
    throw Error(ErrorKind::Value, "pykmr: the GPU kernels take at most " + std::to_string(KMR_CUDA_MAX_ARGS) +
                                      " variables, " + r.what + " has " + std::to_string(r.args.size()));
  ContextGuard ctx(r.device);
  CUstream stream = static_cast<CUstream>(r.stream);
  for (std::size_t a = 0; a < r.args.size(); ++a)
    if (r.bytes.empty() || r.bytes[a] > 0) check_pointer(r, r.args[a], "variable " + std::to_string(a));
  check_pointer(r, r.out, "the output");

  const Kernel& k = kernel_for(r.spec, r.device, r.what);
  const std::size_t tb = value_bytes(r.spec.dtype), ab = value_bytes(r.spec.acc);

  // Block and tile: 256 threads (fewer if the kernel's registers allow fewer);
  // tile_rows j rows of the j-variables in shared memory.
  int block = std::min(KMR_CUDA_MAX_BLOCK, k.max_threads);
  if (block >= 64) block -= block % 32;
  if (block < 1) throw Error(ErrorKind::Runtime, "pykmr: the CUDA kernel of " + r.what + " cannot be launched");
  const std::size_t row_bytes = std::size_t(KMR_CUDA_TILE_STRIDE(r.dj, int(tb))) * tb;
  long long tile_rows = block;
  if (row_bytes > 0) tile_rows = std::min<long long>(block, kMaxTileBytes / row_bytes);
  if (tile_rows < 1)
    throw Error(ErrorKind::Value, "pykmr: the j-variables of " + r.what + " hold " + std::to_string(r.dj) +
                                      " values per row, too many for the GPU kernel's shared memory; "
                                      "use the CPU (backend='CPU')");
  const std::size_t smem = std::size_t(tile_rows) * row_bytes;

  const long long bx = ceil_div(r.nx, block);
  const int max_grid_x = device_attribute(r.device, CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X);
  if (bx > max_grid_x) throw Error(ErrorKind::Value, "pykmr: too many rows for one GPU launch in " + r.what);

  // Split j when the rows alone do not fill the GPU (two waves of blocks).
  const bool big_k = r.runtime_k && r.k > KMR_CUDA_KMIN_LOCAL;
  const long long acc_slots = std::max<long long>(2LL * r.dimf + 2, r.k * r.dimf);
  const long long idx_slots = std::max<long long>(r.dimf, r.k * r.dimf);
  const std::size_t row_partial = std::size_t(acc_slots) * ab + std::size_t(idx_slots) * 8;
  long long chunks = 1;
  {
    const int sms = device_attribute(r.device, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT);
    int occupancy = 1;
    if (api.cuOccupancyMaxActiveBlocksPerMultiprocessor(&occupancy, k.reduce, block, smem) != CUDA_SUCCESS ||
        occupancy < 1)
      occupancy = 1;
    const long long capacity = 2LL * sms * occupancy;
    if (bx < capacity && r.ny >= 2 * kMinTilesPerChunk * tile_rows) {
      chunks = std::min(ceil_div(capacity, bx), r.ny / (kMinTilesPerChunk * tile_rows));
      chunks = std::min<long long>(chunks, device_attribute(r.device, CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y));
      chunks = std::min<long long>(chunks, std::max<long long>(1, kMaxPartialBytes / (std::size_t(r.nx) * row_partial)));
      if (chunks < 1) chunks = 1;
    }
  }
  long long j_per_chunk = std::max<long long>(r.ny, 1);
  if (chunks > 1) {
    j_per_chunk = ceil_div(ceil_div(r.ny, chunks), tile_rows) * tile_rows;
    chunks = ceil_div(r.ny, j_per_chunk);
  }

  kmr_cuda_params prm{};
  for (std::size_t a = 0; a < r.args.size(); ++a) prm.args[a] = r.args[a];
  prm.out = r.out;
  prm.nx = r.nx;
  prm.ny = r.ny;
  prm.k = r.k;
  prm.j_per_chunk = j_per_chunk;
  prm.tile_rows = static_cast<int>(tile_rows);
  prm.chunks = static_cast<int>(chunks);
  prm.use_partials = chunks > 1 || big_k;
  prm.acc_in_partials = big_k;

  const bool async = stream_ordered_alloc(r.device);
  const std::size_t part_rows = prm.use_partials ? std::size_t(chunks) * std::size_t(r.nx) : 0;
  DeviceBuffer part_acc(part_rows * std::size_t(acc_slots) * ab, stream, async);
  DeviceBuffer part_idx(part_rows * std::size_t(idx_slots) * 8, stream, async);
  prm.part_acc = part_acc.get();
  prm.part_idx = static_cast<long long*>(part_idx.get());

  void* params[] = {&prm};
  check(api.cuLaunchKernel(k.reduce, static_cast<unsigned>(bx), static_cast<unsigned>(chunks), 1,
                           static_cast<unsigned>(block), 1, 1, static_cast<unsigned>(smem), stream, params, nullptr),
        "cuLaunchKernel (map-reduce)");
  if (prm.use_partials)
    check(api.cuLaunchKernel(k.merge, static_cast<unsigned>(bx), 1, 1, static_cast<unsigned>(block), 1, 1, 0, stream,
                             params, nullptr),
          "cuLaunchKernel (merge)");
}

void launch_host(LaunchRequest r) {
  if (r.nx <= 0) return;
  const DriverApi& api = driver();
  ContextGuard ctx(r.device);
  CUstream stream = nullptr;  // the default stream: this call blocks anyway
  const bool async = stream_ordered_alloc(r.device);
  std::vector<std::unique_ptr<DeviceBuffer>> bufs;
  for (std::size_t a = 0; a < r.args.size(); ++a) {
    bufs.emplace_back(new DeviceBuffer(r.bytes[a], stream, async));
    if (r.bytes[a] > 0) {
      check(api.cuMemcpyHtoDAsync(reinterpret_cast<CUdeviceptr>(bufs.back()->get()), r.args[a], r.bytes[a], stream),
            "cuMemcpyHtoDAsync");
      r.args[a] = bufs.back()->get();
    } else {
      r.args[a] = nullptr;
    }
  }
  const std::size_t out_bytes = std::size_t(r.nx) * std::size_t(r.out_dim) * value_bytes(r.spec.dtype);
  DeviceBuffer out(out_bytes, stream, async);
  void* host_out = r.out;
  r.out = out.get();
  r.stream = stream;
  launch(r);
  check(api.cuMemcpyDtoHAsync(host_out, reinterpret_cast<CUdeviceptr>(out.get()), out_bytes, stream),
        "cuMemcpyDtoHAsync");
  check(api.cuStreamSynchronize(stream), "cuStreamSynchronize");
}

}  // namespace cuda
}  // namespace kmr
