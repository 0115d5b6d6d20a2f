// The shape of one CUDA map-reduce launch (pure arithmetic, no driver: the
// emulated-kernel test runs the device code on the CPU with the same plans).
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "kmr/exec/cuda_abi.h"

namespace kmr {
namespace cuda {

struct LaunchShape {  // what the plan needs to know
  std::int64_t nx = 0, ny = 0;
  std::int64_t nbatch = 1;    // batches (grid z): no split-j
  std::int64_t sparse_blocks = 0;  // > 0: block-sparse, this many row blocks (grid x), no split-j
  int dj = 0;                 // total dim of the j-variables
  int dimf = 1;               // dim of the evaluated formula
  bool runtime_k = false;     // KMin-like reduction
  long long k = 0;
  std::size_t value_bytes = 4, acc_bytes = 4;
  int max_threads = KMR_CUDA_MAX_BLOCK;  // the kernel's limit (registers)
  int sms = 1, blocks_per_sm = 1;        // the GPU, and the kernel's occupancy (filled by the caller)
  std::size_t max_tile_bytes = 48 * 1024;
  std::size_t max_partial_bytes = std::size_t(256) << 20;
  long long max_grid_y = 65535;
};

struct LaunchPlan {
  int block = 0;                      // threads per block
  long long tile_rows = 0;            // j rows in shared memory at once
  std::size_t smem = 0;               // dynamic shared memory bytes
  long long blocks_x = 0, chunks = 1;
  long long j_per_chunk = 1;
  bool use_partials = false, acc_in_partials = false;
  long long acc_slots = 0, idx_slots = 0;  // per row of the partials (upper bounds of the reduction's)
  std::string error;                  // non-empty: cannot be launched (message)
};

inline long long ceil_div(long long a, long long b) { return (a + b - 1) / b; }

// Threads per block from the kernel's limit; tile rows from shared memory.
inline LaunchPlan plan_block(const LaunchShape& s) {
  LaunchPlan p;
  p.block = std::min(KMR_CUDA_MAX_BLOCK, s.max_threads);
  if (p.block >= 64) p.block -= p.block % 32;
  if (p.block < 1) {
    p.error = "the kernel cannot be launched (0 threads per block)";
    return p;
  }
  const std::size_t row_bytes = std::size_t(KMR_CUDA_TILE_STRIDE(s.dj, int(s.value_bytes))) * s.value_bytes;
  p.tile_rows = p.block;
  if (row_bytes > 0) p.tile_rows = std::min<long long>(p.block, static_cast<long long>(s.max_tile_bytes / row_bytes));
  if (p.tile_rows < 1) {
    p.error = "the j-variables hold " + std::to_string(s.dj) +
              " values per row, too many for the GPU kernel's shared memory; use the CPU (backend='CPU')";
    return p;
  }
  p.smem = std::size_t(p.tile_rows) * row_bytes;
  return p;
}

// The grid: split j into chunks when the rows alone give fewer blocks than two waves.
inline LaunchPlan plan_launch(const LaunchShape& s) {
  LaunchPlan p = plan_block(s);
  if (!p.error.empty()) return p;
  p.blocks_x = s.sparse_blocks > 0 ? s.sparse_blocks : ceil_div(s.nx, p.block);
  const bool may_split = s.nbatch <= 1 && s.sparse_blocks == 0;
  p.acc_in_partials = s.runtime_k && s.k > KMR_CUDA_KMIN_LOCAL;
  p.acc_slots = std::max<long long>(2LL * s.dimf + 2, s.k * s.dimf);
  p.idx_slots = std::max<long long>(s.dimf, s.k * s.dimf);
  const std::size_t row_partial = std::size_t(p.acc_slots) * s.acc_bytes + std::size_t(p.idx_slots) * 8;
  constexpr long long kMinTilesPerChunk = 2;
  const long long capacity = 2LL * std::max(1, s.sms) * std::max(1, s.blocks_per_sm);
  p.chunks = 1;
  if (may_split && p.blocks_x < capacity && s.ny >= 2 * kMinTilesPerChunk * p.tile_rows) {
    p.chunks = std::min(ceil_div(capacity, p.blocks_x), s.ny / (kMinTilesPerChunk * p.tile_rows));
    p.chunks = std::min(p.chunks, s.max_grid_y);
    const long long by_mem = static_cast<long long>(s.max_partial_bytes / (std::size_t(s.nx) * row_partial));
    p.chunks = std::max<long long>(1, std::min(p.chunks, by_mem));
  }
  p.j_per_chunk = std::max<long long>(s.ny, 1);
  if (p.chunks > 1) {
    p.j_per_chunk = ceil_div(ceil_div(s.ny, p.chunks), p.tile_rows) * p.tile_rows;
    p.chunks = ceil_div(s.ny, p.j_per_chunk);
  }
  p.use_partials = p.chunks > 1 || p.acc_in_partials;
  return p;
}

// The kernel parameters of a plan (args and buffers filled by the caller).
// Block-sparse ranges as rows of blocks (row0, row1, red0, red1) of at most `block` rows each, covering
// [0, nx): the blocks of KeOps's ranges (sorted, disjoint, checked by the caller) and the gaps between them
// (empty lists: their rows get the finalized empty accumulator).
inline std::vector<long long> sparse_blocks(const std::vector<std::int64_t>& ranges,
                                            const std::vector<std::int64_t>& slices, std::int64_t nx, int block) {
  std::vector<long long> out;
  auto add = [&](long long r0, long long r1, long long s0, long long s1) {
    for (long long r = r0; r < r1; r += block) out.insert(out.end(), {r, std::min<long long>(r + block, r1), s0, s1});
  };
  long long covered = 0;
  for (std::size_t k = 0; k < slices.size(); ++k) {
    add(covered, ranges[2 * k], 0, 0);
    add(ranges[2 * k], ranges[2 * k + 1], k == 0 ? 0 : slices[k - 1], slices[k]);
    covered = std::max<long long>(covered, ranges[2 * k + 1]);
  }
  add(covered, nx, 0, 0);
  return out;
}

inline kmr_cuda_params plan_params(const LaunchShape& s, const LaunchPlan& p) {
  kmr_cuda_params prm{};
  prm.nx = s.nx;
  prm.nbatch = s.nbatch > 1 ? s.nbatch : 1;
  prm.ny = s.ny;
  prm.k = s.k;
  prm.j_per_chunk = p.j_per_chunk;
  prm.tile_rows = static_cast<int>(p.tile_rows);
  prm.chunks = static_cast<int>(p.chunks);
  prm.use_partials = p.use_partials;
  prm.acc_in_partials = p.acc_in_partials;
  return prm;
}

}  // namespace cuda
}  // namespace kmr
