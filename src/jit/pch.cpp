// The precompiled prelude of the host JIT modules.
//
// Every host module starts with #include "kmr/exec/cpu_kernel.hpp" (the formula templates, the reductions,
// the CPU driver and xsimd): with g++ 12, parsing it is 1.8 s of a 4.1 s module compile. The cache keeps it
// precompiled once per compiler, flags, headers and CPU:
//   P.pch.hpp      one line, #include "kmr/exec/cpu_kernel.hpp"
//   P.pch.hpp.gch  its precompiled form (about 80 MB), written to a temp file and renamed into place
//   P.lock         flock()ed while it is built
// where P hashes that key. Modules are compiled with `-include P.pch.hpp`: GCC reads the .gch instead
// when it fits the command line (same flags: compile_header uses the module command) and otherwise reads the
// one-line text, so a stale or foreign .gch costs time, never a wrong module. The machine code is the same
// either way, so the module keys do not mention the prelude. A module that fails to compile with it and
// compiles without it drops it (drop_prelude): a damaged .gch is rebuilt, never trusted twice.
//
// The first module a process compiles does not wait for the prelude to be built (about 5 s): a single
// generic formula compiles as fast as before. From the second on (a gradient, the next formula) it is built
// and used, and later processes find it in the cache. A build that fails is not tried again in the same
// process (each try would cost a header compile). KMR_JIT_PCH=0 turns it off.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <mutex>

#include "jit_internal.hpp"
#include "kmr/runtime/jit.hpp"

namespace kmr {
namespace jit {
namespace detail {

namespace {

namespace fs = std::filesystem;

const char kKernelInclude[] = "#include \"kmr/exec/cpu_kernel.hpp\"";

std::atomic<int> modules_seen{0};  // module compiles asked of jit_prelude by this process
std::atomic<bool> build_failed{false};  // a failed build is not retried by every later module of the process
// One build per process; flock orders processes (and threads' descriptors). A fork()ed child gets a new
// one (fresh_prelude_lock_in_child): the thread that may hold the old one across a build is not in it.
std::mutex* g_build_mu = new std::mutex();

bool enabled(const std::string& compiler_id) {
  const std::string env = getenv_str("KMR_JIT_PCH");
  if (env == "0") return false;
  // clang looks for .pch, not .gch, next to an -include: it would parse the text each time (correct, no
  // gain) after a build it cannot use. Only GCC builds one.
  return compiler_id.find("clang") == std::string::npos;
}

std::string prelude_key(const std::string& include_dir, const std::string& compiler_id) {
  return "pykmr-jit-pch/1\nversion=" + version_string() + "\ncompiler=" + compiler_id +
         "\nflags=" + compile_flags() + "\nheaders=" + headers_hash(include_dir) + "\ninclude=" + include_dir +
         "\ncpu=" + cpu_flags() + "\n";
}

bool usable(const std::string& gch) {
  std::error_code ec;
  return check_private_entry(gch) && fs::file_size(gch, ec) > 0 && !ec;
}

void remove_quietly(const std::string& path) {
  std::error_code ec;
  fs::remove(path, ec);
}

}  // namespace

std::string jit_prelude(const std::string& dir, const std::string& include_dir, const std::string& compiler_id,
                        const std::string& source) {
  if (!enabled(compiler_id) || source.compare(0, sizeof kKernelInclude - 1, kKernelInclude) != 0) return "";
  const bool first = modules_seen.fetch_add(1) == 0;
  const std::string hash = hash_hex(prelude_key(include_dir, compiler_id));
  const std::string base = dir + "/" + hash;
  const std::string header = base + ".pch.hpp", gch = header + ".gch";
  if (usable(gch)) return header;
  if (first || build_failed.load()) return "";
  std::lock_guard<std::mutex> guard(*g_build_mu);
  FileLock lock(base + ".lock");
  if (usable(gch)) return header;  // built by another process (or thread) meanwhile
  if (build_failed.load()) return "";
  if (lock.held()) remove_stale_temps(dir, hash);
  const std::string tmp = base + "." + unique_suffix();
  try {
    write_file_atomic(header, tmp + ".hpp",
                      "// pykmr JIT prelude (precompiled as this file's name + .gch)\n" + std::string(kKernelInclude) +
                          "\n");
    const auto t0 = std::chrono::steady_clock::now();
    const std::string tmp_gch = tmp + ".gch";
    try {
      compile_header(header, tmp_gch, include_dir, "the precompiled kernel header");
    } catch (...) {
      remove_quietly(tmp_gch);
      throw;
    }
    std::error_code ec;
    fs::permissions(tmp_gch, fs::perms::owner_read | fs::perms::owner_write, ec);
    if (!ec) fs::rename(tmp_gch, gch, ec);
    if (ec) {
      remove_quietly(tmp_gch);
      fail("cannot move " + tmp_gch + " to " + gch + ": " + ec.message());
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    char secs_text[32];
    std::snprintf(secs_text, sizeof secs_text, "%.2f", secs);
    log_line(std::string("precompiled the kernel header in ") + secs_text + " s (" + gch +
             "): later modules compile about twice as fast");
  } catch (const std::exception& e) {
    // A speed-up only: the modules compile from the text without it.
    build_failed.store(true);
    log_line(std::string("no precompiled kernel header (") + e.what() + "); modules compile from the text",
             LogLevel::Warning);
    return "";
  }
  return header;
}

void drop_prelude(const std::string& prelude) {
  log_line("the precompiled kernel header " + prelude + ".gch broke a compile that succeeds without it; removed",
           LogLevel::Warning);
  remove_quietly(prelude + ".gch");
}

void fresh_prelude_lock_in_child() { g_build_mu = new std::mutex(); }

}  // namespace detail
}  // namespace jit
}  // namespace kmr
