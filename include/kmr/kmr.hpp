// Umbrella header of libkmr's public C++ API.
#pragma once
#include "runtime/error.hpp"
#include "runtime/genred.hpp"
