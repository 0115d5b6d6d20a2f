// get_symbol: in-process map, then the disk cache, then the compiler.
//
// Disk entry of a module whose full key hashes to H (32 hex digits):
//   H.so    the module, written to a temp file and renamed into place
//   H.cpp   its source (with the key function appended), kept for debugging
//   H.lock  flock()ed while a process checks or builds the entry
// (and the precompiled kernel header, P.pch.hpp and P.pch.hpp.gch: pch.cpp)
// Temp files are named H.tmp.<pid>.<random>.*; clear_cache() removes only
// files named H.*.
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <unordered_map>
#include <vector>

#include "jit_internal.hpp"
#include "kmr/runtime/jit.hpp"

namespace kmr {
namespace jit {

namespace {

using detail::fail;

struct Slot {
  std::mutex mu;           // held while this module is looked up or built
  void* handle = nullptr;  // dlopen handle, kept for the process life
};

struct State {
  std::mutex mu;
  // key_text -> (source, slot) pairs. The rest of the full key (compiler,
  // headers, CPU) does not change within a process in a way that matters.
  std::unordered_map<std::string, std::vector<std::pair<std::string, std::shared_ptr<Slot>>>> slots;
  // Paths dlopen()ed by this process: glibc returns the already loaded
  // object for a name it has seen, so such a path is reloaded via a new name.
  std::set<std::string> loaded_paths;
  std::atomic<std::uint64_t> memory_hits{0}, disk_hits{0}, compilations{0}, rejected{0};
};

// Never destroyed: modules outlive static destructors. A fork()ed child starts a fresh one (the old one
// leaks): a thread of the parent may hold a Slot's mutex across a build, and that thread is not in the
// child. Waiting for it before the fork (a pthread_atfork prepare handler) could deadlock: the forking
// thread may hold the GIL that the building thread needs to log. Modules loaded before the fork stay
// loaded; the child finds them again through the cache files.
State* g_state = new State();
void fresh_state_in_child() {
  g_state = new State();
  detail::fresh_prelude_lock_in_child();
}
[[maybe_unused]] const int g_state_fork = ::pthread_atfork(nullptr, nullptr, fresh_state_in_child);

State& state() { return *g_state; }

using detail::FileLock;
using detail::for_each_entry;
using detail::log_line;
using detail::remove_stale_temps;
using detail::unique_suffix;
using detail::write_file_atomic;

enum class Load { Missing, Ok, Bad };

// Loads the entry at `path` if it exists and embeds `key`. Throws when the
// entry is not private to the user (see check_private_entry); Bad (with
// `why`) when it cannot be loaded or is not the module asked for.
Load try_load(const std::string& path, const std::string& key, void** handle, std::string* why) {
  if (!detail::check_private_entry(path)) return Load::Missing;
  State& s = state();
  bool seen;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    seen = s.loaded_paths.count(path) != 0;
  }
  std::string load_path = path;
  if (seen) {  // a new name, so that dlopen reads the file again
    load_path = path + "." + unique_suffix() + ".so";
    if (::link(path.c_str(), load_path.c_str()) != 0) load_path = path;
  }
  void* h = ::dlopen(load_path.c_str(), RTLD_NOW | RTLD_LOCAL);
  const char* err = h ? nullptr : ::dlerror();
  if (load_path != path) ::unlink(load_path.c_str());
  if (!h) {
    *why = std::string("dlopen failed: ") + (err ? err : "unknown error");
    return Load::Bad;
  }
  {
    std::lock_guard<std::mutex> lock(s.mu);
    s.loaded_paths.insert(path);
  }
  using KeyFn = const char* (*)();
  auto fn = reinterpret_cast<KeyFn>(::dlsym(h, "kmr_module_key"));
  if (!fn) {
    *why = "it does not export kmr_module_key";
  } else {
    const char* got = fn();
    if (got && key == got) {
      *handle = h;
      return Load::Ok;
    }
    *why = "its embedded key is not the expected one (stale, foreign or colliding entry)";
  }
  ::dlclose(h);
  return Load::Bad;
}

void reject(const std::string& path, const std::string& why) {
  log_line("cache entry " + path + " is unusable (" + why + "); deleting and recompiling it",
           LogLevel::Warning);
  ::unlink(path.c_str());
  state().rejected++;
}

// Loads the entry, rejecting a bad one; nullptr when there is none.
void* load_valid(const std::string& path, const std::string& key) {
  void* h = nullptr;
  std::string why;
  switch (try_load(path, key, &h, &why)) {
    case Load::Ok:
      return h;
    case Load::Bad:
      reject(path, why);
      return nullptr;
    case Load::Missing:
      return nullptr;
  }
  return nullptr;
}

void* load_or_build(const CompileRequest& req, const std::string& what) {
  const std::string inc = include_dir();
  const std::string key = detail::full_key_text(req.key_text, req.source, detail::compiler_identity_for(what), inc);
  const std::string dir = cache_dir();
  const std::string hash = detail::hash_hex(key);
  const std::string base = dir + "/" + hash;
  const std::string so = base + ".so";
  State& s = state();

  if (void* h = load_valid(so, key)) {
    s.disk_hits++;
    return h;
  }
  FileLock lock(base + ".lock");
  if (void* h = load_valid(so, key)) {  // built by another process meanwhile
    s.disk_hits++;
    return h;
  }
  if (lock.held()) remove_stale_temps(dir, hash);
  const std::string src = base + ".cpp";
  const std::string tmp = base + "." + unique_suffix();  // <hash>.tmp.<pid>.<random>
  write_file_atomic(src, tmp + ".cpp", req.source + detail::key_function_source(key));
  const std::string tmp_so = tmp + ".so";
  const std::string prelude = detail::jit_prelude(dir, inc, detail::compiler_identity_for(what), req.source);
  const auto t0 = std::chrono::steady_clock::now();
  try {
    detail::compile_shared_object(src, tmp_so, inc, what, prelude);
  } catch (...) {
    ::unlink(tmp_so.c_str());
    if (prelude.empty()) throw;
    // Without the precompiled header: when that compiles, the header was at fault (damaged file).
    try {
      detail::compile_shared_object(src, tmp_so, inc, what);
    } catch (...) {
      ::unlink(tmp_so.c_str());
      throw;
    }
    detail::drop_prelude(prelude);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (::chmod(tmp_so.c_str(), 0700) != 0 || ::rename(tmp_so.c_str(), so.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp_so.c_str());
    fail("pykmr cannot move the compiled module " + tmp_so + " to " + so + ": " + std::strerror(err));
  }
  s.compilations++;
  char secs_text[32];
  std::snprintf(secs_text, sizeof secs_text, "%.2f", secs);
  log_line("compiled " + what + " in " + secs_text + " s (" + so + ")");

  void* h = nullptr;
  std::string why;
  if (try_load(so, key, &h, &why) != Load::Ok)
    fail("pykmr compiled " + what + " but cannot load the result " + so + ": " + why +
         " (is the cache folder on a noexec file system? set KMR_CACHE_DIR elsewhere)");
  return h;
}

}  // namespace

void* get_symbol(const CompileRequest& req, const char* symbol) {
  if (!symbol || !*symbol) fail("pykmr: get_symbol called without a symbol name");
  const std::string what = req.description.empty() ? "module " + req.key_text.substr(0, 200) : req.description;
  State& s = state();
  std::shared_ptr<Slot> slot;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    auto& bucket = s.slots[req.key_text];
    for (const auto& entry : bucket)
      if (entry.first == req.source) slot = entry.second;
    if (!slot) {
      slot = std::make_shared<Slot>();
      bucket.emplace_back(req.source, slot);
    }
  }
  std::lock_guard<std::mutex> lock(slot->mu);  // one build per module, others wait
  if (slot->handle)
    s.memory_hits++;
  else
    slot->handle = load_or_build(req, what);
  void* sym = ::dlsym(slot->handle, symbol);
  if (!sym) fail("pykmr: the module compiled for " + what + " does not export the symbol `" + symbol + "`");
  return sym;
}

std::uint64_t cache_size_bytes() {
  const std::string dir = cache_dir();
  std::uint64_t total = 0;
  for_each_entry(dir, [&](const std::string& name) {
    struct stat st;
    if (::lstat((dir + "/" + name).c_str(), &st) == 0 && S_ISREG(st.st_mode))
      total += static_cast<std::uint64_t>(st.st_size);
  });
  return total;
}

void clear_cache() {
  const std::string dir = cache_dir();
  std::vector<std::string> ours;
  for_each_entry(dir, [&](const std::string& name) {
    if (name.size() > 33 && name[32] == '.' && detail::is_hash_hex(std::string_view(name).substr(0, 32)))
      ours.push_back(name);
  });
  for (const auto& name : ours) ::unlink((dir + "/" + name).c_str());
}

Stats stats() {
  State& s = state();
  Stats out;
  out.memory_hits = s.memory_hits.load();
  out.disk_hits = s.disk_hits.load();
  out.compilations = s.compilations.load();
  out.rejected_entries = s.rejected.load();
  return out;
}

void reset_in_process_cache_for_testing() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  s.slots.clear();  // handles stay open: symbols handed out remain valid
}

}  // namespace jit
}  // namespace kmr
