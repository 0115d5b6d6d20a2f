#include "kmr/runtime/genred.hpp"

#include <mutex>
#include <utility>

#include "../cpu/isa.hpp"
#include "../cpu/thread_pool.hpp"
#include "../cuda/kernels.hpp"
#include "../cuda/launch.hpp"
#include "kernel_spec.hpp"
#include "kmr/exec/kernel_abi.h"
#include "kmr/runtime/formula.hpp"
#include "kmr/runtime/jit.hpp"
#include "reduction_table.hpp"
#include "registry.hpp"

namespace kmr {

namespace {

std::string acc_type(const std::string& dtype_acc, DType dtype) {
  if (dtype_acc == "auto") return dtype == DType::Float32 ? "float" : "double";
  if (dtype_acc == "float32" || dtype_acc == "float") return "float";
  return "double";
}

void check_options(const GenredOptions& o) {
  const std::string& a = o.dtype_acc;
  if (a != "auto" && a != "float32" && a != "float" && a != "float64" && a != "double")
    throw Error(ErrorKind::Value, "kmr: dtype_acc must be 'auto', 'float32' or 'float64', got '" + a + "'");
  const std::string& s = o.sum_scheme;
  if (s != "auto" && s != "block" && s != "direct" && s != "kahan" && s != "block_sum" && s != "direct_sum" &&
      s != "kahan_scheme")
    throw Error(ErrorKind::Value, "kmr: sum_scheme must be 'auto', 'block', 'direct' or 'kahan', got '" + s + "'");
}

// The kernel's side of RunOptions: the ranges triple of its rows (by axis), batch strides in canonical order.
struct KernelRun {
  std::int64_t nbatch = 1;
  std::vector<std::int64_t> strides;  // canonical order; empty when nbatch == 1
  std::int64_t nranges = 0;
  const std::int64_t* ranges = nullptr;
  const std::int64_t* slices = nullptr;
  const std::int64_t* redranges = nullptr;
};

// Checks one triple of KeOps's ranges against `rows` output rows and `reduced` reduced rows.
void check_ranges(const std::string& what, const std::string& rn, const std::string& sn, const std::string& redn,
                  const std::int64_t* ranges, const std::int64_t* slices, const std::int64_t* red, std::int64_t nranges,
                  std::int64_t nred, std::int64_t rows, std::int64_t reduced) {
  auto fail = [&](const std::string& m) { throw Error(ErrorKind::Value, "kmr: ranges of " + what + ": " + m); };
  if (nranges < 0 || nred < 0) fail("negative sizes");
  if ((nranges > 0 && (!ranges || !slices)) || (nred > 0 && !red)) fail("null pointer");
  std::int64_t prev_end = 0, prev_slice = 0;
  for (std::int64_t k = 0; k < nranges; ++k) {
    const std::int64_t a = ranges[2 * k], b = ranges[2 * k + 1], sl = slices[k];
    const std::string at = rn + "[" + std::to_string(k) + "] = [" + std::to_string(a) + ", " + std::to_string(b) + ")";
    if (a < 0 || b < a || b > rows) fail(at + " is not a range of [0, " + std::to_string(rows) + ") (the output rows)");
    if (a < prev_end)
      fail(at + " starts before the end of the previous block (" + std::to_string(prev_end) +
           "): blocks must be sorted and disjoint");
    if (sl < prev_slice || sl > nred)
      fail(sn + "[" + std::to_string(k) + "] = " + std::to_string(sl) + " must be non-decreasing and at most " +
           std::to_string(nred) + " (the rows of " + redn + ")");
    prev_end = b;
    prev_slice = sl;
  }
  for (std::int64_t l = 0; l < nred; ++l) {
    const std::int64_t a = red[2 * l], b = red[2 * l + 1];
    if (a < 0 || b < a || b > reduced)
      fail(redn + "[" + std::to_string(l) + "] = [" + std::to_string(a) + ", " + std::to_string(b) +
           ") is not a range of [0, " + std::to_string(reduced) + ") (the reduced rows)");
  }
}

// Bytes of the arrays a row's evaluation keeps on the stack, bounded from above: every node holds its
// operands' values (a pack of the widest SIMD, 64 bytes, per coordinate); a gradient expands its formula
// a few times over; the driver holds its rows' i-variables (4 rows), the j-variables and F's value.
double stack_estimate(const Expr& e) {
  double s = double(e.dim);
  for (const auto& a : e.args) s += double(a->dim) + stack_estimate(*a);
  return e.op == "Grad" ? 6 * s : s;
}
double stack_bytes(const ParsedFormula& f) {
  double in_i = 0, in_j = 0;
  for (const VarInfo& v : f.vars) (v.cat == 0 ? in_i : v.cat == 1 ? in_j : in_i) += v.dim;
  return 64.0 * (4 * in_i + in_j + 4 * f.dim + stack_estimate(*f.root));
}
// Below this, pool threads (8 MB of stack at least) run the kernel as they are: the fast path.
constexpr double kPoolStack = 1 << 20;
// Above this, the formula is refused at construction (per thread, even if only reserved).
constexpr double kMaxStack = 16.0 * (1ULL << 30);

}  // namespace

struct Genred::Impl {
  ParsedFormula formula;  // the evaluated formula, i/j swapped when axis == 0
  const ReductionInfo* red = nullptr;
  std::string red_cpp;
  std::string dtype_acc;
  int scheme = 1;
  int axis = 1;
  long long k = 0;
  int out_dim = 0;
  int out_idx_dim = 0;
  std::vector<ArgInfo> args;
  std::string description;
  std::size_t big_stack = 0;  // > 0: run on threads with this much stack (see stack_bytes)
  mutable std::mutex mutex;
  mutable kmr_kernel_fn kernels[2] = {nullptr, nullptr};
  mutable std::string module_path[2];

  bool check_call(const void* const* args, std::size_t nargs, std::int64_t nx, std::int64_t ny, const void* out,
                  const std::int64_t* out_idx, int nvals, int nidx, std::vector<const void*>* canonical,
                  bool whole_axis = true) const;
  KernelRun kernel_run(const RunOptions& o, std::size_t nargs, std::int64_t nx, std::int64_t ny) const;
  cuda::LaunchRequest cuda_request(DType dtype, std::vector<const void*> canonical, std::int64_t nx, std::int64_t ny,
                                   void* out, std::int64_t* out_idx, int device, const KernelRun& kr) const;
  void run_kernel(DType dtype, kmr_kernel_call& call) const {
    call.abi_version = KMR_KERNEL_ABI_VERSION;
    call.k = k;
    call.parallel_for = &cpu::parallel_for;
    call.pool = cpu::default_pool();
    call.num_threads = cpu::num_threads();
    const kmr_kernel_fn fn = kernel(dtype);
    int rc = 0;
    if (big_stack == 0) {
      rc = fn(&call);
    } else {  // large dimensions: every thread that evaluates rows gets the stack they need
      cpu::BigStack cfg{big_stack, cpu::num_threads()};
      call.parallel_for = &cpu::big_stack_parallel_for;
      call.pool = &cfg;
      struct Ctx {
        kmr_kernel_fn fn;
        kmr_kernel_call* call;
        int rc;
      } ctx{fn, &call, 0};
      cpu::run_with_stack(
          big_stack, [](void* p) { static_cast<Ctx*>(p)->rc = static_cast<Ctx*>(p)->fn(static_cast<Ctx*>(p)->call); },
          &ctx);
      rc = ctx.rc;
    }
    if (rc == KMR_KERNEL_INTERRUPTED) throw Error(ErrorKind::Interrupted, "kmr: interrupted: " + description);
    if (rc != 0) throw Error(ErrorKind::Runtime, "kmr: kernel failed for " + description);
  }
  // (acc_dim, idx_dim) of the state, asked of the kernel's own templates (KMR_MODE_DIMS): the reductions
  // in include/kmr/reduction are the only place that knows a state's layout.
  std::pair<int, int> state_dims(DType dtype) const {
    std::int64_t d[5] = {0, 0, 0, 0, 0};  // acc_dim, idx_dim, out_dim, out_idx_dim, sizeof(accumulator)
    kmr_kernel_call call{};
    call.mode = KMR_MODE_DIMS;
    call.out_idx = d;
    run_kernel(dtype, call);
    return {int(d[0]), int(d[1])};
  }
  void merge(DType dtype, int mode, std::int64_t rows, const std::vector<const void*>& accs,
             const std::vector<const std::int64_t*>& idxs, void* out, std::int64_t* out_idx) const;

  KernelSpec spec(DType dtype) const {
    KernelSpec s;
    s.formula_key = formula.key;
    s.formula_cpp = to_cpp_type(formula.root);
    s.reduction = red_cpp;
    s.dtype = dtype == DType::Float32 ? "float" : "double";
    s.acc = acc_type(dtype_acc, dtype);
    s.scheme = scheme;
    return s;
  }

  // The mutex is not held across the compile: the JIT already builds each module once for all the threads
  // that ask for it, and a thread that fork()s while another compiles leaves a child that must not find
  // this routine locked by a thread it does not have.
  kmr_kernel_fn kernel(DType dtype) const {
    const int slot = dtype == DType::Float32 ? 0 : 1;
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (kernels[slot]) return kernels[slot];
    }
    const KernelSpec s = spec(dtype);
    kmr_kernel_fn fn = find_precompiled(s.registry_key());
    const char* where = "precompiled";
    if (!fn) {
      jit::CompileRequest req;
      req.source = kernel_source(s, "kmr_kernel_run");
      req.key_text = "cpu|abi" + std::to_string(KMR_KERNEL_ABI_VERSION) + "|" + s.registry_key();
      req.description = description + " [" + s.dtype + "]";
      fn = reinterpret_cast<kmr_kernel_fn>(jit::get_symbol(req, "kmr_kernel_run"));
      where = "jit";
    }
    std::lock_guard<std::mutex> lock(mutex);
    if (!kernels[slot]) {  // (another thread may have stored the same module's symbol meanwhile)
      kernels[slot] = fn;
      module_path[slot] = where;
    }
    return kernels[slot];
  }
};

Genred::Genred(const std::string& formula, const std::vector<std::string>& aliases, const std::string& reduction,
               int axis, const GenredOptions& options)
    : impl_(new Impl) {
  Impl& g = *impl_;
  if (axis != 0 && axis != 1)
    throw Error(ErrorKind::Value,
                "kmr: axis must be 0 (reduce over i) or 1 (reduce over j), got " + std::to_string(axis));
  check_options(options);
  g.red = &find_reduction(reduction);
  g.axis = axis;
  g.dtype_acc = options.dtype_acc;
  g.description = "'" + formula + "' (" + reduction + ", axis=" + std::to_string(axis) + ")";

  // Parse each formula alone first, so that error positions refer to the user's text.
  const ParsedFormula f1 = parse_formula(formula, aliases, false);
  int dim2 = 0;
  std::string evaluated = formula;
  if (!options.formula2.empty()) {
    if (!g.red->weighted) throw Error(ErrorKind::Value, "kmr: reduction '" + reduction + "' takes no formula2");
    dim2 = parse_formula(options.formula2, aliases, false).dim;
    evaluated = "Concat(" + formula + "," + options.formula2 + ")";
  } else if (g.red->weighted && !g.red->weights_optional) {
    throw Error(ErrorKind::Value, "kmr: reduction '" + reduction + "' needs formula2 (the weights)");
  }
  // LogSumExp / SumSoftMaxWeight of F of dim D > 1: coordinate by coordinate; the weights (formula2) of
  // a vector F must have its dim (a scalar F keeps weights of any dim).
  const bool per_coordinate = g.red->per_coordinate && f1.dim > 1;
  if (per_coordinate && dim2 > 0 && dim2 != f1.dim)
    throw Error(ErrorKind::Value, "kmr: reduction '" + reduction +
                                      "' of a vector formula works coordinate by coordinate and needs formula2 of "
                                      "the same dim: '" +
                                      formula + "' has dim " + std::to_string(f1.dim) + ", formula2 '" +
                                      options.formula2 + "' has dim " + std::to_string(dim2) +
                                      " (a scalar formula weights every coordinate)");
  for (const VarInfo& v : f1.user_args) g.args.push_back({v.cat, v.dim});
  if (dim2 > 0) {  // formula2 may use arguments that formula does not
    const ParsedFormula both = parse_formula(evaluated, aliases, false);
    g.args.clear();
    for (const VarInfo& v : both.user_args) g.args.push_back({v.cat, v.dim});
  }
  g.formula = parse_formula(evaluated, aliases, axis == 0);

  g.red_cpp = g.red->cpp;
  if (dim2 > 0 && std::string(g.red->name) == "LogSumExp")
    g.red_cpp = per_coordinate ? "LogSumExpWeightVecReduction" : "LogSumExpWeightReduction";
  if (per_coordinate && std::string(g.red->name) == "SumSoftMaxWeight") g.red_cpp = "SumSoftMaxWeightVecReduction";
  const std::string& s = options.sum_scheme;
  if (s == "kahan" || s == "kahan_scheme") {
    if (std::string(g.red->name) != "Sum")
      throw Error(ErrorKind::Value, "kmr: sum_scheme='kahan' applies to the Sum reduction only");
    g.red_cpp = "SumKahanReduction";
    g.scheme = 0;
  } else if (s == "direct" || s == "direct_sum") {
    g.scheme = 0;
  }
  if (g.red->needs_k) {
    if (options.opt_arg < 1)
      throw Error(ErrorKind::Value,
                  "kmr: reduction '" + reduction + "' needs opt_arg K >= 1, got " + std::to_string(options.opt_arg));
    g.k = options.opt_arg;
  }
  // Resource limits, checked here so that no call can overrun them (issue 10, section 5).
  if (g.formula.vars.size() > 64)
    throw Error(ErrorKind::Value, "kmr: " + g.description + " has " + std::to_string(g.formula.vars.size()) +
                                      " variables; at most 64 are supported");
  const long long out_dim = (long long)(g.k > 0 ? g.k : 1) * ((long long)f1.dim + dim2) + 2 * (g.k > 0 ? g.k : 1);
  if (out_dim > (1LL << 30))
    throw Error(ErrorKind::Value, "kmr: the output of " + g.description + " would have " + std::to_string(out_dim) +
                                      " values per row (K x dim); at most 2^30 are supported");
  g.out_dim = g.red->out_dim(f1.dim, dim2, g.k);
  g.out_idx_dim = g.red->out_idx_dim(f1.dim, dim2, g.k);
  const double need = stack_bytes(g.formula);
  if (need > kMaxStack)
    throw Error(ErrorKind::Value, "kmr: " + g.description + " has too large dimensions: a row needs about " +
                                      std::to_string((long long)(need / (1 << 20))) +
                                      " MB of scratch memory (the limit is 16 GB)");
  if (need > kPoolStack) g.big_stack = std::size_t(2 * need) + (std::size_t(8) << 20);
}

Genred::~Genred() = default;
Genred::Genred(Genred&&) noexcept = default;
Genred& Genred::operator=(Genred&&) noexcept = default;

int Genred::out_dim() const { return impl_->out_dim; }
int Genred::out_idx_dim() const { return impl_->out_idx_dim; }
int Genred::axis() const { return impl_->axis; }
const std::vector<ArgInfo>& Genred::args() const { return impl_->args; }
const std::string& Genred::key() const { return impl_->formula.key; }

bool Genred::is_precompiled(DType dtype) const {
  return find_precompiled(impl_->spec(dtype).registry_key()) != nullptr;
}

std::string Genred::prepare(DType dtype) const {
  impl_->kernel(dtype);
  return impl_->module_path[dtype == DType::Float32 ? 0 : 1];
}

// Checks a call and returns its arguments in canonical order; false when there is no output row.
// nvals / nidx: values and indices per output row that out / out_idx receive. whole_axis: false for
// a chunk of the reduced axis (partial states), which may hold fewer than K rows.
bool Genred::Impl::check_call(const void* const* args, std::size_t nargs, std::int64_t nx, std::int64_t ny,
                              const void* out, const std::int64_t* out_idx, int nvals, int nidx,
                              std::vector<const void*>* canonical, bool whole_axis) const {
  if (nargs != this->args.size())
    throw Error(ErrorKind::Value, "kmr: " + description + " expects " + std::to_string(this->args.size()) +
                                      " arguments, got " + std::to_string(nargs));
  if (nx < 0 || ny < 0) throw Error(ErrorKind::Value, "kmr: negative sizes nx/ny");
  // The kernel reduces over its j: for axis 0 that is the user's i.
  const std::int64_t rows = axis == 1 ? nx : ny;
  const std::int64_t reduced = axis == 1 ? ny : nx;
  if (whole_axis && red->needs_k && k > reduced)
    throw Error(ErrorKind::Value, "kmr: K = " + std::to_string(k) + " is larger than the number of reduced points (" +
                                      std::to_string(reduced) + ") in " + description);
  if (rows == 0) return false;
  if (!out && nvals > 0) throw Error(ErrorKind::Value, "kmr: null output pointer");
  if (!out_idx && nidx > 0)
    throw Error(ErrorKind::Value, "kmr: " + description + " writes int64 indices: pass an index output (out_idx, " +
                                      std::to_string(nidx) + " per row)");
  for (std::size_t a = 0; a < nargs; ++a) {
    const std::int64_t n = this->args[a].cat == 0 ? nx : this->args[a].cat == 1 ? ny : 1;
    if (n > 0 && !args[a]) throw Error(ErrorKind::Value, "kmr: argument " + std::to_string(a) + " is a null pointer");
  }
  canonical->resize(formula.user_pos.size());
  for (std::size_t p = 0; p < canonical->size(); ++p) (*canonical)[p] = args[formula.user_pos[p]];
  return true;
}

KernelRun Genred::Impl::kernel_run(const RunOptions& o, std::size_t nargs, std::int64_t nx, std::int64_t ny) const {
  KernelRun kr;
  if (o.nbatch < 1) throw Error(ErrorKind::Value, "kmr: nbatch must be >= 1, got " + std::to_string(o.nbatch));
  kr.nbatch = o.nbatch;
  if (o.nbatch > 1) {
    if (o.batch_strides.size() != nargs)
      throw Error(ErrorKind::Value, "kmr: " + description + ": " + std::to_string(o.batch_strides.size()) +
                                        " batch strides for " + std::to_string(nargs) + " arguments");
    for (std::int64_t st : o.batch_strides)
      if (st < 0) throw Error(ErrorKind::Value, "kmr: negative batch stride in " + description);
    kr.strides.resize(formula.user_pos.size());
    for (std::size_t p = 0; p < kr.strides.size(); ++p) kr.strides[p] = o.batch_strides[formula.user_pos[p]];
  }
  if (o.ranges) {
    if (o.nbatch > 1)
      throw Error(ErrorKind::Value,
                  "kmr: " + description + ": block-sparse ranges are not supported with batch dimensions (as KeOps)");
    const BlockRanges& r = *o.ranges;
    const std::int64_t rows = axis == 1 ? nx : ny, reduced = axis == 1 ? ny : nx;
    if (axis == 1) {
      check_ranges(description, "ranges_i", "slices_i", "redranges_j", r.ranges_i, r.slices_i, r.redranges_j,
                   r.nranges_i, r.nredranges_j, rows, reduced);
      kr.nranges = r.nranges_i;
      kr.ranges = r.ranges_i;
      kr.slices = r.slices_i;
      kr.redranges = r.redranges_j;
    } else {
      check_ranges(description, "ranges_j", "slices_j", "redranges_i", r.ranges_j, r.slices_j, r.redranges_i,
                   r.nranges_j, r.nredranges_i, rows, reduced);
      kr.nranges = r.nranges_j;
      kr.ranges = r.ranges_j;
      kr.slices = r.slices_j;
      kr.redranges = r.redranges_i;
    }
    // An empty list of blocks is a valid pattern (every row empty): the driver reads nranges = 0 as dense.
    if (kr.nranges == 0) {
      static const std::int64_t none[2] = {0, 0}, zero[1] = {0};
      kr.nranges = 1;
      kr.ranges = none;
      kr.slices = zero;
    }
  }
  return kr;
}

void Genred::run(DType dtype, const void* const* args, std::size_t nargs, std::int64_t nx, std::int64_t ny, void* out,
                 std::int64_t* out_idx) const {
  run(dtype, args, nargs, nx, ny, out, RunOptions{}, out_idx);
}

void Genred::run(DType dtype, const void* const* args, std::size_t nargs, std::int64_t nx, std::int64_t ny, void* out,
                 const RunOptions& options, std::int64_t* out_idx) const {
  const Impl& g = *impl_;
  std::vector<const void*> canonical;
  if (!g.check_call(args, nargs, nx, ny, out, out_idx, g.out_dim, g.out_idx_dim, &canonical)) return;
  const KernelRun kr = g.kernel_run(options, nargs, nx, ny);
  kmr_kernel_call call{};
  call.nx = g.axis == 1 ? nx : ny;
  call.ny = g.axis == 1 ? ny : nx;
  call.args = canonical.data();
  call.out = out;
  call.out_idx = out_idx;
  call.mode = KMR_MODE_FINAL;
  call.nbatch = kr.nbatch;
  call.batch_stride = kr.strides.empty() ? nullptr : kr.strides.data();
  call.nranges = kr.nranges;
  call.ranges = kr.ranges;
  call.slices = kr.slices;
  call.redranges = kr.redranges;
  call.interrupt = options.interrupt;
  g.run_kernel(dtype, call);
}

Genred::StateLayout Genred::state_layout(DType dtype) const {
  const Impl& g = *impl_;
  const auto d = g.state_dims(dtype);
  return {d.first, d.second, acc_type(g.dtype_acc, dtype) == "float" ? DType::Float32 : DType::Float64};
}

void Genred::run_state(DType dtype, const void* const* args, std::size_t nargs, std::int64_t nx, std::int64_t ny,
                       void* acc, std::int64_t* idx, std::int64_t offset, const volatile int* interrupt) const {
  const Impl& g = *impl_;
  const StateLayout l = state_layout(dtype);
  if (offset < 0) throw Error(ErrorKind::Value, "kmr: the index offset of a partial state must be >= 0");
  std::vector<const void*> canonical;
  if (!g.check_call(args, nargs, nx, ny, acc, idx, l.acc_dim, l.idx_dim, &canonical, false)) return;
  kmr_kernel_call call{};
  call.nx = g.axis == 1 ? nx : ny;
  call.ny = g.axis == 1 ? ny : nx;
  call.args = canonical.data();
  call.out = acc;
  call.out_idx = idx;
  call.idx_offset = offset;
  call.mode = KMR_MODE_STATE;
  call.interrupt = interrupt;
  g.run_kernel(dtype, call);
}

// The merge entry is the kernel module's own (KMR_MODE_MERGE*): it holds Red<TA, DIMF> for this
// formula's dim, which libkmr alone could not instantiate for every dim.
void Genred::Impl::merge(DType dtype, int mode, std::int64_t rows, const std::vector<const void*>& accs,
                         const std::vector<const std::int64_t*>& idxs, void* out, std::int64_t* out_idx) const {
  const auto d = state_dims(dtype);
  if (rows < 0) throw Error(ErrorKind::Value, "kmr: negative number of rows");
  if (accs.empty()) throw Error(ErrorKind::Value, "kmr: no partial state to merge");
  if (idxs.size() != accs.size() && !(d.second == 0 && idxs.empty()))
    throw Error(ErrorKind::Value, "kmr: " + std::to_string(accs.size()) + " accumulator arrays but " +
                                      std::to_string(idxs.size()) + " index arrays");
  const bool final = mode == KMR_MODE_MERGE_FINAL;
  const int nvals = final ? out_dim : d.first, nidx = final ? out_idx_dim : d.second;
  if (rows == 0) return;
  for (std::size_t s = 0; s < accs.size(); ++s)
    if ((d.first > 0 && !accs[s]) || (d.second > 0 && !idxs[s]))
      throw Error(ErrorKind::Value, "kmr: partial state " + std::to_string(s) + " has a null pointer");
  if ((nvals > 0 && !out) || (nidx > 0 && !out_idx)) throw Error(ErrorKind::Value, "kmr: null output pointer");
  kmr_kernel_call call{};
  call.nx = rows;
  call.out = out;
  call.out_idx = out_idx;
  call.mode = mode;
  call.nstates = static_cast<std::int64_t>(accs.size());
  call.state_acc = accs.data();
  call.state_idx = idxs.empty() ? nullptr : idxs.data();
  run_kernel(dtype, call);
}

void Genred::merge_states(DType dtype, std::int64_t rows, const std::vector<const void*>& accs,
                          const std::vector<const std::int64_t*>& idxs, void* acc_out, std::int64_t* idx_out) const {
  impl_->merge(dtype, KMR_MODE_MERGE, rows, accs, idxs, acc_out, idx_out);
}

void Genred::finalize_states(DType dtype, std::int64_t rows, const std::vector<const void*>& accs,
                             const std::vector<const std::int64_t*>& idxs, void* out, std::int64_t* out_idx) const {
  impl_->merge(dtype, KMR_MODE_MERGE_FINAL, rows, accs, idxs, out, out_idx);
}

cuda::LaunchRequest Genred::Impl::cuda_request(DType dtype, std::vector<const void*> canonical, std::int64_t nx,
                                               std::int64_t ny, void* out, std::int64_t* out_idx, int device,
                                               const KernelRun& kr) const {
  cuda::LaunchRequest r;
  r.spec = spec(dtype);
  r.what = description + " [" + r.spec.dtype + "]";
  r.dimf = formula.dim;
  for (const VarInfo& v : formula.vars)
    if (v.cat == 1) r.dj += v.dim;
  r.runtime_k = red->needs_k;
  r.k = k;
  r.nx = axis == 1 ? nx : ny;  // kernel rows: the swap of axis 0 is in the formula
  r.ny = axis == 1 ? ny : nx;
  const std::size_t tb = dtype == DType::Float32 ? 4 : 8;
  for (std::size_t p = 0; p < canonical.size(); ++p) {
    const VarInfo& v = formula.vars[p];
    const std::int64_t n = v.cat == 0 ? r.nx : v.cat == 1 ? r.ny : 1;
    r.bytes.push_back(std::size_t(n) * std::size_t(v.dim) * tb);
  }
  r.nbatch = kr.nbatch;
  r.batch_strides = kr.strides;
  for (std::size_t p = 0; p < r.batch_strides.size(); ++p)  // the host-copy path copies every batch
    if (r.batch_strides[p] > 0) r.bytes[p] = std::size_t(kr.nbatch) * std::size_t(r.batch_strides[p]) * tb;
  if (kr.nranges > 0) {
    r.ranges.assign(kr.ranges, kr.ranges + 2 * kr.nranges);
    r.slices.assign(kr.slices, kr.slices + kr.nranges);
    const std::int64_t nred = kr.slices[kr.nranges - 1];
    r.redranges.assign(kr.redranges, kr.redranges + 2 * nred);
  }
  r.args = std::move(canonical);
  r.out = out;
  r.out_dim = out_dim;
  r.out_idx = out_idx;
  r.out_idx_dim = out_idx_dim;
  r.device = device;
  return r;
}

void Genred::run_cuda(DType dtype, const void* const* args, std::size_t nargs, std::int64_t nx, std::int64_t ny,
                      void* out, int device, void* stream, std::int64_t* out_idx) const {
  run_cuda(dtype, args, nargs, nx, ny, out, device, stream, RunOptions{}, out_idx);
}

void Genred::run_cuda(DType dtype, const void* const* args, std::size_t nargs, std::int64_t nx, std::int64_t ny,
                      void* out, int device, void* stream, const RunOptions& options, std::int64_t* out_idx) const {
  const Impl& g = *impl_;
  std::vector<const void*> canonical;
  if (!g.check_call(args, nargs, nx, ny, out, out_idx, g.out_dim, g.out_idx_dim, &canonical)) return;
  const KernelRun kr = g.kernel_run(options, nargs, nx, ny);
  cuda::LaunchRequest r = g.cuda_request(dtype, std::move(canonical), nx, ny, out, out_idx, device, kr);
  r.stream = stream;
  cuda::launch(r);
}

void Genred::run_cuda_host(DType dtype, const void* const* args, std::size_t nargs, std::int64_t nx, std::int64_t ny,
                           void* out, int device, std::int64_t* out_idx) const {
  run_cuda_host(dtype, args, nargs, nx, ny, out, device, RunOptions{}, out_idx);
}

void Genred::run_cuda_host(DType dtype, const void* const* args, std::size_t nargs, std::int64_t nx, std::int64_t ny,
                           void* out, int device, const RunOptions& options, std::int64_t* out_idx) const {
  const Impl& g = *impl_;
  std::vector<const void*> canonical;
  if (!g.check_call(args, nargs, nx, ny, out, out_idx, g.out_dim, g.out_idx_dim, &canonical)) return;
  const KernelRun kr = g.kernel_run(options, nargs, nx, ny);
  cuda::launch_host(g.cuda_request(dtype, std::move(canonical), nx, ny, out, out_idx, device, kr));
}

std::string Genred::prepare_cuda(DType dtype, int arch, bool force_nvrtc) const {
  const KernelSpec s = impl_->spec(dtype);
  if (!force_nvrtc && cuda::aot_has(s)) return "precompiled";
  return cuda::compile_for_arch(s, arch, impl_->description + " [" + s.dtype + "]");
}

bool Genred::is_precompiled_cuda(DType dtype) const { return cuda::aot_has(impl_->spec(dtype)); }

const char* version() { return KMR_VERSION; }
const char* cpu_isa() { return cpu::isa_level_name(cpu::isa_level()); }
int num_threads() { return cpu::num_threads(); }
void set_num_threads(int n) { cpu::set_num_threads(n); }

}  // namespace kmr
