#include "kmr/runtime/genred.hpp"

#include <mutex>

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
    throw Error(ErrorKind::Value,
                "kmr: sum_scheme must be 'auto', 'block', 'direct' or 'kahan', got '" + s + "'");
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
  std::vector<ArgInfo> args;
  std::string description;
  std::size_t big_stack = 0;  // > 0: run on threads with this much stack (see stack_bytes)
  mutable std::mutex mutex;
  mutable kmr_kernel_fn kernels[2] = {nullptr, nullptr};
  mutable std::string module_path[2];

  bool check_call(const void* const* args, std::size_t nargs, std::int64_t nx, std::int64_t ny, const void* out,
                  std::vector<const void*>* canonical) const;
  cuda::LaunchRequest cuda_request(DType dtype, std::vector<const void*> canonical, std::int64_t nx, std::int64_t ny,
                                   void* out, int device) const;

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

  kmr_kernel_fn kernel(DType dtype) const {
    const int slot = dtype == DType::Float32 ? 0 : 1;
    std::lock_guard<std::mutex> lock(mutex);
    if (kernels[slot]) return kernels[slot];
    const KernelSpec s = spec(dtype);
    kmr_kernel_fn fn = find_precompiled(s.registry_key());
    if (fn) {
      module_path[slot] = "precompiled";
    } else {
      jit::CompileRequest req;
      req.source = kernel_source(s, "kmr_kernel_run");
      req.key_text = "cpu|abi" + std::to_string(KMR_KERNEL_ABI_VERSION) + "|" + s.registry_key();
      req.description = description + " [" + s.dtype + "]";
      fn = reinterpret_cast<kmr_kernel_fn>(jit::get_symbol(req, "kmr_kernel_run"));
      module_path[slot] = "jit";
    }
    kernels[slot] = fn;
    return fn;
  }
};

Genred::Genred(const std::string& formula, const std::vector<std::string>& aliases, const std::string& reduction,
               int axis, const GenredOptions& options)
    : impl_(new Impl) {
  Impl& g = *impl_;
  if (axis != 0 && axis != 1)
    throw Error(ErrorKind::Value, "kmr: axis must be 0 (reduce over i) or 1 (reduce over j), got " +
                                      std::to_string(axis));
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
    if (!g.red->weighted)
      throw Error(ErrorKind::Value, "kmr: reduction '" + reduction + "' takes no formula2");
    dim2 = parse_formula(options.formula2, aliases, false).dim;
    evaluated = "Concat(" + formula + "," + options.formula2 + ")";
  } else if (g.red->weighted && !g.red->weights_optional) {
    throw Error(ErrorKind::Value, "kmr: reduction '" + reduction + "' needs formula2 (the weights)");
  }
  if (g.red->scalar_formula && f1.dim != 1)
    throw Error(ErrorKind::Value, "kmr: reduction '" + reduction + "' needs a scalar formula, '" + formula +
                                      "' has dim " + std::to_string(f1.dim));
  for (const VarInfo& v : f1.user_args) g.args.push_back({v.cat, v.dim});
  if (dim2 > 0) {  // formula2 may use arguments that formula does not
    const ParsedFormula both = parse_formula(evaluated, aliases, false);
    g.args.clear();
    for (const VarInfo& v : both.user_args) g.args.push_back({v.cat, v.dim});
  }
  g.formula = parse_formula(evaluated, aliases, axis == 0);

  g.red_cpp = g.red->cpp;
  if (dim2 > 0 && std::string(g.red->name) == "LogSumExp") g.red_cpp = "LogSumExpWeightReduction";
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
      throw Error(ErrorKind::Value, "kmr: reduction '" + reduction + "' needs opt_arg K >= 1, got " +
                                        std::to_string(options.opt_arg));
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
bool Genred::Impl::check_call(const void* const* args, std::size_t nargs, std::int64_t nx, std::int64_t ny,
                              const void* out, std::vector<const void*>* canonical) const {
  if (nargs != this->args.size())
    throw Error(ErrorKind::Value, "kmr: " + description + " expects " + std::to_string(this->args.size()) +
                                      " arguments, got " + std::to_string(nargs));
  if (nx < 0 || ny < 0) throw Error(ErrorKind::Value, "kmr: negative sizes nx/ny");
  // The kernel reduces over its j: for axis 0 that is the user's i.
  const std::int64_t rows = axis == 1 ? nx : ny;
  const std::int64_t reduced = axis == 1 ? ny : nx;
  if (red->needs_k && k > reduced)
    throw Error(ErrorKind::Value, "kmr: K = " + std::to_string(k) + " is larger than the number of reduced points (" +
                                      std::to_string(reduced) + ") in " + description);
  if (rows == 0) return false;
  if (!out) throw Error(ErrorKind::Value, "kmr: null output pointer");
  for (std::size_t a = 0; a < nargs; ++a) {
    const std::int64_t n = this->args[a].cat == 0 ? nx : this->args[a].cat == 1 ? ny : 1;
    if (n > 0 && !args[a])
      throw Error(ErrorKind::Value, "kmr: argument " + std::to_string(a) + " is a null pointer");
  }
  canonical->resize(formula.user_pos.size());
  for (std::size_t p = 0; p < canonical->size(); ++p) (*canonical)[p] = args[formula.user_pos[p]];
  return true;
}

void Genred::run(DType dtype, const void* const* args, std::size_t nargs, std::int64_t nx, std::int64_t ny,
                 void* out) const {
  const Impl& g = *impl_;
  std::vector<const void*> canonical;
  if (!g.check_call(args, nargs, nx, ny, out, &canonical)) return;

  kmr_kernel_call call{};
  call.abi_version = KMR_KERNEL_ABI_VERSION;
  call.nx = g.axis == 1 ? nx : ny;
  call.ny = g.axis == 1 ? ny : nx;
  call.k = g.k;
  call.args = canonical.data();
  call.out = out;
  call.parallel_for = &cpu::parallel_for;
  call.pool = cpu::default_pool();
  call.num_threads = cpu::num_threads();
  const kmr_kernel_fn fn = g.kernel(dtype);
  int rc = 0;
  if (g.big_stack == 0) {
    rc = fn(&call);
  } else {  // large dimensions: every thread that evaluates rows gets the stack they need
    cpu::BigStack cfg{g.big_stack, cpu::num_threads()};
    call.parallel_for = &cpu::big_stack_parallel_for;
    call.pool = &cfg;
    struct Ctx {
      kmr_kernel_fn fn;
      kmr_kernel_call* call;
      int rc;
    } ctx{fn, &call, 0};
    cpu::run_with_stack(
        g.big_stack, [](void* p) { static_cast<Ctx*>(p)->rc = static_cast<Ctx*>(p)->fn(static_cast<Ctx*>(p)->call); },
        &ctx);
    rc = ctx.rc;
  }
  if (rc != 0) throw Error(ErrorKind::Runtime, "kmr: kernel failed for " + g.description);
}

cuda::LaunchRequest Genred::Impl::cuda_request(DType dtype, std::vector<const void*> canonical, std::int64_t nx,
                                               std::int64_t ny, void* out, int device) const {
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
  r.args = std::move(canonical);
  r.out = out;
  r.out_dim = out_dim;
  r.device = device;
  return r;
}

void Genred::run_cuda(DType dtype, const void* const* args, std::size_t nargs, std::int64_t nx, std::int64_t ny,
                      void* out, int device, void* stream) const {
  const Impl& g = *impl_;
  std::vector<const void*> canonical;
  if (!g.check_call(args, nargs, nx, ny, out, &canonical)) return;
  cuda::LaunchRequest r = g.cuda_request(dtype, std::move(canonical), nx, ny, out, device);
  r.stream = stream;
  cuda::launch(r);
}

void Genred::run_cuda_host(DType dtype, const void* const* args, std::size_t nargs, std::int64_t nx, std::int64_t ny,
                           void* out, int device) const {
  const Impl& g = *impl_;
  std::vector<const void*> canonical;
  if (!g.check_call(args, nargs, nx, ny, out, &canonical)) return;
  cuda::launch_host(g.cuda_request(dtype, std::move(canonical), nx, ny, out, device));
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
