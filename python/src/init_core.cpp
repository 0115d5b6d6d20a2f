#include <pybind11/stl.h>

#include "bindings.hpp"
#include "kmr/runtime/error.hpp"
#include "kmr/runtime/genred.hpp"
#include "kmr/runtime/jit.hpp"

namespace py = pybind11;

namespace kmr::python {

namespace {

// libkmr's log lines (one per compilation) go to pykmr._logging.emit, which hands them to the `pykmr`
// logger when someone listens and returns False otherwise (libkmr then prints them unless KMR_QUIET).
// Compilations run with the GIL released (see init_genred.cpp), so taking it here cannot deadlock.
bool python_log(kmr::jit::LogLevel level, const std::string& message) {
#if PY_VERSION_HEX >= 0x030D0000
  if (!Py_IsInitialized() || Py_IsFinalizing()) return false;
#else
  if (!Py_IsInitialized() || _Py_IsFinalizing()) return false;
#endif
  py::gil_scoped_acquire gil;
  try {
    const int py_level = level == kmr::jit::LogLevel::Warning ? 30 : 20;  // logging.WARNING, logging.INFO
    return py::module_::import("pykmr._logging").attr("emit")(py_level, message).cast<bool>();
  } catch (py::error_already_set& e) {
    e.discard_as_unraisable("pykmr log handler");
    return false;
  }
}

}  // namespace

void init_errors(py::module_& m) {
  // kmr::Error keeps its kind: ValueError (bad formula/arguments), TypeError, RuntimeError.
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const kmr::Error& e) {
      switch (e.kind()) {
        case kmr::ErrorKind::Value:
          PyErr_SetString(PyExc_ValueError, e.what());
          return;
        case kmr::ErrorKind::Type:
          PyErr_SetString(PyExc_TypeError, e.what());
          return;
        case kmr::ErrorKind::Runtime:
          PyErr_SetString(PyExc_RuntimeError, e.what());
          return;
        case kmr::ErrorKind::Interrupted:
          PyErr_SetString(PyExc_KeyboardInterrupt, e.what());
          return;
      }
    }
  });
  (void)m;
}

void init_core(py::module_& m) {
  m.attr("__version__") = kmr::version();
  m.def("num_precompiled", &kmr::num_precompiled, "Number of precompiled kernels in this build.");
  m.def("num_threads", &kmr::num_threads, "Threads used by CPU kernels.");
  m.def("cpu_isa", &kmr::cpu_isa, "Instruction set of the precompiled CPU kernels on this machine.");
  m.def("set_num_threads", &kmr::set_num_threads, py::arg("n"), "Set the CPU threads (0: default).");
  m.def("cache_dir", &kmr::jit::cache_dir, "The JIT cache folder (created private if absent).");
  m.def("cache_size_bytes", &kmr::jit::cache_size_bytes);
  m.def("clear_cache", &kmr::jit::clear_cache);
  m.def("include_dir", &kmr::jit::include_dir, "Headers the JIT compiles against.");
  m.def("compiler_command", &kmr::jit::compiler_command,
        "The JIT's C++ compiler: $CXX, else c++, g++, clang++ on PATH, else the build-time one if it exists.");
  m.def("build_compiler", &kmr::jit::build_compiler, "The compiler libkmr was built with (may no longer exist).");
  m.def("compiler_identity", &kmr::jit::compiler_identity);
  kmr::jit::set_log_handler(&python_log);
  // Counters of this process's JIT: tests check that a routine rebuilt elsewhere compiles nothing.
  m.def(
      "jit_stats",
      [] {
        const kmr::jit::Stats s = kmr::jit::stats();
        py::dict d;
        d["memory_hits"] = s.memory_hits;
        d["disk_hits"] = s.disk_hits;
        d["compilations"] = s.compilations;
        d["rejected_entries"] = s.rejected_entries;
        return d;
      },
      "JIT counters of this process: memory_hits, disk_hits, compilations, rejected_entries.");
}

}  // namespace kmr::python
