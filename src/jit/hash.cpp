// FNV-1a 128-bit hash naming the cache entries.
#include "jit_internal.hpp"

namespace kmr {
namespace jit {
namespace detail {

// h *= p (mod 2^128) with p = 2^88 + 0x13b, the FNV 128-bit prime:
// h * 0x13b plus h << 88, in two 64-bit halves.
void Fnv128::update(const void* data, std::size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  const std::uint64_t c = 0x13b;
  std::uint64_t hi = hi_, lo = lo_;
  for (std::size_t i = 0; i < n; ++i) {
    lo ^= p[i];
    const std::uint64_t carry = ((lo >> 32) * c + (((lo & 0xffffffffULL) * c) >> 32)) >> 32;  // high half of lo*c
    hi = hi * c + carry + (lo << 24);
    lo = lo * c;
  }
  hi_ = hi;
  lo_ = lo;
}

std::string Fnv128::hex() const {
  static const char digits[] = "0123456789abcdef";
  std::string s(32, '0');
  for (int i = 0; i < 16; ++i) {
    s[static_cast<std::size_t>(15 - i)] = digits[(hi_ >> (4 * i)) & 0xf];
    s[static_cast<std::size_t>(31 - i)] = digits[(lo_ >> (4 * i)) & 0xf];
  }
  return s;
}

std::string hash_hex(std::string_view s) {
  Fnv128 h;
  h.update(s);
  return h.hex();
}

bool is_hash_hex(std::string_view s) {
  if (s.size() != 32) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

}  // namespace detail
}  // namespace jit
}  // namespace kmr
