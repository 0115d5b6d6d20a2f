// All reductions (device-safe). Interface: docs/internals.md, "Reductions".
#pragma once
#include "kmin.hpp"
#include "logsumexp.hpp"
#include "minmax.hpp"
#include "sum.hpp"
