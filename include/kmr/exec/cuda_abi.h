/* The parameters of a CUDA map-reduce kernel, shared by libkmr (host) and the
   kernels (nvcc AOT and NVRTC). Plain C with built-in types only: NVRTC sees it
   without any system header. Passed by value as the only kernel argument.

   Each compiled kernel spec gives two extern "C" __global__ functions:
     <name>        the map-reduce: grid (ceil(nx / blockDim.x), chunks, nbatch), or
                   (number of row blocks, 1, 1) with block-sparse ranges
     <name>_merge  merges the chunk partials of each row and finalizes them:
                   grid ceil(nbatch * nx / blockDim.x), run only when partials are used */
#ifndef KMR_EXEC_CUDA_ABI_H
#define KMR_EXEC_CUDA_ABI_H

#define KMR_CUDA_ABI_VERSION 2
#define KMR_CUDA_MAX_ARGS 64      /* = VarTable::MAX_VARS */
#define KMR_CUDA_MAX_BLOCK 256    /* threads per block the kernels are built for */
#define KMR_CUDA_KMIN_LOCAL 32    /* KMin-like reductions keep K <= this per thread; above, in partials */
/* Values of type T per j row of the shared-memory tile: the j-variables' total
   dim rounded up to 16 bytes (vector loads). */
#define KMR_CUDA_TILE_STRIDE(dj, sizeof_t) \
  ((dj) == 0 ? 0 : ((dj) + (16 / (sizeof_t)) - 1) / (16 / (sizeof_t)) * (16 / (sizeof_t)))

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kmr_cuda_params {
  const void* args[KMR_CUDA_MAX_ARGS]; /* canonical order, device pointers, row-major */
  void* out;                           /* [nx, out_dim] */
  void* part_acc;                      /* [chunks][nx][acc_dim] accumulators (TA), or null */
  long long* part_idx;                 /* [chunks][nx][idx_dim] indices, or null */
  long long nx;                        /* rows of the output (i) */
  long long ny;                        /* rows reduced over (j) */
  long long k;                         /* K of KMin-like reductions, else 0 */
  long long j_per_chunk;               /* j rows per blockIdx.y (a multiple of tile_rows) */
  int tile_rows;                       /* j rows staged in shared memory at once (<= blockDim.x) */
  int chunks;                          /* gridDim.y of the map-reduce */
  int use_partials;                    /* 1: accumulators go to part_*, the merge kernel finalizes */
  int acc_in_partials;                 /* 1: accumulate in part_* directly (KMin with K > KMR_CUDA_KMIN_LOCAL) */
  /* Since ABI 2. Batches: blockIdx.z; out and the partials are [nbatch][nx] rows. */
  long long nbatch;                    /* >= 1 */
  long long batch_stride[KMR_CUDA_MAX_ARGS]; /* values from one batch to the next per arg (0: shared) */
  /* Block-sparse ranges (one batch, one chunk): block x covers rows [blocks[4x], blocks[4x+1]) (at most
     blockDim.x) and reduces over the j intervals redranges[2s..2s+1] for s in [blocks[4x+2], blocks[4x+3]).
     The blocks cover every row (rows of no range: an empty list). Device memory; null: dense. */
  const long long* blocks;
  const long long* redranges;
} kmr_cuda_params;

#ifdef __cplusplus
}
#endif

#endif
