// All reductions (device-safe). Interface: docs/internals.md, "Reductions".
#pragma once
#include "sum.hpp"
#include "minmax.hpp"
#include "kmin.hpp"
#include "logsumexp.hpp"
