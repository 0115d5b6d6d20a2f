// One init_* per area; each forwards to libkmr (no logic in the lambdas).
#pragma once
#include <pybind11/pybind11.h>

namespace kmr::python {
void init_errors(pybind11::module_& m);
void init_core(pybind11::module_& m);
void init_genred(pybind11::module_& m);
void init_cuda(pybind11::module_& m);
}  // namespace kmr::python
