// Private pieces of the host JIT shared by src/jit/*.cpp.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "kmr/runtime/error.hpp"
#include "kmr/runtime/jit.hpp"

namespace kmr {
namespace jit {
namespace detail {

// ---- hash.cpp ---------------------------------------------------------------
// FNV-1a, 128 bits. Not cryptographic: it names entries; the key embedded in
// each module is compared on load, so a collision costs a rebuild, not a bug.
class Fnv128 {
 public:
  void update(const void* data, std::size_t n);
  void update(std::string_view s) { update(s.data(), s.size()); }
  std::string hex() const;  // 32 lowercase hex digits

 private:
  std::uint64_t hi_ = 0x6c62272e07bb0142ULL, lo_ = 0x62b821756295c58dULL;  // offset basis
};
std::string hash_hex(std::string_view s);
bool is_hash_hex(std::string_view s);  // 32 lowercase hex digits

// ---- paths.cpp --------------------------------------------------------------
[[noreturn]] void fail(const std::string& msg);  // throws kmr::Error(Runtime)
std::string getenv_str(const char* name);        // "" when unset
bool quiet();                                    // KMR_QUIET set and not "0"
std::string version_string();                    // KMR_VERSION or "0.0.0"
// Text of a macro defined either as a string literal or as bare tokens:
// pass KMR_JIT_MACRO_TEXT(M); the quotes of a literal are removed.
#define KMR_JIT_STRINGIZE2(x) #x
#define KMR_JIT_MACRO_TEXT(x) ::kmr::jit::detail::unquote(KMR_JIT_STRINGIZE2(x))
std::string unquote(const char* stringized);
// Creates missing folders of `path` with mode 0700.
void make_dirs(const std::string& path);
// Throws unless `path` is a folder owned by the current user and not
// writable by group or others. `what` names it in the message.
void check_private_dir(const std::string& path, const char* what);
// lstat()s an entry file. Returns false when it does not exist; throws when
// it exists but is not a regular file owned by us and private.
bool check_private_entry(const std::string& path);

// ---- store.cpp --------------------------------------------------------------
// Disk-cache primitives shared by the host JIT and the CUDA kernel cache.
// To the handler set by set_log_handler (pykmr: Python logging) and, unless it took the line,
// "[pykmr] msg" on stderr unless quiet().
void log_line(const std::string& msg, LogLevel level = LogLevel::Info);
std::string unique_suffix();            // "tmp.<pid>.<random>": temp names that no other writer uses
// flock() on a lock file for the life of the object. Where the file system
// has no locks the build goes on unlocked: the rename keeps the entry whole.
class FileLock {
 public:
  explicit FileLock(const std::string& path);  // throws when the file cannot be opened
  ~FileLock();
  bool held() const { return held_; }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_ = -1;
  bool held_ = false;
};
// Writes `text` to `tmp` (mode 0600, O_EXCL), then renames it to `path`.
void write_file_atomic(const std::string& path, const std::string& tmp, const std::string& text);
void for_each_entry(const std::string& dir, const std::function<void(const std::string&)>& f);
// Removes <dir>/<hash>.tmp.* : under the entry's lock only a dead process
// (killed while compiling) can have left them.
void remove_stale_temps(const std::string& dir, const std::string& hash);
bool read_file(const std::string& path, std::string* out);  // false when it cannot be read

// ---- key.cpp ----------------------------------------------------------------
std::string headers_hash(const std::string& include_dir);  // cached per folder
std::string cpu_flags();                                   // cached
// The full key text of a module, embedded in it and hashed to name it.
std::string full_key_text(const std::string& key_text, const std::string& source, const std::string& compiler_id,
                          const std::string& include_dir);
// `extern "C" const char* kmr_module_key()` returning `key`.
std::string key_function_source(const std::string& key);

// ---- compiler.cpp -----------------------------------------------------------
struct ProcessResult {
  int spawn_error = 0;  // errno of the spawn (e.g. ENOENT); 0 when it started
  int status = -1;      // waitpid status; -1 when unknown
  std::string output;   // stdout and stderr together
};
std::vector<std::string> split_command(const std::string& cmd);
std::string resolve_program(const std::string& prog);  // absolute path PATH would run, "" if none
ProcessResult run_process(const std::vector<std::string>& argv);
// Like compiler_identity(), the error naming `what` as what could not be compiled.
std::string compiler_identity_for(const std::string& what);
// Runs the compiler on `src`, writing `out`. Throws with the log on failure. A non-empty `prelude` is
// passed as `-include prelude` (see pch.cpp).
void compile_shared_object(const std::string& src, const std::string& out, const std::string& include_dir,
                           const std::string& what, const std::string& prelude = std::string());
// Precompiles `header` into `out` (a .gch) with the flags of the modules.
void compile_header(const std::string& header, const std::string& out, const std::string& include_dir,
                    const std::string& what);

// ---- pch.cpp ----------------------------------------------------------------
// The precompiled prelude of the host modules in cache folder `dir`: the path to pass to
// compile_shared_object, or "" when there is none to use (KMR_JIT_PCH=0, a compiler other than GCC,
// a source that does not start with the kernel header, the first module a process compiles while none
// is built, or a failed build). May build it (under its lock).
std::string jit_prelude(const std::string& dir, const std::string& include_dir, const std::string& compiler_id,
                        const std::string& source);
// Removes a prelude that made a module fail to compile while it compiled without it.
void drop_prelude(const std::string& prelude);
// In a fork()ed child (cache.cpp's handler): a new build lock, the old one may be held by a parent's thread.
void fresh_prelude_lock_in_child();
std::string truncate_log(const std::string& log, std::size_t max_bytes);

}  // namespace detail
}  // namespace jit
}  // namespace kmr
