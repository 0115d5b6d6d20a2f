/* C ABI between libkmr and compiled kernels (precompiled or JIT modules).
   Plain C so that a module built by another compiler can be loaded. */
#ifndef KMR_EXEC_KERNEL_ABI_H
#define KMR_EXEC_KERNEL_ABI_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KMR_KERNEL_ABI_VERSION 2

/* Runs task(ctx, t) for t in [0, ntasks), possibly on several threads; returns when all are done. */
typedef void (*kmr_parallel_for_fn)(void* pool, int64_t ntasks, void (*task)(void* ctx, int64_t t), void* ctx);

typedef struct kmr_kernel_call {
  int abi_version;            /* KMR_KERNEL_ABI_VERSION */
  int64_t nx;                 /* rows of the i-variables = rows of the output */
  int64_t ny;                 /* rows of the j-variables (reduced over) */
  int64_t k;                  /* option of KMin/ArgKMin/KMin_ArgKMin, else 0 */
  const void* const* args;    /* canonical order; i-vars [nx, dim], j-vars [ny, dim], params [dim], row-major */
  void* out;                  /* [nx, out_dim] */
  kmr_parallel_for_fn parallel_for;
  void* pool;
  int num_threads;            /* threads parallel_for may use (tiling hint) */
  /* Since ABI 2: batch dimensions and block-sparse ranges (all zero: one batch, dense). */
  int64_t nbatch;             /* batches (<= 1: none); out is then [nbatch, nx, out_dim] */
  const int64_t* batch_stride; /* per canonical arg: elements from one batch to the next (0: broadcast) */
  int64_t nranges;            /* blocks of output rows; 0: every row reduces over all of [0, ny) */
  const int64_t* ranges;      /* [nranges, 2] [start, end) of each block of rows, sorted, disjoint */
  const int64_t* slices;      /* [nranges] end of each block's list in redranges (the first starts at 0) */
  const int64_t* redranges;   /* [slices[nranges - 1], 2] [start, end) of the reduced rows; rows in no
                                 block get the finalized empty accumulator */
} kmr_kernel_call;

/* Returns 0 on success. */
typedef int (*kmr_kernel_fn)(const kmr_kernel_call* call);

#ifdef __cplusplus
}
#endif

#endif
