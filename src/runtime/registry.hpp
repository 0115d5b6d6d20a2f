// The precompiled kernels, generated from src/precompiled/manifest.txt.
#pragma once
#include <cstddef>
#include <string>

#include "kmr/exec/kernel_abi.h"

namespace kmr {

struct PrecompiledEntry {
  const char* key;                // KernelSpec::registry_key() computed by the runtime parser
  kmr_kernel_fn fn;
  std::string (*template_key)();  // the formula key printed by the C++ templates (tested equal)
  // The manifest line it came from, so that tests can rebuild it through the public API.
  const char* formula;
  const char* aliases;            // separated by ';'
  const char* reduction;
  int axis;
  const char* dtype;              // "float" or "double"
};

struct PrecompiledTable {
  const PrecompiledEntry* entries;
  std::size_t size;
};

// All entries of the build (defined in the generated registry_table.cpp).
const PrecompiledTable* precompiled_tables(std::size_t* count);
kmr_kernel_fn find_precompiled(const std::string& key);

}  // namespace kmr
