// Everything a generated CPU kernel translation unit needs.
#pragma once
#include "../formula/formula.hpp"
#include "../reduction/reduction.hpp"
#include "cpu_driver.hpp"
#include "kernel_abi.h"
