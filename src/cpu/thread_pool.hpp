// The process-wide thread pool of libkmr, handed to kernels through
// kmr_kernel_call::parallel_for / pool.
//
// Why std::thread and not OpenMP: libkmr owns the one pool; precompiled and
// JIT-compiled kernels only call back into it, so JIT modules link no OpenMP
// runtime, and pykmr does not load a second OpenMP next to torch's (libgomp
// vs libiomp clashes, oversubscription of two pools spinning at once).
#pragma once
#include <cstddef>
#include <cstdint>

namespace kmr {
namespace cpu {

// Threads used by parallel_for, the caller included: set_num_threads(n) if
// n > 0 was set, else KMR_NUM_THREADS, else OMP_NUM_THREADS, else the CPUs
// this process may run on.
int num_threads();
// n <= 0 goes back to the default. Takes effect at the next top-level parallel_for.
void set_num_threads(int n);

// The handle to pass as `pool` (stable for the life of the process, fork included).
void* default_pool();

// Runs task(ctx, t) for t in [0, ntasks) and returns when all are done
// (matches kmr_parallel_for_fn; pool may be null). The calling thread takes
// tasks too. A call from inside a task runs its tasks inline, serially.
// Several threads may call it at once. If a task throws, the remaining tasks
// are skipped and the first exception is rethrown here.
void parallel_for(void* pool, int64_t ntasks, void (*task)(void*, int64_t), void* ctx);

// Kernels whose rows need more stack than a pool thread has (formulas of large dimensions: their
// per-row arrays live on the stack, the fast path for small ones) run through these instead.
// run_with_stack runs fn on a new thread with `stack_bytes` of stack and waits for it (exceptions
// are rethrown here); big_stack_parallel_for, with pool = a BigStack*, runs the tasks on threads
// created with that stack size (the caller, itself such a thread, takes tasks too).
struct BigStack {
  std::size_t stack_bytes;
  int threads;
};
void run_with_stack(std::size_t stack_bytes, void (*fn)(void*), void* ctx);
void big_stack_parallel_for(void* pool, int64_t ntasks, void (*task)(void*, int64_t), void* ctx);

}  // namespace cpu
}  // namespace kmr
