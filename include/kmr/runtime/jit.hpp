// The host-compiler JIT and its disk cache. Generic over the source it
// compiles: the caller hands a complete C++ translation unit and the text that
// identifies it; the JIT builds it into a shared object once per process and
// once per cache, and returns the address of a symbol in it.
//
// Lookup order: in-process map (under a mutex) -> disk cache entry (checked:
// owner, mode, loadable, embedded key) -> compiler (under a file lock, so that
// concurrent processes compile once; temp file + rename, so readers never see
// a partial entry). A corrupt entry is deleted and rebuilt, never fatal.
//
// Environment: KMR_CACHE_DIR (cache folder), XDG_CACHE_HOME / HOME (default
// cache folder), CXX (compiler command), KMR_INCLUDE_DIR (folder holding
// kmr/config.hpp), KMR_QUIET=1 (no log line per compilation).
// Every failure throws kmr::Error with ErrorKind::Runtime.
#pragma once
#include <cstdint>
#include <string>

namespace kmr {
namespace jit {

struct CompileRequest {
  std::string source;       // a complete C++ translation unit
  std::string key_text;     // what identifies it (canonical formula, reduction, dtypes...)
  std::string description;  // for logs and errors, e.g. the formula and reduction
};

// Address of `symbol` in the shared object built from req.source. Built at
// most once per process and once per cache. The source must not define
// `kmr_module_key` (the JIT appends it).
void* get_symbol(const CompileRequest& req, const char* symbol);

// The cache folder, created (mode 0700) if absent, refused if it is not
// private to the current user.
std::string cache_dir();
// Total size of the files in the cache folder.
std::uint64_t cache_size_bytes();
// Deletes the cache entries (only files named like entries) of cache_dir().
// Modules already loaded by this process stay usable.
void clear_cache();

// $CXX, else the first of c++, g++, clang++ on PATH, else the compiler libkmr was built with if it
// still exists, else "c++" (then compiler_identity() throws the "install a compiler" error).
std::string compiler_command();
// The compiler libkmr was built with (compiler_command()'s last resort; it may no longer exist).
std::string build_compiler();
// First line of `<compiler> --version` and the resolved compiler path.
// Throws the "missing compiler" error if the compiler cannot be run.
std::string compiler_identity();
// Folder that holds kmr/kmr.hpp, passed to the compiler as -I.
std::string include_dir();
// The flags every module is compiled with (part of the cache key).
std::string compile_flags();

// Log lines (one per compilation, with its time; unusable cache entries). A handler receives each
// line and returns true when it delivered it (then nothing is printed); otherwise the line goes to
// stderr as "[pykmr] ..." unless KMR_QUIET is set. The handler may be called from any thread that
// compiles; an empty function removes it. pykmr sets one that forwards to Python's `logging`.
enum class LogLevel { Info, Warning };
using LogHandler = bool (*)(LogLevel level, const std::string& message);
void set_log_handler(LogHandler handler);

// Counters of this process, for tests and diagnostics.
struct Stats {
  std::uint64_t memory_hits = 0;       // get_symbol answered by the in-process map
  std::uint64_t disk_hits = 0;         // a valid cache entry was loaded
  std::uint64_t compilations = 0;      // the compiler was run and succeeded
  std::uint64_t rejected_entries = 0;  // corrupt/foreign entries deleted
};
Stats stats();

// Test hook: forgets the in-process map, as if in a fresh process (modules
// already loaded stay mapped). Not for production use.
void reset_in_process_cache_for_testing();

}  // namespace jit
}  // namespace kmr
