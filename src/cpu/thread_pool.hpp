// The process-wide thread pool of libkmr, handed to kernels through
// kmr_kernel_call::parallel_for / pool.
//
// Why std::thread and not OpenMP: libkmr owns the one pool; precompiled and
// JIT-compiled kernels only call back into it, so JIT modules link no OpenMP
// runtime, and pykmr does not load a second OpenMP next to torch's (libgomp
// vs libiomp clashes, oversubscription of two pools spinning at once).
#pragma once
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

}  // namespace cpu
}  // namespace kmr
