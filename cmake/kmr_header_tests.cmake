# kmr_add_header_tests(<prefix> <header-dir>... [INCLUDE_ROOT <dir>] [CUDA])
#
# Compiles each header of each <header-dir> on its own (DESIGN decision 4):
# for every *.hpp / *.h a one-line source `#include "<header>"` is generated
# and built as an OBJECT library <prefix>_<dir>_<header>, so a header that
# leans on an include it does not make fails the build. The custom target
# <prefix> builds them all.
#
# INCLUDE_ROOT (default ${PROJECT_SOURCE_DIR}/include) is the only include
# path, and headers are included by their path relative to it, as users do.
# CUDA: when the CUDA language is enabled, each header (and each *.cuh) is also
# compiled by the CUDA compiler from a generated .cu.
function(kmr_add_header_tests prefix)
  cmake_parse_arguments(ARG "CUDA" "INCLUDE_ROOT" "" ${ARGN})
  if(NOT ARG_INCLUDE_ROOT)
    set(ARG_INCLUDE_ROOT "${PROJECT_SOURCE_DIR}/include")
  endif()
  set(with_cuda OFF)
  if(ARG_CUDA AND CMAKE_CUDA_COMPILER)
    set(with_cuda ON)
  endif()

  add_custom_target(${prefix})
  foreach(dir IN LISTS ARG_UNPARSED_ARGUMENTS)
    get_filename_component(dirname "${dir}" NAME)
    file(GLOB headers CONFIGURE_DEPENDS "${dir}/*.hpp" "${dir}/*.h" "${dir}/*.cuh")
    foreach(header IN LISTS headers)
      get_filename_component(name "${header}" NAME)
      get_filename_component(ext "${header}" LAST_EXT)
      file(RELATIVE_PATH rel "${ARG_INCLUDE_ROOT}" "${header}")
      if(rel MATCHES "^\\.\\.")
        set(rel "${header}")  # not under the include root: absolute path
      endif()
      string(MAKE_C_IDENTIFIER "${prefix}_${dirname}_${name}" target)
      set(langs)
      if(NOT ext STREQUAL ".cuh")
        list(APPEND langs cpp)
      endif()
      if(with_cuda)
        list(APPEND langs cu)
      endif()
      foreach(lang IN LISTS langs)
        set(src "${CMAKE_CURRENT_BINARY_DIR}/${prefix}/${dirname}/${name}.${lang}")
        file(CONFIGURE OUTPUT "${src}" CONTENT "#include \"${rel}\"\n")
        set(t "${target}")
        if(lang STREQUAL "cu")
          set(t "${target}_cu")
        endif()
        add_library(${t} OBJECT "${src}")
        target_include_directories(${t} PRIVATE "${ARG_INCLUDE_ROOT}")
        set_target_properties(${t} PROPERTIES CXX_STANDARD 17 CXX_STANDARD_REQUIRED ON CXX_EXTENSIONS OFF
                                              CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON CUDA_EXTENSIONS OFF)
        if(lang STREQUAL "cpp" AND CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
          target_compile_options(${t} PRIVATE -Wall -Wextra -Wpedantic)
        endif()
        add_dependencies(${prefix} ${t})
      endforeach()
    endforeach()
  endforeach()
endfunction()
