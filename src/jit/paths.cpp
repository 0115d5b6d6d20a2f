// Where the JIT reads and writes: the cache folder (private to the user), its
// entries, and the include folder handed to the compiler.
#include <dlfcn.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "jit_internal.hpp"
#include "kmr/runtime/jit.hpp"

#ifndef KMR_VERSION
#define KMR_VERSION "0.0.0"
#endif

namespace kmr {
namespace jit {
namespace detail {

void fail(const std::string& msg) { throw Error(ErrorKind::Runtime, msg); }

std::string getenv_str(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

bool quiet() {
  const std::string q = getenv_str("KMR_QUIET");
  return !q.empty() && q != "0";
}

std::string unquote(const char* stringized) {
  std::string s(stringized ? stringized : "");
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
  return s;
}

std::string version_string() {
  std::string v = KMR_JIT_MACRO_TEXT(KMR_VERSION);
  return v.empty() ? std::string("0.0.0") : v;
}

namespace {

std::string octal_mode(mode_t m) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(m & 07777));
  return buf;
}

std::string home_dir() {
  std::string home = getenv_str("HOME");
  if (!home.empty()) return home;
  struct passwd pw;
  struct passwd* res = nullptr;
  std::vector<char> buf(16384);
  if (getpwuid_r(geteuid(), &pw, buf.data(), buf.size(), &res) == 0 && res && res->pw_dir) return res->pw_dir;
  fail(
      "pykmr cannot find a cache folder: HOME is not set and the user has no home directory; "
      "set KMR_CACHE_DIR to a private folder");
}

bool file_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string real_path(const std::string& path) {
  char buf[PATH_MAX];
  return ::realpath(path.c_str(), buf) ? std::string(buf) : std::string();
}

std::string parent_dir(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? std::string("/") : path.substr(0, slash);
}

}  // namespace

void make_dirs(const std::string& path) {
  if (path.empty()) fail("pykmr: empty cache folder path");
  std::string cur;
  std::size_t pos = 0;
  while (pos != std::string::npos) {
    const std::size_t next = path.find('/', pos + 1);
    cur = path.substr(0, next);
    pos = next;
    if (cur.empty() || cur == "/") continue;
    if (::mkdir(cur.c_str(), 0700) != 0 && errno != EEXIST) {
      const int err = errno;
      fail("pykmr cannot create the kernel cache folder " + cur + " (for " + path + "): " + std::strerror(err) +
           "; set KMR_CACHE_DIR to a writable private folder");
    }
  }
}

void check_private_dir(const std::string& path, const char* what) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    const int err = errno;
    fail(std::string("pykmr cannot use the ") + what + " " + path + ": " + std::strerror(err));
  }
  if (!S_ISDIR(st.st_mode)) fail(std::string("pykmr cannot use the ") + what + " " + path + ": it is not a folder");
  if (st.st_uid != geteuid())
    fail(std::string("pykmr refuses the ") + what + " " + path + ": it is owned by uid " + std::to_string(st.st_uid) +
         ", not by you (uid " + std::to_string(geteuid()) +
         "), so its owner could plant code that pykmr would load and run. "
         "Set KMR_CACHE_DIR to a folder you own (it is created with mode 0700).");
  if (st.st_mode & (S_IWGRP | S_IWOTH))
    fail(std::string("pykmr refuses the ") + what + " " + path + ": it is writable by group or others (mode " +
         octal_mode(st.st_mode) +
         "), so another user could plant code that pykmr would load and run. "
         "Fix it with `chmod go-w " +
         path + "` (or chmod 700), or set KMR_CACHE_DIR to a private folder.");
}

bool check_private_entry(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return false;
    const int err = errno;
    fail("pykmr cannot read the cache entry " + path + ": " + std::strerror(err));
  }
  const std::string fix =
      " Delete it (or run clear_cache()) after checking where it came from, or set KMR_CACHE_DIR to a private folder.";
  if (!S_ISREG(st.st_mode))
    fail("pykmr refuses the cache entry " + path + ": it is not a regular file (a link or a special file), " +
         "which pykmr never writes." + fix);
  if (st.st_uid != geteuid())
    fail("pykmr refuses the cache entry " + path + ": it is owned by uid " + std::to_string(st.st_uid) +
         ", not by you (uid " + std::to_string(geteuid()) + "); loading it would run another user's code." + fix);
  if (st.st_mode & (S_IWGRP | S_IWOTH))
    fail("pykmr refuses the cache entry " + path + ": it is writable by group or others (mode " +
         octal_mode(st.st_mode) + "); loading it could run another user's code." + fix);
  return true;
}

}  // namespace detail

std::string cache_dir() {
  using namespace detail;
  std::string dir = getenv_str("KMR_CACHE_DIR");
  if (dir.empty()) {
    std::string base = getenv_str("XDG_CACHE_HOME");
    if (base.empty() || base[0] != '/') base = home_dir() + "/.cache";  // XDG: relative paths are ignored
    dir = base + "/pykmr/" + version_string();
  } else if (dir[0] != '/') {
    char cwd[PATH_MAX];
    if (!::getcwd(cwd, sizeof cwd)) fail("pykmr cannot resolve the relative KMR_CACHE_DIR " + dir);
    dir = std::string(cwd) + "/" + dir;
  }
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  make_dirs(dir);
  const std::string real = real_path(dir);
  if (real.empty()) fail("pykmr cannot resolve the kernel cache folder " + dir + ": " + std::strerror(errno));
  check_private_dir(real, "kernel cache folder");
  return real;
}

std::string include_dir() {
  using namespace detail;
  const char* marker = "/kmr/config.hpp";
  const std::string env = getenv_str("KMR_INCLUDE_DIR");
  if (!env.empty()) {
    if (!file_exists(env + marker))
      fail("KMR_INCLUDE_DIR=" + env +
           " does not contain kmr/config.hpp; point it at the folder that holds "
           "the kmr/ headers (or unset it)");
    return real_path(env);
  }
  std::vector<std::string> tried;
  Dl_info info;
  if (::dladdr(reinterpret_cast<void*>(&include_dir), &info) != 0 && info.dli_fname && info.dli_fname[0]) {
    const std::string lib = real_path(info.dli_fname);
    if (!lib.empty()) {
      const std::string libdir = parent_dir(lib);
      for (const char* rel : {"/include", "/../include", "/../../include"}) {
        const std::string cand = libdir + rel;
        tried.push_back(cand);
        if (file_exists(cand + marker)) return real_path(cand);
      }
    }
  }
#ifdef KMR_SOURCE_INCLUDE_DIR
  {
    const std::string cand = KMR_JIT_MACRO_TEXT(KMR_SOURCE_INCLUDE_DIR);
    tried.push_back(cand);
    if (!cand.empty() && file_exists(cand + marker)) return real_path(cand);
  }
#endif
  std::string list;
  for (const auto& t : tried) list += (list.empty() ? "" : ", ") + t;
  fail("pykmr cannot find its C++ headers (kmr/config.hpp) for the JIT; tried: " +
       (list.empty() ? std::string("nothing") : list) + ". Set KMR_INCLUDE_DIR to the folder that holds kmr/.");
}

}  // namespace jit
}  // namespace kmr
