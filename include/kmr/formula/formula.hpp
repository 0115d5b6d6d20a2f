// All formula ops (device-safe).
#pragma once
#include "arith.hpp"
#include "elementwise.hpp"
#include "grad.hpp"
#include "norms.hpp"
#include "vars.hpp"
#include "vector.hpp"
