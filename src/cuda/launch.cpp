#include "launch.hpp"

#include <algorithm>
#include <memory>

#include "driver_api.hpp"
#include "kernels.hpp"
#include "kmr/exec/cuda_abi.h"
#include "kmr/runtime/error.hpp"
#include "plan.hpp"

namespace kmr {
namespace cuda {

namespace {

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
  LaunchShape shape;
  shape.nx = r.nx;
  shape.ny = r.ny;
  shape.dj = r.dj;
  shape.dimf = r.dimf;
  shape.runtime_k = r.runtime_k;
  shape.k = r.k;
  shape.value_bytes = value_bytes(r.spec.dtype);
  shape.acc_bytes = value_bytes(r.spec.acc);
  shape.max_threads = k.max_threads;
  shape.sms = device_attribute(r.device, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT);
  shape.max_grid_y = device_attribute(r.device, CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y);
  shape.nbatch = r.nbatch;
  if (r.nbatch > device_attribute(r.device, CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z))
    throw Error(ErrorKind::Value, "pykmr: " + std::to_string(r.nbatch) +
                                      " batches are more than one GPU launch takes (" + r.what + ")");
  LaunchPlan plan = plan_block(shape);
  if (!plan.error.empty()) throw Error(ErrorKind::Value, "pykmr: " + r.what + ": " + plan.error);
  int occupancy = 1;
  if (api.cuOccupancyMaxActiveBlocksPerMultiprocessor(&occupancy, k.reduce, plan.block, plan.smem) != CUDA_SUCCESS ||
      occupancy < 1)
    occupancy = 1;
  shape.blocks_per_sm = occupancy;
  std::vector<long long> blocks;
  if (!r.slices.empty()) {
    blocks = sparse_blocks(r.ranges, r.slices, r.nx, plan.block);
    shape.sparse_blocks = static_cast<long long>(blocks.size() / 4);
  }
  plan = plan_launch(shape);
  if (plan.blocks_x > device_attribute(r.device, CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X))
    throw Error(ErrorKind::Value, "pykmr: too many rows for one GPU launch in " + r.what);

  kmr_cuda_params prm = plan_params(shape, plan);
  for (std::size_t a = 0; a < r.args.size(); ++a) prm.args[a] = r.args[a];
  for (std::size_t a = 0; a < r.batch_strides.size(); ++a) prm.batch_stride[a] = r.batch_strides[a];
  prm.out = r.out;

  const bool async = stream_ordered_alloc(r.device);
  // The block table and the j intervals, copied from host memory (pageable: the copy has read them on return).
  DeviceBuffer blocks_d(blocks.size() * 8, stream, async);
  DeviceBuffer red_d(blocks.empty() ? 0 : r.redranges.size() * 8, stream, async);
  if (!blocks.empty()) {
    check(api.cuMemcpyHtoDAsync(reinterpret_cast<CUdeviceptr>(blocks_d.get()), blocks.data(), blocks.size() * 8,
                                stream),
          "cuMemcpyHtoDAsync");
    if (!r.redranges.empty())
      check(api.cuMemcpyHtoDAsync(reinterpret_cast<CUdeviceptr>(red_d.get()), r.redranges.data(),
                                  r.redranges.size() * 8, stream),
            "cuMemcpyHtoDAsync");
    prm.blocks = static_cast<const long long*>(blocks_d.get());
    prm.redranges = static_cast<const long long*>(red_d.get());
  }
  const std::size_t part_rows =
      prm.use_partials ? std::size_t(plan.chunks) * std::size_t(r.nx) * std::size_t(prm.nbatch) : 0;
  DeviceBuffer part_acc(part_rows * std::size_t(plan.acc_slots) * shape.acc_bytes, stream, async);
  DeviceBuffer part_idx(part_rows * std::size_t(plan.idx_slots) * 8, stream, async);
  prm.part_acc = part_acc.get();
  prm.part_idx = static_cast<long long*>(part_idx.get());

  void* params[] = {&prm};
  check(api.cuLaunchKernel(k.reduce, static_cast<unsigned>(plan.blocks_x), static_cast<unsigned>(plan.chunks),
                           static_cast<unsigned>(prm.nbatch),
                           static_cast<unsigned>(plan.block), 1, 1, static_cast<unsigned>(plan.smem), stream, params,
                           nullptr),
        "cuLaunchKernel (map-reduce)");
  const long long merge_blocks = ceil_div(prm.nbatch * r.nx, plan.block);
  if (prm.use_partials)
    check(api.cuLaunchKernel(k.merge, static_cast<unsigned>(merge_blocks), 1, 1, static_cast<unsigned>(plan.block), 1,
                             1, 0, stream, params, nullptr),
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
  const std::size_t out_bytes =
      std::size_t(r.nbatch) * std::size_t(r.nx) * std::size_t(r.out_dim) * value_bytes(r.spec.dtype);
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
