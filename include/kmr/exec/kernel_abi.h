/* C ABI between libkmr and compiled kernels (precompiled or JIT modules).
   Plain C so that a module built by another compiler can be loaded. */
#ifndef KMR_EXEC_KERNEL_ABI_H
#define KMR_EXEC_KERNEL_ABI_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KMR_KERNEL_ABI_VERSION 3

/* What a call computes (kmr_kernel_call::mode). */
#define KMR_MODE_FINAL 0       /* the finalized output: out [nx, out_dim] (T), out_idx [nx, out_idx_dim] */
#define KMR_MODE_STATE 1       /* the unfinalized accumulators: out [nx, acc_dim] (accumulator type), out_idx [nx, idx_dim] */
#define KMR_MODE_MERGE 2       /* merges nstates states in order (no formula evaluated), writes a state as STATE */
#define KMR_MODE_MERGE_FINAL 3 /* merges nstates states in order and writes the finalized output as FINAL */
#define KMR_MODE_DIMS 4        /* writes acc_dim, idx_dim, out_dim, out_idx_dim, sizeof(accumulator) to out_idx[0..4] */

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
  /* ABI 2: indices as int64 (never through T), partial states */
  int64_t* out_idx;                /* indices (Arg* reductions, -1: none), see mode; null when there are none */
  int64_t idx_offset;              /* added to every index written by FINAL and STATE (global index of j = 0) */
  int mode;                        /* KMR_MODE_* */
  int64_t nstates;                 /* MERGE*: number of input states (>= 1) */
  const void* const* state_acc;    /* MERGE*: nstates arrays [nx, acc_dim] of the accumulator type */
  const int64_t* const* state_idx; /* MERGE*: nstates arrays [nx, idx_dim] (may be null when idx_dim = 0) */
  /* ABI 3: a flag that a signal handler may set (sig_atomic_t, an int): once it is nonzero, the kernel
     stops within one tile of work and returns KMR_KERNEL_INTERRUPTED (null: never) */
  const volatile int* interrupt;
} kmr_kernel_call;

/* Return codes of a kernel. */
#define KMR_KERNEL_OK 0
#define KMR_KERNEL_BAD_CALL 1   /* null pointers, ABI version, negative sizes, bad k */
#define KMR_KERNEL_FAILED 2     /* out of memory or an exception inside a task */
#define KMR_KERNEL_INTERRUPTED 3 /* *interrupt became nonzero: the outputs are incomplete */

/* Returns KMR_KERNEL_OK (0) on success, else another KMR_KERNEL_* code. */
typedef int (*kmr_kernel_fn)(const kmr_kernel_call* call);

#ifdef __cplusplus
}
#endif

#endif
