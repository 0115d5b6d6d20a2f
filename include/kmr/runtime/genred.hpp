// The C++ string API: a generic map-reduction built from a formula string.
//
//   kmr::Genred conv("Exp(-G*SqDist(X,Y))*B", {"G = Pm(1)", "X = Vi(3)", "Y = Vj(3)", "B = Vj(2)"}, "Sum", 1);
//   conv.run<float>({&g, x, y, b}, nx, ny, out);   // out: [nx, 2]
//
// Common kernels run precompiled code; other formulas are compiled once by
// the host C++ compiler and cached on disk.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "error.hpp"

namespace kmr {

enum class DType { Float32, Float64 };

struct GenredOptions {
  long long opt_arg = 0;            // K of KMin / ArgKMin / KMin_ArgKMin
  std::string formula2;             // weights of LogSumExp / SumSoftMaxWeight
  std::string dtype_acc = "auto";   // "auto" (= the data type), "float32", "float64"
  std::string sum_scheme = "auto";  // "auto" (= "block"), "block", "direct", "kahan"
};

// KeOps's block-sparse ranges (host memory, int64, contiguous): for each block k of output rows
// ranges_i[k] = [start, end) (sorted, disjoint), the rows reduce over j in the union of the
// redranges_j[l] = [start, end) for l in [slices_i[k - 1], slices_i[k]) (slices_i[-1] = 0). The _j
// triple is the same for a reduction over i (axis = 0), with i and j swapped. Rows in no block get the
// reduction of nothing (Sum 0, Min +inf, LogSumExp -inf, Arg* -1...).
struct BlockRanges {
  const std::int64_t* ranges_i = nullptr;
  const std::int64_t* slices_i = nullptr;
  const std::int64_t* redranges_j = nullptr;
  std::int64_t nranges_i = 0, nredranges_j = 0;
  const std::int64_t* ranges_j = nullptr;
  const std::int64_t* slices_j = nullptr;
  const std::int64_t* redranges_i = nullptr;
  std::int64_t nranges_j = 0, nredranges_i = 0;
};

// Batch dimensions and block-sparse ranges of one run (the defaults: one batch, dense).
struct RunOptions {
  // Batches: the arguments hold nbatch consecutive problems; batch_strides[a] (one per user argument,
  // in values) is the distance between two of argument a's, 0 when it is shared by all (broadcast).
  // The output is [nbatch, rows, out_dim].
  std::int64_t nbatch = 1;
  std::vector<std::int64_t> batch_strides;
  const BlockRanges* ranges = nullptr;  // null: dense. Not with nbatch > 1 (as KeOps).
  // Cancellation (CPU): once *interrupt is nonzero (a signal handler may set it: sig_atomic_t is an int),
  // the run stops within one tile of work and throws Error(ErrorKind::Interrupted); the output is then
  // incomplete. Null: never.
  const volatile int* interrupt = nullptr;
};

struct ArgInfo {
  int cat;  // 0: indexed by i, 1: indexed by j, 2: parameter (as the user declared it)
  int dim;
};

class Genred {
 public:
  // axis = 1 reduces over j (output has one row per i), axis = 0 over i.
  Genred(const std::string& formula, const std::vector<std::string>& aliases, const std::string& reduction = "Sum",
         int axis = 1, const GenredOptions& options = {});
  ~Genred();
  Genred(Genred&&) noexcept;
  Genred& operator=(Genred&&) noexcept;

  int out_dim() const;      // values per output row (0 for ArgMin, ArgMax, ArgKMin)
  int out_idx_dim() const;  // int64 indices per output row (Arg*, *_Arg*), else 0
  int axis() const;
  const std::vector<ArgInfo>& args() const;  // one per user argument, in the user's order
  const std::string& key() const;            // canonical key of the evaluated formula
  bool is_precompiled(DType dtype) const;    // true when no compilation is needed

  // args[k] is the user's argument k (contiguous, row-major); i-variables have nx rows,
  // j-variables ny rows. out has (axis == 1 ? nx : ny) rows of out_dim() values, out_idx as many
  // rows of out_idx_dim() int64 indices (-1: none; needed, and only used, when out_idx_dim() > 0).
  void run(DType dtype, const void* const* args, std::size_t nargs, std::int64_t nx, std::int64_t ny, void* out,
           std::int64_t* out_idx = nullptr) const;

  // The same with batches and/or block-sparse ranges (RunOptions). Throws Error(Value) on malformed ranges.
  void run(DType dtype, const void* const* args, std::size_t nargs, std::int64_t nx, std::int64_t ny, void* out,
           const RunOptions& options, std::int64_t* out_idx = nullptr) const;

  template <class T>
  void run(const std::vector<const T*>& args, std::int64_t nx, std::int64_t ny, T* out,
           std::int64_t* out_idx = nullptr) const {
    static_assert(std::is_same<T, float>::value || std::is_same<T, double>::value, "float or double");
    std::vector<const void*> p(args.begin(), args.end());
    run(std::is_same<T, float>::value ? DType::Float32 : DType::Float64, p.data(), p.size(), nx, ny, out, out_idx);
  }

  // Partial states (the reductions' unfinalized accumulators, include/kmr/reduction): one row per
  // output row, acc_dim values of acc_dtype and idx_dim int64 indices, global indices.
  struct StateLayout {
    int acc_dim;
    int idx_dim;
    DType acc_dtype;  // dtype_acc of the options ("auto": the data type)
  };
  StateLayout state_layout(DType dtype) const;
  // Like run, but writes each row's state: acc [rows, acc_dim], idx [rows, idx_dim]. `offset` is
  // the global index of the first reduced row passed (j for axis 1, i for axis 0): it is added
  // to every index, so that states of different chunks merge with global indices.
  void run_state(DType dtype, const void* const* args, std::size_t nargs, std::int64_t nx, std::int64_t ny, void* acc,
                 std::int64_t* idx, std::int64_t offset = 0,
                 const volatile int* interrupt = nullptr) const;  // interrupt: as RunOptions's
  // Merges n states of `rows` rows each (accs[s]: [rows, acc_dim], idxs[s]: [rows, idx_dim], may be
  // null when idx_dim = 0) with the reduction's own merge, in order (ties: smaller global index).
  // merge_states writes the merged state; finalize_states writes the finalized output as run does.
  void merge_states(DType dtype, std::int64_t rows, const std::vector<const void*>& accs,
                    const std::vector<const std::int64_t*>& idxs, void* acc_out, std::int64_t* idx_out) const;
  void finalize_states(DType dtype, std::int64_t rows, const std::vector<const void*>& accs,
                       const std::vector<const std::int64_t*>& idxs, void* out, std::int64_t* out_idx) const;

  // Compiles (or finds) the kernel now; returns the path of the module or "precompiled".
  std::string prepare(DType dtype) const;

  // CUDA (kmr/runtime/cuda.hpp). args and out are device memory of GPU `device`,
  // the kernel is queued on `stream` (a CUstream of the device's primary context;
  // null: the default stream) and the call returns without waiting for it.
  // out_idx: device memory too, as in run.
  void run_cuda(DType dtype, const void* const* args, std::size_t nargs, std::int64_t nx, std::int64_t ny, void* out,
                int device, void* stream, std::int64_t* out_idx = nullptr) const;
  void run_cuda(DType dtype, const void* const* args, std::size_t nargs, std::int64_t nx, std::int64_t ny, void* out,
                int device, void* stream, const RunOptions& options, std::int64_t* out_idx = nullptr) const;
  // Same on host memory: copies the arguments to GPU `device`, runs, copies the output back.
  void run_cuda_host(DType dtype, const void* const* args, std::size_t nargs, std::int64_t nx, std::int64_t ny,
                     void* out, int device, std::int64_t* out_idx = nullptr) const;
  void run_cuda_host(DType dtype, const void* const* args, std::size_t nargs, std::int64_t nx, std::int64_t ny,
                     void* out, int device, const RunOptions& options, std::int64_t* out_idx = nullptr) const;
  // The CUDA kernel for compute capability `arch` (e.g. 90), without a GPU: "precompiled"
  // when the embedded fatbins hold it, else NVRTC compiles it into the cache (unless
  // `force_nvrtc` is false and it is precompiled) and the path of the cubin (or PTX) is returned.
  std::string prepare_cuda(DType dtype, int arch, bool force_nvrtc = false) const;
  bool is_precompiled_cuda(DType dtype) const;  // the embedded fatbins hold this kernel

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Threads used by CPU kernels (0 = default: KMR_NUM_THREADS, OMP_NUM_THREADS or all cores).
int num_threads();
void set_num_threads(int n);
// Version of libkmr (the project version of CMakeLists.txt).
const char* version();
// Instruction set the precompiled CPU kernels run with here: "baseline", "avx2" or "avx512".
const char* cpu_isa();
// Number of precompiled kernels in this build.
std::size_t num_precompiled();

}  // namespace kmr
