// Running the host compiler: command, identity, and one compilation, with
// posix_spawn (no shell: paths and user data are never parsed by sh).
#include <pthread.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <map>
#include <mutex>

#include "jit_internal.hpp"
#include "kmr/runtime/jit.hpp"

#if defined(__APPLE__)
#include <crt_externs.h>  // a dylib cannot link `environ` on macOS
#define KMR_ENVIRON (*_NSGetEnviron())
#else
extern char** environ;
#define KMR_ENVIRON environ
#endif

#ifndef KMR_CXX_COMPILER
#define KMR_CXX_COMPILER "c++"
#endif

namespace kmr {
namespace jit {
namespace detail {

namespace {

const std::size_t kMaxCapture = 1 << 20;  // bytes of compiler output kept
const std::size_t kMaxLogInError = 8000;  // bytes of it put in an exception

[[noreturn]] void missing_compiler(const std::string& what, const std::string& cmd, const std::string& reason) {
  fail("pykmr cannot compile " + what + ": the C++ compiler `" + cmd + "` " + reason +
       ". To fix it, install a C++17 compiler (e.g. apt-get install g++) or set CXX to one.");
}

}  // namespace

// Absolute path of the program `prog` would run, or "" if none.
std::string resolve_program(const std::string& prog) {
  char buf[PATH_MAX];
  if (prog.find('/') != std::string::npos) return ::realpath(prog.c_str(), buf) ? std::string(buf) : std::string();
  const std::string path = getenv_str("PATH");
  std::size_t start = 0;
  while (start <= path.size()) {
    std::size_t end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    const std::string dir = end > start ? path.substr(start, end - start) : std::string(".");
    const std::string cand = dir + "/" + prog;
    struct stat st;
    if (::stat(cand.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(cand.c_str(), X_OK) == 0)
      return ::realpath(cand.c_str(), buf) ? std::string(buf) : cand;
    start = end + 1;
  }
  return std::string();
}

namespace {

std::string describe_status(int status) {
  if (status == -1) return "an unknown status";
  if (WIFEXITED(status)) return "status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "signal " + std::to_string(WTERMSIG(status));
  return "status " + std::to_string(status);
}

std::string join(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) s += (s.empty() ? "" : " ") + a;
  return s;
}

}  // namespace

std::vector<std::string> split_command(const std::string& cmd) {
  std::vector<std::string> out;
  std::string cur;
  bool have = false;
  char quote = 0;
  for (std::size_t i = 0; i < cmd.size(); ++i) {
    const char c = cmd[i];
    if (quote) {
      if (c == quote)
        quote = 0;
      else if (c == '\\' && quote == '"' && i + 1 < cmd.size())
        cur += cmd[++i];
      else
        cur += c;
    } else if (c == '\'' || c == '"') {
      quote = c;
      have = true;
    } else if (c == '\\' && i + 1 < cmd.size()) {
      cur += cmd[++i];
      have = true;
    } else if (c == ' ' || c == '\t' || c == '\n') {
      if (have) out.push_back(cur);
      cur.clear();
      have = false;
    } else {
      cur += c;
      have = true;
    }
  }
  if (have) out.push_back(cur);
  return out;
}

namespace {
// Held from the pipe's creation until the parent has closed its write end, and by fork() (pthread_atfork
// prepare; a wait of milliseconds that needs no GIL): a child forked in between would keep a copy of the
// write end, and the compile would wait forever for the end of its output (and the child for its lock).
std::mutex g_spawn_mu;
void lock_spawn() { g_spawn_mu.lock(); }
void unlock_spawn() { g_spawn_mu.unlock(); }
[[maybe_unused]] const int g_spawn_fork = ::pthread_atfork(lock_spawn, unlock_spawn, unlock_spawn);
}  // namespace

ProcessResult run_process(const std::vector<std::string>& args) {
  ProcessResult r;
  if (args.empty()) {
    r.spawn_error = ENOENT;
    return r;
  }
  std::unique_lock<std::mutex> spawning(g_spawn_mu);
  int fds[2];
#if defined(__APPLE__)  // no pipe2: close-on-exec set right after (no fork of ours can run in between)
  if (::pipe(fds) != 0 || ::fcntl(fds[0], F_SETFD, FD_CLOEXEC) != 0 || ::fcntl(fds[1], F_SETFD, FD_CLOEXEC) != 0)
    fail(std::string("pykmr cannot create a pipe: ") + std::strerror(errno));
#else
  if (::pipe2(fds, O_CLOEXEC) != 0) fail(std::string("pykmr cannot create a pipe: ") + std::strerror(errno));
#endif
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);  // a host may ignore SIGPIPE; the compiler should not inherit that
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int rc = ::posix_spawnp(&pid, argv[0], &fa, &attr, argv.data(), KMR_ENVIRON);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  ::close(fds[1]);
  spawning.unlock();
  if (rc != 0) {
    ::close(fds[0]);
    r.spawn_error = rc;
    return r;
  }
  char buf[8192];
  for (;;) {
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n > 0) {
      if (r.output.size() < kMaxCapture) r.output.append(buf, static_cast<std::size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  ::close(fds[0]);
  int status = 0;
  pid_t w;
  do {
    w = ::waitpid(pid, &status, 0);
  } while (w < 0 && errno == EINTR);
  r.status = w == pid ? status : -1;  // -1: reaped elsewhere (SIGCHLD ignored)
  return r;
}

std::string truncate_log(const std::string& log, std::size_t max_bytes) {
  if (log.size() <= max_bytes) return log;
  const std::size_t tail = max_bytes / 4, head = max_bytes - tail;
  return log.substr(0, head) + "\n[... " + std::to_string(log.size() - head - tail) + " bytes omitted ...]\n" +
         log.substr(log.size() - tail);
}

namespace {
struct Identities {
  std::mutex mu;
  std::map<std::string, std::string> known;
};
// A fork()ed child starts a fresh table (see cache.cpp's state).
Identities* g_identities = new Identities();
void fresh_identities_in_child() { g_identities = new Identities(); }
[[maybe_unused]] const int g_identities_fork = ::pthread_atfork(nullptr, nullptr, fresh_identities_in_child);
}  // namespace

std::string compiler_identity_for(const std::string& what) {
  const std::string cmd = compiler_command();
  std::mutex& mu = g_identities->mu;
  auto* known = &g_identities->known;
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = known->find(cmd);
    if (it != known->end()) return it->second;
  }
  const std::vector<std::string> argv = split_command(cmd);
  if (argv.empty()) missing_compiler(what, cmd, "is empty");
  const std::string path = resolve_program(argv[0]);
  if (path.empty())
    missing_compiler(what, cmd,
                     argv[0].find('/') != std::string::npos
                         ? "was not found (no such executable file)"
                         : "was not found (looked for `" + argv[0] + "` in PATH" +
                               (getenv_str("CXX").empty() ? std::string(", and for c++, g++, clang++") : "") + ")");
  std::vector<std::string> version = argv;
  version.push_back("--version");
  const ProcessResult r = run_process(version);
  if (r.spawn_error) missing_compiler(what, cmd, std::string("could not be run: ") + std::strerror(r.spawn_error));
  if (r.status != -1 && !(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0))
    missing_compiler(what, cmd,
                     "failed to run `--version` (" + describe_status(r.status) + "): " + truncate_log(r.output, 2000));
  std::string first = r.output.substr(0, r.output.find('\n'));
  if (first.empty()) missing_compiler(what, cmd, "printed nothing for `--version`");
  const std::string id = first + " [" + path + "]";
  std::lock_guard<std::mutex> lock(mu);
  known->emplace(cmd, id);
  return id;
}

namespace {

// The compiler, the module flags and the include folders: modules and the precompiled header are built
// with the same command (GCC uses a .gch only when the flags match those it was made with).
std::vector<std::string> compiler_argv(const std::string& include_dir, const std::string& what) {
  const std::string cmd = compiler_command();
  std::vector<std::string> argv = split_command(cmd);
  if (argv.empty()) missing_compiler(what, cmd, "is empty");
  for (const auto& f : split_command(compile_flags())) argv.push_back(f);
  argv.push_back("-I" + include_dir);
  // xsimd: the copy installed beside the kmr headers (wheels, make install) first; else the one libkmr
  // was built against, searched after the system folders (-idirafter: when it is one of them, they
  // must keep their order for #include_next).
  if (::access((include_dir + "/kmr/third_party/xsimd/xsimd.hpp").c_str(), R_OK) == 0) {
    argv.push_back("-isystem");
    argv.push_back(include_dir + "/kmr/third_party");
  }
#ifdef KMR_XSIMD_INCLUDE_DIR
  else if (::access(KMR_XSIMD_INCLUDE_DIR "/xsimd/xsimd.hpp", R_OK) == 0) {
    argv.push_back("-idirafter");
    argv.push_back(KMR_XSIMD_INCLUDE_DIR);
  }
#endif
  return argv;
}

void run_compiler(std::vector<std::string> argv, const std::string& src, const std::string& out,
                  const std::string& what) {
  argv.push_back("-o");
  argv.push_back(out);
  argv.push_back(src);
  const ProcessResult r = run_process(argv);
  if (r.spawn_error)
    missing_compiler(what, compiler_command(), std::string("could not be run: ") + std::strerror(r.spawn_error));
  struct stat st;
  const bool produced = ::stat(out.c_str(), &st) == 0 && st.st_size > 0;
  const bool ok = r.status == -1 ? produced : (WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0 && produced);
  if (!ok)
    fail("pykmr failed to compile " + what + " (the compiler exited with " + describe_status(r.status) +
         ").\n  source: " + src + "\n  command: " + join(argv) + "\n  compiler output:\n" +
         truncate_log(r.output, kMaxLogInError));
}

}  // namespace

void compile_shared_object(const std::string& src, const std::string& out, const std::string& include_dir,
                           const std::string& what, const std::string& prelude) {
  std::vector<std::string> argv = compiler_argv(include_dir, what);
  if (!prelude.empty()) {  // GCC reads <prelude>.gch in its place when that fits these flags
    argv.push_back("-include");
    argv.push_back(prelude);
  }
  run_compiler(std::move(argv), src, out, what);
}

void compile_header(const std::string& header, const std::string& out, const std::string& include_dir,
                    const std::string& what) {
  std::vector<std::string> argv = compiler_argv(include_dir, what);
  argv.push_back("-x");
  argv.push_back("c++-header");
  run_compiler(std::move(argv), header, out, what);
}

}  // namespace detail

std::string compiler_command() {
  // Found at run time: a wheel's build-time compiler (e.g. /opt/rh/gcc-toolset-*/...) is absent on users'
  // machines, so it comes last and only if it exists.
  const std::string cxx = detail::getenv_str("CXX");
  if (!cxx.empty()) return cxx;
  for (const char* prog : {"c++", "g++", "clang++"})
    if (!detail::resolve_program(prog).empty()) return prog;
  const std::string built = build_compiler();
  if (!built.empty() && !detail::resolve_program(built).empty()) return built;
  return "c++";  // absent: compiler_identity() says what to install
}

std::string build_compiler() { return KMR_JIT_MACRO_TEXT(KMR_CXX_COMPILER); }

std::string compiler_identity() { return detail::compiler_identity_for("kernels"); }

// -ffp-contract=fast: a * b + c may become one FMA (as in the precompiled kernels, built in GNU
// mode); no -ffast-math, which would break NaN and inf propagation.
// Arm compilers (Apple clang above all) take -mcpu=native, not -march=native.
std::string compile_flags() {
#if defined(__aarch64__) || defined(__arm64__)
  return "-std=c++17 -O3 -mcpu=native -ffp-contract=fast -fPIC -shared -fno-math-errno";
#else
  return "-std=c++17 -O3 -march=native -ffp-contract=fast -fPIC -shared -fno-math-errno";
#endif
}

}  // namespace jit
}  // namespace kmr
