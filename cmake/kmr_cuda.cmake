# CUDA backend (issue 4), include()d by src/CMakeLists.txt after the CPU
# manifest list. Sets KMR_CUDA_LIB_SOURCES (sources to add to libkmr) and
# KMR_WITH_CUDA (0/1, a compile definition of libkmr).
#
# KMR_CUDA=OFF   no GPU support at all.
# KMR_CUDA=AUTO  the GPU runtime (libcuda and NVRTC opened with dlopen at run
#                time) is always built; when nvcc is found and works, the
#                manifest's kernels are also compiled ahead of time into one
#                fatbin per entry, embedded in libkmr. No nvcc: NVRTC only.
# KMR_CUDA=ON    as AUTO, but nvcc is required.
# nvcc is called directly (no enable_language(CUDA)): one fatbin per manifest
# entry, SASS for each arch of KMR_CUDA_ARCHS and PTX for the newest.
set(KMR_CUDA_ARCHS "80;90" CACHE STRING
    "Compute capabilities of the AOT CUDA kernels: SASS for each, PTX for the newest (e.g. '80;90', '90')")
set(KMR_CUDA_PRECOMPILED "" CACHE STRING
    "Regex over manifest entry names to compile ahead of time for CUDA (empty: as KMR_PRECOMPILED; NONE: none)")
set(KMR_CUDA_PRECOMPILED_DTYPES "float" CACHE STRING
    "Value types of the AOT CUDA kernels (default float: float64 GPU kernels are compiled by NVRTC on first use, \
which halves nvcc's share of the build; 'float;double' for both)")
set(KMR_NVCC "" CACHE FILEPATH "nvcc for the AOT CUDA kernels (empty: $CUDACXX, $CUDA_HOME/bin, PATH, /usr/local/cuda/bin)")

set(KMR_CUDA_LIB_SOURCES
    ${CMAKE_CURRENT_SOURCE_DIR}/cuda/driver_api.cpp
    ${CMAKE_CURRENT_SOURCE_DIR}/cuda/nvrtc.cpp
    ${CMAKE_CURRENT_SOURCE_DIR}/cuda/kernels.cpp
    ${CMAKE_CURRENT_SOURCE_DIR}/cuda/module_cache.cpp
    ${CMAKE_CURRENT_SOURCE_DIR}/cuda/launch.cpp)
set(KMR_WITH_CUDA 1)
set(KMR_CUDA_AOT OFF)
set(KMR_CUDA_AOT_ARCHS "")
set(KMR_CUDA_AOT_NAMES)
set(KMR_CUDA_NVCC "")
string(TOUPPER "${KMR_CUDA}" _kmr_cuda_mode)

if(_kmr_cuda_mode STREQUAL "OFF")
  set(KMR_WITH_CUDA 0)
  message(STATUS "kmr: CUDA backend off (KMR_CUDA=OFF)")
else()
  # ---- find a working nvcc ---------------------------------------------------------
  set(_nvcc "${KMR_NVCC}")
  if(NOT _nvcc AND DEFINED ENV{CUDACXX})
    set(_nvcc "$ENV{CUDACXX}")
  endif()
  if(NOT _nvcc)
    find_program(_kmr_nvcc_found nvcc HINTS "$ENV{CUDA_HOME}/bin" "$ENV{CUDA_PATH}/bin" /usr/local/cuda/bin)
    if(_kmr_nvcc_found)
      set(_nvcc "${_kmr_nvcc_found}")
    endif()
    unset(_kmr_nvcc_found CACHE)
  endif()
  set(_why "")
  if(NOT _nvcc)
    set(_why "nvcc not found (set KMR_NVCC, CUDACXX or CUDA_HOME)")
  elseif(NOT EXISTS "${_nvcc}")
    set(_why "nvcc not found at ${_nvcc}")
  endif()

  # Archs: "80;90" -> SASS sm_80, sm_90 and PTX compute_90.
  set(_gencode)
  set(_archs_text)
  list(SORT KMR_CUDA_ARCHS COMPARE NATURAL)
  list(REMOVE_DUPLICATES KMR_CUDA_ARCHS)
  list(LENGTH KMR_CUDA_ARCHS _narchs)
  if(_narchs EQUAL 0 AND NOT _why)
    set(_why "KMR_CUDA_ARCHS is empty")
  endif()
  set(_i 0)
  foreach(_a IN LISTS KMR_CUDA_ARCHS)
    if(NOT _a MATCHES "^[0-9]+[af]?$")
      message(FATAL_ERROR "kmr: KMR_CUDA_ARCHS entries are compute capabilities like 80 or 90, got '${_a}'")
    endif()
    math(EXPR _i "${_i} + 1")
    if(_i EQUAL _narchs)
      list(APPEND _gencode "-gencode=arch=compute_${_a},code=[sm_${_a},compute_${_a}]")
      list(APPEND _archs_text "sm_${_a}" "compute_${_a}")
    else()
      list(APPEND _gencode "-gencode=arch=compute_${_a},code=sm_${_a}")
      list(APPEND _archs_text "sm_${_a}")
    endif()
  endforeach()

  set(_nvcc_flags -std=c++17 -O3 --use_fast_math -ccbin "${CMAKE_CXX_COMPILER}" ${_gencode})
  if(NOT _why)
    # Probe: nvcc runs with this host compiler and these archs (and knows -compress-mode).
    set(_probe_dir "${CMAKE_CURRENT_BINARY_DIR}/cuda_probe")
    file(MAKE_DIRECTORY "${_probe_dir}")
    file(WRITE "${_probe_dir}/probe.cu" "extern \"C\" __global__ void kmr_probe(float* x) { x[threadIdx.x] += 1.0f; }\n")
    execute_process(COMMAND "${_nvcc}" ${_nvcc_flags} -compress-mode=size --fatbin -o "${_probe_dir}/probe.fatbin"
                            "${_probe_dir}/probe.cu"
                    RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
    if(_rc EQUAL 0)
      list(APPEND _nvcc_flags -compress-mode=size)
    else()
      execute_process(COMMAND "${_nvcc}" ${_nvcc_flags} --fatbin -o "${_probe_dir}/probe.fatbin" "${_probe_dir}/probe.cu"
                      RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
      if(NOT _rc EQUAL 0)
        string(STRIP "${_out}" _out)
        set(_why "${_nvcc} fails on a test kernel (${_rc}): ${_out}")
      endif()
    endif()
  endif()
  if(_why)
    if(_kmr_cuda_mode STREQUAL "ON")
      message(FATAL_ERROR "kmr: KMR_CUDA=ON but ${_why}")
    endif()
    message(STATUS "kmr: no AOT CUDA kernels: ${_why}; GPU kernels will be compiled at run time by NVRTC")
  endif()

  # ---- one fatbin per manifest entry --------------------------------------------------
  set(_filter "${KMR_CUDA_PRECOMPILED}")
  if(_filter STREQUAL "")
    set(_filter "${KMR_PRECOMPILED}")
  endif()
  if(NOT _why AND NOT _filter STREQUAL "NONE")
    file(GLOB_RECURSE _kmr_device_headers CONFIGURE_DEPENDS
         ${PROJECT_SOURCE_DIR}/include/kmr/formula/*.hpp ${PROJECT_SOURCE_DIR}/include/kmr/reduction/*.hpp
         ${PROJECT_SOURCE_DIR}/include/kmr/exec/cuda_*)
    file(MAKE_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR}/precompiled/cuda)
    foreach(_line IN LISTS _kmr_manifest_lines)
      string(REGEX MATCH "^[a-z0-9_]+" _name "${_line}")
      if(_name MATCHES "${_filter}")
        set(_dir ${CMAKE_CURRENT_BINARY_DIR}/precompiled/cuda)
        set(_cu ${_dir}/cu_${_name}.cu)
        set(_cpp ${_dir}/cu_${_name}.cpp)
        set(_fatbin ${_dir}/cu_${_name}.fatbin)
        add_custom_command(OUTPUT ${_cu} ${_cpp}
                           COMMAND kmr_codegen cuda-entry ${KMR_MANIFEST} ${_name} "${KMR_CUDA_PRECOMPILED_DTYPES}" ${_cu}
                                   ${_cpp} ${_fatbin}
                           DEPENDS kmr_codegen ${KMR_MANIFEST}
                           COMMENT "kmr: generating CUDA kernels '${_name}'" VERBATIM)
        add_custom_command(OUTPUT ${_fatbin}
                           COMMAND "${_nvcc}" ${_nvcc_flags} -I${PROJECT_SOURCE_DIR}/include --fatbin -o ${_fatbin} ${_cu}
                           DEPENDS ${_cu} ${_kmr_device_headers}
                           COMMENT "kmr: nvcc CUDA kernels '${_name}'" VERBATIM)
        set_source_files_properties(${_cpp} PROPERTIES OBJECT_DEPENDS ${_fatbin})
        list(APPEND KMR_CUDA_LIB_SOURCES ${_cpp} ${_fatbin})
        list(APPEND KMR_CUDA_AOT_NAMES ${_name})
      endif()
    endforeach()
    if(KMR_CUDA_AOT_NAMES)
      set(KMR_CUDA_AOT ON)
      list(JOIN _archs_text ";" KMR_CUDA_AOT_ARCHS)
    endif()
  endif()
  list(LENGTH KMR_CUDA_AOT_NAMES _n)
  message(STATUS "kmr: CUDA backend on; ${_n} AOT manifest entries (archs: '${KMR_CUDA_AOT_ARCHS}', "
                 "KMR_CUDA_PRECOMPILED='${_filter}', nvcc: '${_nvcc}')")
  if(NOT _why)
    set(KMR_CUDA_NVCC "${_nvcc}")  # a working nvcc (tests compile the generated source with it)
  endif()
endif()

set(_cuda_table ${CMAKE_CURRENT_BINARY_DIR}/precompiled/cuda_table.cpp)
add_custom_command(OUTPUT ${_cuda_table}
                   COMMAND kmr_codegen cuda-table ${_cuda_table} "${KMR_CUDA_AOT_ARCHS}" ${KMR_CUDA_AOT_NAMES}
                   DEPENDS kmr_codegen ${KMR_MANIFEST}
                   COMMENT "kmr: generating the CUDA image table" VERBATIM)
list(APPEND KMR_CUDA_LIB_SOURCES ${_cuda_table})

# For tests/cpp: what the CUDA tests may use.
set_property(GLOBAL PROPERTY KMR_WITH_CUDA ${KMR_WITH_CUDA})
set_property(GLOBAL PROPERTY KMR_CUDA_NVCC "${KMR_CUDA_NVCC}")
set(_same 0)  # the AOT kernels are the CPU precompiled set, in KMR_CUDA_PRECOMPILED_DTYPES
if(KMR_CUDA_PRECOMPILED STREQUAL "" OR KMR_CUDA_PRECOMPILED STREQUAL KMR_PRECOMPILED)
  set(_same 1)
endif()
set_property(GLOBAL PROPERTY KMR_CUDA_SAME_SET ${_same})
set_property(GLOBAL PROPERTY KMR_CUDA_PRECOMPILED_DTYPES "${KMR_CUDA_PRECOMPILED_DTYPES}")
