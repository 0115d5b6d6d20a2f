// The disk-cache primitives shared by the host JIT (cache.cpp) and the CUDA
// kernel cache (src/cuda/module_cache.cpp): unique temp names, whole-file
// writes renamed into place, per-entry flock()s, listing and stale-temp removal.
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <vector>

#include "jit_internal.hpp"

namespace kmr {
namespace jit {
namespace detail {

namespace {
std::atomic<LogHandler> g_log_handler{nullptr};
}  // namespace

void log_line(const std::string& msg, LogLevel level) {
  const LogHandler h = g_log_handler.load();
  if (h && h(level, msg)) return;
  if (quiet()) return;
  std::fprintf(stderr, "[pykmr] %s\n", msg.c_str());
  std::fflush(stderr);
}

std::string unique_suffix() {
  static std::mutex mu;
  static std::mt19937_64 rng{[] {
    std::random_device rd;
    return (static_cast<std::uint64_t>(rd()) << 32) ^ rd() ^
           static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  }()};
  std::uint64_t r;
  {
    std::lock_guard<std::mutex> lock(mu);
    r = rng();
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "tmp.%ld.%016llx", static_cast<long>(::getpid()), static_cast<unsigned long long>(r));
  return buf;
}

FileLock::FileLock(const std::string& path) {
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd_ < 0) {
    const int err = errno;
    fail("pykmr cannot open the lock file " + path + ": " + std::strerror(err));
  }
  int rc;
  do {
    rc = ::flock(fd_, LOCK_EX);
  } while (rc != 0 && errno == EINTR);
  held_ = rc == 0;
}

// Unlocked explicitly: closing releases a flock only when no descriptor of the open file is left, and a
// fork()ed child inherits one (O_CLOEXEC acts on exec only): the lock would stay held until the child
// exits, and the child's own attempt to take it (a new open file) would wait forever.
FileLock::~FileLock() {
  if (held_) ::flock(fd_, LOCK_UN);
  ::close(fd_);
}

// Writes `text` to `tmp`, then renames it to `path`.
void write_file_atomic(const std::string& path, const std::string& tmp, const std::string& text) {
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    const int err = errno;
    fail("pykmr cannot write " + tmp + ": " + std::strerror(err));
  }
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      fail("pykmr cannot write " + tmp + ": " + std::strerror(err));
    }
    done += static_cast<std::size_t>(n);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    fail("pykmr cannot rename " + tmp + " to " + path + ": " + std::strerror(err));
  }
}

void for_each_entry(const std::string& dir, const std::function<void(const std::string&)>& f) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) {
    const int err = errno;
    fail("pykmr cannot list the kernel cache folder " + dir + ": " + std::strerror(err));
  }
  while (const dirent* e = ::readdir(d)) f(std::string(e->d_name));
  ::closedir(d);
}

// Removes <dir>/<hash>.tmp.* : under the entry's lock only a dead process
// (killed while compiling) can have left them.
void remove_stale_temps(const std::string& dir, const std::string& hash) {
  const std::string prefix = hash + ".tmp.";
  std::vector<std::string> stale;
  for_each_entry(dir, [&](const std::string& name) {
    if (name.compare(0, prefix.size(), prefix) == 0) stale.push_back(dir + "/" + name);
  });
  for (const auto& p : stale) ::unlink(p.c_str());
}

bool read_file(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream body;
  body << in.rdbuf();
  if (in.bad()) return false;
  *out = body.str();
  return true;
}

}  // namespace detail
void set_log_handler(LogHandler handler) { detail::g_log_handler.store(handler); }

}  // namespace jit
}  // namespace kmr
