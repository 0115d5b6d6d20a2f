#include <pybind11/stl.h>

#include <cstdint>

#include "bindings.hpp"
#include "interrupt.hpp"
#include "kmr/runtime/cuda.hpp"
#include "kmr/runtime/genred.hpp"

namespace py = pybind11;

namespace kmr::python {

namespace {

kmr::DType parse_dtype(const std::string& s) {
  if (s == "float32") return kmr::DType::Float32;
  if (s == "float64") return kmr::DType::Float64;
  throw kmr::Error(kmr::ErrorKind::Type, "kmr: unsupported dtype '" + s + "' (float32 or float64)");
}

// Batches and ranges as the front ends pass them: nbatch, batch strides per argument, and KeOps's six
// ranges arrays as (pointer to contiguous host int64, rows) pairs (an empty list: dense).
struct RunExtras {
  kmr::BlockRanges ranges;
  kmr::RunOptions options;
};

void make_extras(RunExtras* e, std::int64_t nbatch, const std::vector<std::int64_t>& strides,
                 const std::vector<std::pair<std::uintptr_t, std::int64_t>>& ranges) {
  e->options.nbatch = nbatch;
  e->options.batch_strides = strides;
  if (ranges.empty()) return;
  if (ranges.size() != 6)
    throw kmr::Error(kmr::ErrorKind::Value, "kmr: ranges must be 6 arrays, got " + std::to_string(ranges.size()));
  auto ptr = [&](int k) { return reinterpret_cast<const std::int64_t*>(ranges[k].first); };
  kmr::BlockRanges& r = e->ranges;
  r.ranges_i = ptr(0);
  r.slices_i = ptr(1);
  r.redranges_j = ptr(2);
  r.ranges_j = ptr(3);
  r.slices_j = ptr(4);
  r.redranges_i = ptr(5);
  r.nranges_i = ranges[0].second;
  r.nredranges_j = ranges[2].second;
  r.nranges_j = ranges[3].second;
  r.nredranges_i = ranges[5].second;
  if (ranges[1].second != r.nranges_i || ranges[4].second != r.nranges_j)
    throw kmr::Error(kmr::ErrorKind::Value,
                     "kmr: slices_i (slices_j) must have one entry per row of ranges_i (ranges_j)");
  e->options.ranges = &e->ranges;
}

using RangesArg = std::vector<std::pair<std::uintptr_t, std::int64_t>>;

// Raw pointers come from torch/numpy as integers: the module links neither.
std::vector<const void*> pointers(const std::vector<std::uintptr_t>& args) {
  std::vector<const void*> p;
  p.reserve(args.size());
  for (std::uintptr_t a : args) p.push_back(reinterpret_cast<const void*>(a));
  return p;
}

std::int64_t* idx_pointer(std::uintptr_t p) { return reinterpret_cast<std::int64_t*>(p); }

void run_pointers(const kmr::Genred& g, const std::string& dtype, const std::vector<std::uintptr_t>& args,
                  std::int64_t nx, std::int64_t ny, std::uintptr_t out, std::uintptr_t out_idx, std::int64_t nbatch,
                  const std::vector<std::int64_t>& strides, const RangesArg& ranges) {
  const std::vector<const void*> p = pointers(args);
  const kmr::DType dt = parse_dtype(dtype);
  RunExtras e;
  make_extras(&e, nbatch, strides, ranges);
  run_interruptibly([&](const volatile int* interrupt) {
    e.options.interrupt = interrupt;
    g.run(dt, p.data(), p.size(), nx, ny, reinterpret_cast<void*>(out), e.options, idx_pointer(out_idx));
  });
}

// Partial states (host memory): see kmr::Genred::run_state, merge_states, finalize_states.
py::tuple state_layout(const kmr::Genred& g, const std::string& dtype) {
  const kmr::Genred::StateLayout l = g.state_layout(parse_dtype(dtype));
  return py::make_tuple(l.acc_dim, l.idx_dim, l.acc_dtype == kmr::DType::Float32 ? "float32" : "float64");
}

void run_state_pointers(const kmr::Genred& g, const std::string& dtype, const std::vector<std::uintptr_t>& args,
                        std::int64_t nx, std::int64_t ny, std::uintptr_t acc, std::uintptr_t idx, std::int64_t offset) {
  const std::vector<const void*> p = pointers(args);
  const kmr::DType dt = parse_dtype(dtype);
  run_interruptibly([&](const volatile int* interrupt) {
    g.run_state(dt, p.data(), p.size(), nx, ny, reinterpret_cast<void*>(acc), idx_pointer(idx), offset, interrupt);
  });
}

void merge_pointers(const kmr::Genred& g, const std::string& dtype, std::int64_t rows,
                    const std::vector<std::uintptr_t>& accs, const std::vector<std::uintptr_t>& idxs,
                    std::uintptr_t out, std::uintptr_t out_idx, bool finalize) {
  const std::vector<const void*> a = pointers(accs);
  std::vector<const std::int64_t*> ix;
  for (std::uintptr_t q : idxs) ix.push_back(reinterpret_cast<const std::int64_t*>(q));
  const kmr::DType dt = parse_dtype(dtype);
  py::gil_scoped_release release;
  if (finalize) {
    g.finalize_states(dt, rows, a, ix, reinterpret_cast<void*>(out), idx_pointer(out_idx));
  } else {
    g.merge_states(dt, rows, a, ix, reinterpret_cast<void*>(out), idx_pointer(out_idx));
  }
}

std::vector<std::pair<int, int>> arg_list(const kmr::Genred& g) {
  std::vector<std::pair<int, int>> out;
  for (const auto& a : g.args()) out.emplace_back(a.cat, a.dim);
  return out;
}

// CUDA: device pointers on GPU `device`, queued on `stream` (a CUstream as an integer, 0: default).
void run_cuda_pointers(const kmr::Genred& g, const std::string& dtype, const std::vector<std::uintptr_t>& args,
                       std::int64_t nx, std::int64_t ny, std::uintptr_t out, int device, std::uintptr_t stream,
                       std::uintptr_t out_idx, std::int64_t nbatch, const std::vector<std::int64_t>& strides,
                       const RangesArg& ranges) {
  const std::vector<const void*> p = pointers(args);
  const kmr::DType dt = parse_dtype(dtype);
  RunExtras e;
  make_extras(&e, nbatch, strides, ranges);
  py::gil_scoped_release release;
  g.run_cuda(dt, p.data(), p.size(), nx, ny, reinterpret_cast<void*>(out), device, reinterpret_cast<void*>(stream),
             e.options, idx_pointer(out_idx));
}

// CUDA on host pointers: copied to GPU `device` and back.
void run_cuda_host_pointers(const kmr::Genred& g, const std::string& dtype, const std::vector<std::uintptr_t>& args,
                            std::int64_t nx, std::int64_t ny, std::uintptr_t out, int device, std::uintptr_t out_idx,
                            std::int64_t nbatch, const std::vector<std::int64_t>& strides, const RangesArg& ranges) {
  const std::vector<const void*> p = pointers(args);
  const kmr::DType dt = parse_dtype(dtype);
  RunExtras e;
  make_extras(&e, nbatch, strides, ranges);
  py::gil_scoped_release release;
  g.run_cuda_host(dt, p.data(), p.size(), nx, ny, reinterpret_cast<void*>(out), device, e.options,
                  idx_pointer(out_idx));
}

kmr::Genred make_genred(const std::string& formula, const std::vector<std::string>& aliases,
                        const std::string& reduction, int axis, long long opt_arg, const std::string& formula2,
                        const std::string& dtype_acc, const std::string& sum_scheme) {
  kmr::GenredOptions o;
  o.opt_arg = opt_arg;
  o.formula2 = formula2;
  o.dtype_acc = dtype_acc;
  o.sum_scheme = sum_scheme;
  return kmr::Genred(formula, aliases, reduction, axis, o);
}

}  // namespace

void init_genred(py::module_& m) {
  py::class_<kmr::Genred>(m, "Genred")
      .def(py::init(&make_genred), py::arg("formula"), py::arg("aliases"), py::arg("reduction") = "Sum",
           py::arg("axis") = 1, py::arg("opt_arg") = 0, py::arg("formula2") = "", py::arg("dtype_acc") = "auto",
           py::arg("sum_scheme") = "auto")
      .def_property_readonly("out_dim", &kmr::Genred::out_dim, "values per output row")
      .def_property_readonly("out_idx_dim", &kmr::Genred::out_idx_dim, "int64 indices per output row (Arg*)")
      .def_property_readonly("axis", &kmr::Genred::axis)
      .def_property_readonly("key", &kmr::Genred::key)
      .def_property_readonly("args", &arg_list, "(category, dim) per argument; category 0: i, 1: j, 2: parameter")
      .def("is_precompiled",
           [](const kmr::Genred& g, const std::string& d) { return g.is_precompiled(parse_dtype(d)); })
      .def("prepare",
           [](const kmr::Genred& g, const std::string& d) {
             const kmr::DType dt = parse_dtype(d);
             py::gil_scoped_release release;  // it may compile (and log through Python from the compiling thread)
             return g.prepare(dt);
           })
      .def("run", &run_pointers, py::arg("dtype"), py::arg("args"), py::arg("nx"), py::arg("ny"), py::arg("out"),
           py::arg("out_idx") = 0, py::arg("nbatch") = 1, py::arg("batch_strides") = std::vector<std::int64_t>{},
           py::arg("ranges") = RangesArg{},
           "Runs on raw data pointers (contiguous, row-major): values to out, int64 indices to out_idx; releases "
           "the GIL. nbatch/batch_strides (values per argument, 0: broadcast): batches; ranges: KeOps's 6 arrays "
           "as (pointer to host int64, rows) pairs.")
      .def("run_cuda", &run_cuda_pointers, py::arg("dtype"), py::arg("args"), py::arg("nx"), py::arg("ny"),
           py::arg("out"), py::arg("device"), py::arg("stream"), py::arg("out_idx") = 0, py::arg("nbatch") = 1,
           py::arg("batch_strides") = std::vector<std::int64_t>{}, py::arg("ranges") = RangesArg{},
           "Queues the kernel on CUDA device pointers of GPU `device`, on `stream` (an integer CUstream); ranges "
           "stay host memory.")
      .def("run_cuda_host", &run_cuda_host_pointers, py::arg("dtype"), py::arg("args"), py::arg("nx"), py::arg("ny"),
           py::arg("out"), py::arg("device"), py::arg("out_idx") = 0, py::arg("nbatch") = 1,
           py::arg("batch_strides") = std::vector<std::int64_t>{}, py::arg("ranges") = RangesArg{},
           "Runs on GPU `device` from host pointers (copies in and out).")
      .def("state_layout", &state_layout, py::arg("dtype"),
           "(acc_dim, idx_dim, accumulator dtype) of this reduction's partial state, per output row.")
      .def("run_state", &run_state_pointers, py::arg("dtype"), py::arg("args"), py::arg("nx"), py::arg("ny"),
           py::arg("acc"), py::arg("idx"), py::arg("offset") = 0,
           "Writes the unfinalized states (acc [rows, acc_dim], idx [rows, idx_dim] int64, indices + offset).")
      .def("merge_states", &merge_pointers, py::arg("dtype"), py::arg("rows"), py::arg("accs"), py::arg("idxs"),
           py::arg("out"), py::arg("out_idx"), py::arg("finalize"),
           "Merges states in order; finalize=True writes the finalized output (values, indices) instead.")
      .def("is_precompiled_cuda",
           [](const kmr::Genred& g, const std::string& d) { return g.is_precompiled_cuda(parse_dtype(d)); })
      .def(
          "prepare_cuda",
          [](const kmr::Genred& g, const std::string& d, const std::string& arch, bool force_nvrtc) {
            const kmr::DType dt = parse_dtype(d);
            const int a = kmr::cuda::parse_arch(arch);
            py::gil_scoped_release release;
            return g.prepare_cuda(dt, a, force_nvrtc);
          },
          py::arg("dtype"), py::arg("arch"), py::arg("force_nvrtc") = false,
          "The CUDA kernel for `arch` (e.g. 'sm_90'), without a GPU: 'precompiled', or the path of the cubin/PTX "
          "NVRTC wrote to the cache.");
}

}  // namespace kmr::python
