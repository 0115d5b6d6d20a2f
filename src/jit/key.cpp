// The full key of a JIT module: everything that changes the machine code.
#include <pthread.h>

#include <sys/utsname.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

#include "jit_internal.hpp"
#include "kmr/runtime/jit.hpp"

namespace kmr {
namespace jit {
namespace detail {

namespace fs = std::filesystem;

// Hash of the relative path and contents of every file under <dir>/kmr, in
// sorted order. The modules include these headers, so an edited header is a
// new key even without a version bump. Computed once per folder and process.
namespace {
struct HeaderHashes {
  std::mutex mu;  // held while the files are read (tens of ms)
  std::map<std::string, std::string> by_dir;
};
// A fork()ed child starts a fresh table (see cache.cpp's state: the mutex may be held by a thread that is
// not in the child).
HeaderHashes* g_hashes = new HeaderHashes();
void fresh_hashes_in_child() { g_hashes = new HeaderHashes(); }
[[maybe_unused]] const int g_hashes_fork = ::pthread_atfork(nullptr, nullptr, fresh_hashes_in_child);
}  // namespace

std::string headers_hash(const std::string& include_dir) {
  HeaderHashes& tables = *g_hashes;
  std::lock_guard<std::mutex> lock(tables.mu);
  auto* cache = &tables.by_dir;
  auto it = cache->find(include_dir);
  if (it != cache->end()) return it->second;

  const fs::path root = fs::path(include_dir) / "kmr";
  std::vector<std::string> files;
  std::error_code ec;
  for (fs::recursive_directory_iterator d(root, ec), end; !ec && d != end; d.increment(ec)) {
    std::error_code ec2;
    if (d->is_regular_file(ec2)) files.push_back(fs::relative(d->path(), root, ec2).generic_string());
  }
  if (ec) fail("pykmr cannot read its headers under " + root.string() + ": " + ec.message());
  std::sort(files.begin(), files.end());

  Fnv128 h;
  for (const auto& rel : files) {
    std::ifstream in(root / rel, std::ios::binary);
    if (!in) fail("pykmr cannot read the header " + (root / rel).string());
    std::ostringstream body;
    body << in.rdbuf();
    const std::string text = body.str();
    const std::string head = rel + '\0' + std::to_string(text.size()) + '\0';
    h.update(head);
    h.update(text);
  }
  const std::string hex = h.hex();
  cache->emplace(include_dir, hex);
  return hex;
}

// The CPU's feature list (x86 "flags", ARM "Features") and machine name: with
// -march=native a cache shared between machines must not load foreign code.
std::string cpu_flags() {
  static const std::string flags = [] {
    std::string found;
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (found.empty() && std::getline(in, line)) {
      if (line.rfind("flags", 0) == 0 || line.rfind("Features", 0) == 0) {
        const auto colon = line.find(':');
        if (colon != std::string::npos) found = line.substr(colon + 1);
      }
    }
    // Trim and collapse runs of blanks so the text is stable.
    std::istringstream words(found);
    std::string w, out;
    while (words >> w) out += (out.empty() ? "" : " ") + w;
    struct utsname u;
    const std::string machine = ::uname(&u) == 0 ? std::string(u.machine) : std::string("unknown");
    return machine + ": " + (out.empty() ? std::string("unknown") : out);
  }();
  return flags;
}

std::string full_key_text(const std::string& key_text, const std::string& source, const std::string& compiler_id,
                          const std::string& include_dir) {
  std::string k;
  k.reserve(key_text.size() + 2048);
  k += "pykmr-jit-module/1\n";
  k += "version=" + version_string() + "\n";
  k += "key=";
  for (char c : key_text) {  // the key must stay one C string
    if (c == '\0')
      k += "\\x00";
    else
      k += c;
  }
  k += "\n";
  k += "source=" + hash_hex(source) + "\n";
  k += "compiler=" + compiler_id + "\n";
  k += "flags=" + compile_flags() + "\n";
  k += "headers=" + headers_hash(include_dir) + "\n";
  k += "cpu=" + cpu_flags() + "\n";
  return k;
}

std::string key_function_source(const std::string& key) {
  std::string lit;
  lit.reserve(key.size() + 64);
  for (unsigned char c : key) {
    if (c == '\\' || c == '"' || c == '?') {  // '?': no trigraph can form
      lit += '\\';
      lit += static_cast<char>(c);
    } else if (c == '\n') {
      lit += "\\n";
    } else if (c >= 0x20 && c < 0x7f) {
      lit += static_cast<char>(c);
    } else {  // three octal digits: never swallows the next character
      const char oct[5] = {'\\', static_cast<char>('0' + ((c >> 6) & 7)), static_cast<char>('0' + ((c >> 3) & 7)),
                           static_cast<char>('0' + (c & 7)), 0};
      lit += oct;
    }
  }
  return "\n// Appended by the pykmr JIT: the full key of this module, checked on load.\n"
         "extern \"C\" __attribute__((visibility(\"default\"), used)) const char* kmr_module_key() {\n"
         "  return \"" +
         lit + "\";\n}\n";
}

}  // namespace detail
}  // namespace jit
}  // namespace kmr
