// NVRTC output in the kernel cache folder of the host JIT (same safety rules:
// private folder and entries, temp files renamed into place, one flock()ed
// build per entry across processes). Entry of a full key hashing to H:
//   H.cubin or H.ptx  the image, exactly what NVRTC produced (loadable by any tool)
//   H.key             the full key, then the image's size and hash: checked on load
//   H.cu              the source, kept for debugging (named in compile errors)
//   H.lock            flock()ed while a process checks or builds the entry
// The image is renamed into place before H.key, both under the lock; a reader
// that sees a new image with an old or missing H.key finds no valid entry and
// goes through the lock. Invalid entries are overwritten, never fatal.
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>

#include "jit/jit_internal.hpp"
#include "kernels.hpp"
#include "kmr/runtime/jit.hpp"
#include "nvrtc.hpp"

namespace kmr {
namespace cuda {

namespace {

using jit::detail::hash_hex;

std::string full_key(const std::string& key_text, const std::string& source, const std::string& target,
                     const std::string& include_dir) {
  const NvrtcApi& api = nvrtc();
  std::string k = "pykmr-cuda-module/1\n";
  k += "version=" + jit::detail::version_string() + "\n";
  k += "key=" + key_text + "\n";
  k += "source=" + hash_hex(source) + "\n";
  k += "nvrtc=" + std::to_string(api.major) + "." + std::to_string(api.minor) + "\n";
  k += "target=" + target + "\n";
  std::string opts;
  for (const auto& o : nvrtc_options()) opts += o + " ";
  k += "options=" + opts + "\n";
  k += "headers=" + jit::detail::headers_hash(include_dir) + "\n";
  return k;
}

std::string image_stamp(const std::string& image) {
  return "image=" + std::to_string(image.size()) + ":" + hash_hex(image) + "\n";
}

// The entry's image if H.key and the image are there, private, and agree.
bool load_valid(const std::string& base, const std::string& ext, const std::string& key, std::string* image) {
  const std::string key_path = base + ".key", img_path = base + ext;
  if (!jit::detail::check_private_entry(key_path) || !jit::detail::check_private_entry(img_path)) return false;
  std::string stored, img;
  if (!jit::detail::read_file(key_path, &stored) || !jit::detail::read_file(img_path, &img)) return false;
  if (stored != key + image_stamp(img)) return false;
  *image = std::move(img);
  return true;
}

struct Slot {
  std::mutex mu;
  bool done = false;
  CachedImage img;
};

std::mutex& slots_mutex() {
  static std::mutex mu;
  return mu;
}
std::map<std::string, std::shared_ptr<Slot>>& slots() {
  static auto* m = new std::map<std::string, std::shared_ptr<Slot>>();
  return *m;
}

CachedImage load_or_build(const std::string& source, const std::string& key_text, const std::string& target,
                          const std::string& what, bool rebuild) {
  const std::string inc = jit::include_dir();
  const std::string key = full_key(key_text, source, target, inc);
  const std::string dir = jit::cache_dir();
  const std::string hash = hash_hex(key);
  const std::string base = dir + "/" + hash;
  const std::string ext = target.rfind("sm_", 0) == 0 ? ".cubin" : ".ptx";
  CachedImage out;
  out.path = base + ext;
  if (!rebuild && load_valid(base, ext, key, &out.image)) {
    out.from_disk = true;
    return out;
  }
  jit::detail::FileLock lock(base + ".lock");
  if (!rebuild && load_valid(base, ext, key, &out.image)) {  // built by another process meanwhile
    out.from_disk = true;
    return out;
  }
  if (lock.held()) jit::detail::remove_stale_temps(dir, hash);
  const std::string tmp = base + "." + jit::detail::unique_suffix();
  const std::string src_path = base + ".cu";
  jit::detail::write_file_atomic(src_path, tmp + ".cu", source + "\n// pykmr key:\n/*\n" + key + "*/\n");
  const auto t0 = std::chrono::steady_clock::now();
  NvrtcResult r = nvrtc_compile(source, target, inc, src_path, what);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  jit::detail::write_file_atomic(out.path, tmp + ext, r.image);
  jit::detail::write_file_atomic(base + ".key", tmp + ".key", key + image_stamp(r.image));
  char secs_text[32];
  std::snprintf(secs_text, sizeof secs_text, "%.2f", secs);
  jit::detail::log_line("compiled " + what + " for " + target + " with NVRTC in " + secs_text + " s (" + out.path +
                        ")");
  out.image = std::move(r.image);
  return out;
}

}  // namespace

CachedImage nvrtc_cached(const std::string& source, const std::string& key_text, const std::string& target,
                         const std::string& what, bool rebuild) {
  const std::string slot_key = target + "\n" + key_text + "\n" + source;
  std::shared_ptr<Slot> slot;
  {
    std::lock_guard<std::mutex> lock(slots_mutex());
    auto& s = slots()[slot_key];
    if (!s) s = std::make_shared<Slot>();
    slot = s;
  }
  std::lock_guard<std::mutex> lock(slot->mu);
  if (!slot->done || rebuild) {
    slot->img = load_or_build(source, key_text, target, what, rebuild);
    slot->done = true;
  }
  return slot->img;
}

void reset_nvrtc_memory_for_testing() {
  std::lock_guard<std::mutex> lock(slots_mutex());
  slots().clear();
}

}  // namespace cuda
}  // namespace kmr
