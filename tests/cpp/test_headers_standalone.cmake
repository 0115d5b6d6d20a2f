# Every header of the device-safe layers compiles on its own (DESIGN decision 4).
# include()d from tests/cpp/CMakeLists.txt; a header that does not stand alone
# fails the build of the target kmr_header_tests.
include(${PROJECT_SOURCE_DIR}/cmake/kmr_header_tests.cmake)
kmr_add_header_tests(kmr_header_tests
                     ${PROJECT_SOURCE_DIR}/include/kmr/formula
                     ${PROJECT_SOURCE_DIR}/include/kmr/reduction
                     INCLUDE_ROOT ${PROJECT_SOURCE_DIR}/include
                     CUDA)
