// The environment every C++ suite runs in, set before main (a static initializer) unless the caller set it:
// a private JIT cache, the source headers for the JIT (a relocatable libkmr, as in the wheel's build tree
// where CI builds these suites, knows no source path), quiet compiles. Not through ctest's ENVIRONMENT:
// gtest_discover_tests (CMake 3.25) keeps only the first variable of that list.
#include <cstdlib>

namespace {

struct TestEnvironment {
  TestEnvironment() {
    setenv("KMR_CACHE_DIR", KMR_TEST_CACHE_DIR, 0);
    setenv("KMR_INCLUDE_DIR", KMR_TEST_INCLUDE_DIR, 0);
    setenv("KMR_QUIET", "1", 0);
  }
};
const TestEnvironment environment;

}  // namespace
