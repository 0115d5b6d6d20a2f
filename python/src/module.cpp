#include "bindings.hpp"

PYBIND11_MODULE(_kmr, m) {
  m.doc() = "pykmr native module: kernel map-reductions (libkmr)";
  kmr::python::init_errors(m);
  kmr::python::init_core(m);
  kmr::python::init_genred(m);
  kmr::python::init_cuda(m);
}
