// The host JIT and its disk cache: build, in-process and disk hits, recovery
// from bad entries, concurrent builds, refusals of unsafe caches, errors.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "kmr/runtime/error.hpp"
#include "kmr/runtime/jit.hpp"

namespace jit = kmr::jit;

namespace {

// (Not from __FILE__: wheel builds map source paths away with -ffile-prefix-map.)
std::string default_include_dir() { return KMR_TEST_INCLUDE_DIR; }

using Fn = int (*)(int);

// A tiny module: kmr_test_fn(x) = x + k.
jit::CompileRequest request(int k, const std::string& tag = "") {
  jit::CompileRequest r;
  r.source = "extern \"C\" int kmr_test_fn(int x) { return x + " + std::to_string(k) + "; }\n";
  r.key_text = "test-module(" + std::to_string(k) + ")" + tag;
  r.description = "test module " + std::to_string(k) + tag;
  return r;
}

Fn load(const jit::CompileRequest& r) { return reinterpret_cast<Fn>(jit::get_symbol(r, "kmr_test_fn")); }

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> out;
  if (DIR* d = opendir(dir.c_str())) {
    while (const dirent* e = readdir(d)) {
      const std::string n = e->d_name;
      if (n != "." && n != "..") out.push_back(n);
    }
    closedir(d);
  }
  return out;
}

std::vector<std::string> with_suffix(const std::string& dir, const std::string& suffix) {
  std::vector<std::string> out;
  for (const auto& n : list_dir(dir))
    if (n.size() >= suffix.size() && n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0)
      out.push_back(dir + "/" + n);
  return out;
}

int count_containing(const std::string& dir, const std::string& part) {
  int c = 0;
  for (const auto& n : list_dir(dir)) c += n.find(part) != std::string::npos;
  return c;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Replaces `path` by a new file holding `bytes`, the way a writer that
// renames would (rewriting it in place would change the pages this process
// has mapped, which no writer of the cache does).
void replace_file(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".test-new";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << bytes;
  }
  ASSERT_EQ(chmod(tmp.c_str(), 0700), 0);
  ASSERT_EQ(rename(tmp.c_str(), path.c_str()), 0);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const kmr::Error& e) {
    EXPECT_EQ(e.kind(), kmr::ErrorKind::Runtime);
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not a kmr::Error: " << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no exception thrown";
  return "";
}

// Child process of DiskCacheHitFromAnotherProcess: runs before gtest starts,
// with fresh in-process state, and exits with 0 only on a clean disk hit.
const int kChildHook = [] {
  const char* k = std::getenv("KMR_JIT_TEST_CHILD");
  if (!k) return 0;
  try {
    Fn f = load(request(std::atoi(k)));
    const jit::Stats s = jit::stats();
    if (f(1) != 1 + std::atoi(k)) _exit(3);
    _exit(s.compilations == 0 && s.disk_hits == 1 ? 0 : 4);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "child: %s\n", e.what());
    _exit(2);
  }
}();

class Jit : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kmr_jit_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    dir_ = root_ + "/cache";
    save("KMR_CACHE_DIR");
    save("KMR_INCLUDE_DIR");
    save("KMR_QUIET");
    save("CXX");
    save("XDG_CACHE_HOME");
    setenv("KMR_CACHE_DIR", dir_.c_str(), 1);
    if (!std::getenv("KMR_INCLUDE_DIR")) setenv("KMR_INCLUDE_DIR", default_include_dir().c_str(), 1);
    setenv("KMR_QUIET", "1", 1);
    jit::reset_in_process_cache_for_testing();
  }
  void TearDown() override {
    for (const auto& [name, value] : saved_) {
      if (value.first)
        setenv(name.c_str(), value.second.c_str(), 1);
      else
        unsetenv(name.c_str());
    }
    jit::reset_in_process_cache_for_testing();
    const std::string cmd = "rm -rf '" + root_ + "'";
    if (std::system(cmd.c_str()) != 0) ADD_FAILURE() << "cannot remove " << root_;
  }
  void save(const char* name) {
    const char* v = std::getenv(name);
    saved_.push_back({name, {v != nullptr, v ? v : ""}});
  }
  std::string only_so() {
    auto v = with_suffix(dir_, ".so");
    EXPECT_EQ(v.size(), 1u);
    return v.empty() ? std::string() : v[0];
  }

  std::string root_, dir_;
  std::vector<std::pair<std::string, std::pair<bool, std::string>>> saved_;
};

TEST_F(Jit, CompilesAndCalls) {
  const auto before = jit::stats();
  Fn f = load(request(1));
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f(41), 42);
  EXPECT_EQ(jit::stats().compilations, before.compilations + 1);
  EXPECT_EQ(jit::cache_dir(), dir_);
  const std::string so = only_so();
  const std::string src = so.substr(0, so.size() - 3) + ".cpp";
  const std::string text = read_file(src);
  EXPECT_NE(text.find("kmr_test_fn"), std::string::npos);
  EXPECT_NE(text.find("kmr_module_key"), std::string::npos);
  EXPECT_EQ(count_containing(dir_, "tmp."), 0);
  struct stat st;
  ASSERT_EQ(stat(dir_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_GT(jit::cache_size_bytes(), 0u);
}

TEST_F(Jit, SecondCallHitsInProcessMap) {
  Fn f1 = load(request(2));
  const auto mid = jit::stats();
  const auto files = list_dir(dir_);
  Fn f2 = load(request(2));
  EXPECT_EQ(f1, f2);
  EXPECT_EQ(jit::stats().memory_hits, mid.memory_hits + 1);
  EXPECT_EQ(jit::stats().compilations, mid.compilations);
  EXPECT_EQ(list_dir(dir_), files);
}

TEST_F(Jit, DifferentKeysAreDifferentEntries) {
  EXPECT_EQ(load(request(3, "a"))(0), 3);
  EXPECT_EQ(load(request(3, "b"))(0), 3);
  EXPECT_EQ(with_suffix(dir_, ".so").size(), 2u);
}

TEST_F(Jit, KeyTextWithAnyBytesRoundTrips) {
  jit::CompileRequest r = request(19);
  r.key_text = std::string("Exp(\"q\"?\?=\\x\n\t\xc3\xa9\x01", 17) + std::string(1, '\0') + "end";
  EXPECT_EQ(load(r)(0), 19);
  jit::reset_in_process_cache_for_testing();
  const auto before = jit::stats();
  EXPECT_EQ(load(r)(0), 19);  // the embedded key matched: a disk hit, not a rebuild
  EXPECT_EQ(jit::stats().disk_hits, before.disk_hits + 1);
  EXPECT_EQ(jit::stats().rejected_entries, before.rejected_entries);
}

TEST_F(Jit, DiskCacheHitFromAnotherProcess) {
  EXPECT_EQ(load(request(4))(1), 5);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {  // exec the test binary afresh: kChildHook does the work
    setenv("KMR_JIT_TEST_CHILD", "4", 1);
    execl("/proc/self/exe", "test_jit", static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "127: exec failed, 2: error, 3: wrong result, 4: not a clean disk hit";
  // The same process, with its in-process map forgotten, also reads the disk.
  jit::reset_in_process_cache_for_testing();
  const auto before = jit::stats();
  EXPECT_EQ(load(request(4))(1), 5);
  EXPECT_EQ(jit::stats().disk_hits, before.disk_hits + 1);
  EXPECT_EQ(jit::stats().compilations, before.compilations);
}

TEST_F(Jit, CorruptedEntryIsRebuilt) {
  EXPECT_EQ(load(request(5))(0), 5);
  const std::string so = only_so();
  for (int round = 0; round < 2; ++round) {
    if (round == 0)
      replace_file(so, read_file(so).substr(0, 100));  // cut short
    else
      replace_file(so, "this is not an ELF file");
    jit::reset_in_process_cache_for_testing();
    const auto before = jit::stats();
    EXPECT_EQ(load(request(5))(10), 15);
    EXPECT_EQ(jit::stats().rejected_entries, before.rejected_entries + 1);
    EXPECT_EQ(jit::stats().compilations, before.compilations + 1);
    EXPECT_EQ(only_so(), so);
  }
}

TEST_F(Jit, WrongEmbeddedKeyIsRebuilt) {
  EXPECT_EQ(load(request(6))(0), 6);
  const std::string so6 = only_so();
  EXPECT_EQ(load(request(7))(0), 7);
  std::string so7;
  for (const auto& p : with_suffix(dir_, ".so"))
    if (p != so6) so7 = p;
  ASSERT_FALSE(so7.empty());
  // Put module 7 where module 6 belongs: loadable, but the wrong key.
  replace_file(so6, read_file(so7));
  jit::reset_in_process_cache_for_testing();
  const auto before = jit::stats();
  EXPECT_EQ(load(request(6))(0), 6);
  EXPECT_EQ(jit::stats().rejected_entries, before.rejected_entries + 1);
  EXPECT_EQ(jit::stats().compilations, before.compilations + 1);
}

TEST_F(Jit, ConcurrentProcessesCompileOnce) {
  const int n = 8;
  int gate[2];
  ASSERT_EQ(pipe(gate), 0);
  const std::uint64_t built_before = jit::stats().compilations;  // inherited by the children
  std::vector<pid_t> pids;
  for (int i = 0; i < n; ++i) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(gate[1]);
      char c;
      while (read(gate[0], &c, 1) < 0 && errno == EINTR) {
      }
      try {
        Fn f = load(request(8));
        if (f(1) != 9) _exit(3);
        _exit(jit::stats().compilations > built_before ? 1 : 0);  // 1: this one compiled
      } catch (const std::exception& e) {
        std::fprintf(stderr, "child: %s\n", e.what());
        _exit(2);
      }
    }
    pids.push_back(pid);
  }
  close(gate[0]);
  close(gate[1]);  // all children start now
  int compiled = 0;
  for (pid_t pid : pids) {
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    const int code = WEXITSTATUS(status);
    EXPECT_TRUE(code == 0 || code == 1) << "child exit code " << code;
    compiled += code == 1;
  }
  EXPECT_EQ(compiled, 1);
  EXPECT_EQ(with_suffix(dir_, ".so").size(), 1u);
  EXPECT_EQ(count_containing(dir_, "tmp."), 0);
}

TEST_F(Jit, ConcurrentThreadsShareOneBuild) {
  const auto before = jit::stats();
  std::vector<Fn> got(8, nullptr);
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i)
    threads.emplace_back([&got, i] {
      try {
        got[static_cast<std::size_t>(i)] = load(request(16 + i % 2));
      } catch (...) {
      }
    });
  for (auto& t : threads) t.join();
  for (int i = 0; i < 8; ++i) {
    ASSERT_NE(got[static_cast<std::size_t>(i)], nullptr);
    EXPECT_EQ(got[static_cast<std::size_t>(i)], got[static_cast<std::size_t>(i % 2)]);
    EXPECT_EQ(got[static_cast<std::size_t>(i)](0), 16 + i % 2);
  }
  EXPECT_EQ(jit::stats().compilations, before.compilations + 2);
}

// fork() while another thread builds a module: the child loads the module itself (once the parent's build
// releases the cache file's lock) instead of waiting forever on an in-process mutex or an inherited flock.
TEST_F(Jit, ForkWhileAnotherThreadCompilesLeavesAWorkingChild) {
  for (int delay_ms : {20, 400}) {  // while the key is made, while the compiler runs
    SCOPED_TRACE("fork " + std::to_string(delay_ms) + " ms after the compile started");
    jit::CompileRequest r = request(40 + delay_ms, "-fork");
    r.source = "#include <regex>\nint kmr_slow(const char* s) { return std::regex_match(s, std::regex(\"a+\")); }\n" +
               r.source;  // about a second of compiling: both forks land in it
    std::thread compiling([&r] {
      try {
        load(r);
      } catch (...) {
      }
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      int code = 3;
      try {
        code = load(r)(1) == 41 + delay_ms && load(request(7, "-fork-child"))(1) == 8 ? 0 : 4;
      } catch (...) {
      }
      ::_exit(code);
    }
    int status = 0;
    pid_t done = 0;
    for (int waited_ms = 0; waited_ms < 120000 && done == 0; waited_ms += 20) {
      done = ::waitpid(pid, &status, WNOHANG);
      if (done == 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (done == 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
    }
    compiling.join();
    EXPECT_NE(done, 0) << "the child was still waiting after 120 s";
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  }
}

TEST_F(Jit, StaleTempFilesAreSwept) {
  load(request(18));
  const std::string so = only_so();
  const std::string hash = so.substr(dir_.size() + 1, 32);
  ASSERT_EQ(unlink(so.c_str()), 0);
  std::ofstream(dir_ + "/" + hash + ".tmp.1.0123456789abcdef.so") << "left by a killed compiler";
  jit::reset_in_process_cache_for_testing();
  EXPECT_EQ(load(request(18))(1), 19);
  EXPECT_EQ(count_containing(dir_, "tmp."), 0);
}

TEST_F(Jit, SourceCanIncludeKmrHeaders) {
  jit::CompileRequest r;
  r.source = "#include \"kmr/config.hpp\"\nextern \"C\" int kmr_test_fn(int x) { return x * 3; }\n";
  r.key_text = "includes-headers";
  r.description = "a module including kmr headers";
  EXPECT_EQ(reinterpret_cast<Fn>(jit::get_symbol(r, "kmr_test_fn"))(5), 15);
}

TEST_F(Jit, WorldWritableCacheDirIsRefused) {
  ASSERT_EQ(mkdir(dir_.c_str(), 0700), 0);
  ASSERT_EQ(chmod(dir_.c_str(), 0777), 0);
  const std::string msg = error_of([&] { load(request(9)); });
  EXPECT_NE(msg.find(dir_), std::string::npos) << msg;
  EXPECT_NE(msg.find("writable by group or others"), std::string::npos) << msg;
  EXPECT_NE(msg.find("KMR_CACHE_DIR"), std::string::npos) << msg;
  EXPECT_NE(error_of([] { jit::cache_dir(); }).find("0777"), std::string::npos);
}

TEST_F(Jit, EntryOwnedByAnotherUserIsRefused) {
  if (geteuid() != 0) GTEST_SKIP() << "changing a file's owner needs root";
  EXPECT_EQ(load(request(10))(0), 10);
  const std::string so = only_so();
  ASSERT_EQ(chown(so.c_str(), 65534, 65534), 0);
  jit::reset_in_process_cache_for_testing();
  const std::string msg = error_of([] { load(request(10)); });
  EXPECT_NE(msg.find(so), std::string::npos) << msg;
  EXPECT_NE(msg.find("owned by uid 65534"), std::string::npos) << msg;
}

TEST_F(Jit, GroupWritableEntryIsRefused) {
  EXPECT_EQ(load(request(11))(0), 11);
  const std::string so = only_so();
  ASSERT_EQ(chmod(so.c_str(), 0770), 0);
  jit::reset_in_process_cache_for_testing();
  const std::string msg = error_of([] { load(request(11)); });
  EXPECT_NE(msg.find(so), std::string::npos) << msg;
  EXPECT_NE(msg.find("writable by group or others"), std::string::npos) << msg;
}

TEST_F(Jit, MissingCompilerSaysWhatToInstall) {
  setenv("CXX", "/nonexistent", 1);
  const std::string msg = error_of([] { load(request(12)); });
  EXPECT_NE(msg.find("cannot compile test module 12"), std::string::npos) << msg;
  EXPECT_NE(msg.find("/nonexistent"), std::string::npos) << msg;
  EXPECT_NE(msg.find("install a C++17 compiler (e.g. apt-get install g++) or set CXX"), std::string::npos) << msg;
  EXPECT_NE(error_of([] { jit::compiler_identity(); }).find("/nonexistent"), std::string::npos);
}

TEST_F(Jit, SyntaxErrorShowsLogAndSource) {
  jit::CompileRequest r;
  r.source = "extern \"C\" int kmr_test_fn(int x) { return x + ; }\n";
  r.key_text = "broken";
  r.description = "a broken module";
  const std::string msg = error_of([&] { jit::get_symbol(r, "kmr_test_fn"); });
  EXPECT_NE(msg.find("failed to compile a broken module"), std::string::npos) << msg;
  EXPECT_NE(msg.find("error"), std::string::npos) << msg;         // the compiler's log
  EXPECT_NE(msg.find("return x + ;"), std::string::npos) << msg;  // quoted by the compiler
  const auto sources = with_suffix(dir_, ".cpp");
  ASSERT_EQ(sources.size(), 1u);
  EXPECT_NE(msg.find("source: " + sources[0]), std::string::npos) << msg;
  EXPECT_TRUE(with_suffix(dir_, ".so").empty());
  EXPECT_EQ(count_containing(dir_, "tmp."), 0);
}

TEST_F(Jit, MissingSymbolIsAnError) {
  const std::string msg = error_of([] { jit::get_symbol(request(13), "no_such_symbol"); });
  EXPECT_NE(msg.find("no_such_symbol"), std::string::npos) << msg;
}

TEST_F(Jit, LogsOneLinePerCompilation) {
  unsetenv("KMR_QUIET");
  ::testing::internal::CaptureStderr();
  load(request(14));
  load(request(14));
  const std::string err = ::testing::internal::GetCapturedStderr();
  const std::regex line(R"(\[pykmr\] compiled test module 14 in [0-9]+\.[0-9]{2} s \(/.*\.so\)\n)");
  EXPECT_TRUE(std::regex_match(err, line)) << err;
}

TEST_F(Jit, ClearCacheRemovesOnlyEntries) {
  load(request(15));
  std::ofstream(dir_ + "/notes.txt") << "keep me";
  EXPECT_GT(jit::cache_size_bytes(), 7u);
  jit::clear_cache();
  EXPECT_EQ(list_dir(dir_), std::vector<std::string>{"notes.txt"});
  EXPECT_EQ(jit::cache_size_bytes(), 7u);
}

// A module that includes the kernel header first, as every formula module does (src/jit/pch.cpp).
jit::CompileRequest kernel_request(int k) {
  jit::CompileRequest r = request(k, "-kernel");
  r.source = "#include \"kmr/exec/cpu_kernel.hpp\"\n" + r.source;
  return r;
}

TEST_F(Jit, KernelHeaderIsPrecompiledOnceAndADamagedOneIsReplaced) {
  save("KMR_JIT_PCH");
  unsetenv("KMR_JIT_PCH");
  if (jit::compiler_identity().find("clang") != std::string::npos) GTEST_SKIP() << "GCC-only precompiled header";
  EXPECT_EQ(load(kernel_request(21))(1), 22);
  EXPECT_EQ(load(kernel_request(22))(1), 23);  // from the second module of a process on: built and used
  auto gch = with_suffix(dir_, ".pch.hpp.gch");
  ASSERT_EQ(gch.size(), 1u);
  EXPECT_EQ(with_suffix(dir_, ".pch.hpp").size(), 1u);
  EXPECT_EQ(count_containing(dir_, "tmp."), 0);
  replace_file(gch[0], read_file(gch[0]).substr(0, 4096));  // cut short: GCC stops with a fatal error
  EXPECT_EQ(load(kernel_request(23))(1), 24);                // compiled without it, and it is removed
  EXPECT_TRUE(with_suffix(dir_, ".pch.hpp.gch").empty());
  EXPECT_EQ(load(kernel_request(24))(1), 25);  // built again
  EXPECT_EQ(with_suffix(dir_, ".pch.hpp.gch").size(), 1u);
  jit::clear_cache();
  EXPECT_TRUE(list_dir(dir_).empty());
  setenv("KMR_JIT_PCH", "0", 1);
  jit::reset_in_process_cache_for_testing();
  EXPECT_EQ(load(kernel_request(25))(1), 26);
  EXPECT_EQ(load(kernel_request(26))(1), 27);
  EXPECT_TRUE(with_suffix(dir_, ".pch.hpp.gch").empty());
}

TEST_F(Jit, AFailedHeaderBuildIsNotRetriedByEachModule) {
  save("KMR_JIT_PCH");
  unsetenv("KMR_JIT_PCH");
  const std::string real = jit::compiler_command();
  if (jit::compiler_identity().find("clang") != std::string::npos) GTEST_SKIP() << "GCC-only precompiled header";
  // A compiler that refuses to precompile headers (and counts the tries), and compiles modules normally.
  const std::string wrapper = root_ + "/cxx.sh", tries = root_ + "/header-tries";
  std::ofstream(wrapper) << "#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = c++-header ] && { echo x >> '" << tries
                         << "'; exit 1; }; done\nexec " << real << " \"$@\"\n";
  ASSERT_EQ(chmod(wrapper.c_str(), 0700), 0);
  setenv("CXX", wrapper.c_str(), 1);
  for (int k = 31; k < 34; ++k) EXPECT_EQ(load(kernel_request(k))(1), k + 1);
  EXPECT_TRUE(with_suffix(dir_, ".pch.hpp.gch").empty());
  EXPECT_EQ(read_file(tries), "x\n");  // one try, then the modules compile from the text
}

TEST_F(Jit, DefaultCacheDirFollowsXdg) {
  unsetenv("KMR_CACHE_DIR");
  setenv("XDG_CACHE_HOME", root_.c_str(), 1);
  const std::string dir = jit::cache_dir();
  EXPECT_EQ(dir.rfind(root_ + "/pykmr/", 0), 0u) << dir;
  struct stat st;
  ASSERT_EQ(stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
}

TEST_F(Jit, IncludeDirAndCompilerIdentity) {
  EXPECT_EQ(access((jit::include_dir() + "/kmr/config.hpp").c_str(), R_OK), 0);
  setenv("KMR_INCLUDE_DIR", root_.c_str(), 1);
  EXPECT_NE(error_of([] { jit::include_dir(); }).find("kmr/config.hpp"), std::string::npos);
  const std::string id = jit::compiler_identity();
  EXPECT_NE(id.find(" [/"), std::string::npos) << id;
  EXPECT_NE(jit::compile_flags().find("-march=native"), std::string::npos);
}

}  // namespace
