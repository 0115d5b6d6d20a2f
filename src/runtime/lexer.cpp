// Tokens, exact number literals and positioned error messages of the
// formula parser.
#include "lexer.hpp"

#include <charconv>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "kmr/runtime/error.hpp"

namespace kmr {
namespace detail {

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

std::string show_char(char c) {
  const unsigned char u = (unsigned char)c;
  if (u < 0x20 || u >= 0x7f) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "\\x%02X", u);
    return buf;
  }
  return std::string(1, c);
}

}  // namespace

[[noreturn]] void throw_at(const Source& src, std::size_t pos, const std::string& msg) {
  std::string line = src.text;
  for (char& c : line)  // one line, so that the caret lines up
    if ((unsigned char)c < 0x20 || (unsigned char)c == 0x7f) c = ' ';
  if (pos > line.size()) pos = line.size();
  throw Error(ErrorKind::Value, "kmr: " + msg + " at position " + std::to_string(pos) + " in " + src.what +
                                    ":\n  " + line + "\n  " + std::string(pos, ' ') + "^");
}

std::string excerpt(const Source& src, std::size_t b, std::size_t e) {
  if (b > src.text.size()) b = src.text.size();
  if (e > src.text.size()) e = src.text.size();
  if (e < b) e = b;
  std::string s = src.text.substr(b, e - b);
  for (char& c : s)
    if ((unsigned char)c < 0x20) c = ' ';
  constexpr std::size_t kMax = 60;
  if (s.size() > kMax) s = s.substr(0, kMax - 3) + "...";
  return s;
}

std::vector<Token> tokenize(const Source& src, bool allow_holders) {
  const std::string& s = src.text;
  const std::size_t n = s.size();
  for (std::size_t i = 0; i < n; ++i)  // before anything, so later carets line up
    if ((unsigned char)s[i] >= 0x80)
      throw_at(src, i, "non-ASCII character (byte " + show_char(s[i]) + ")");
  std::vector<Token> out;
  std::size_t i = 0;
  while (i < n) {
    const char c = s[i];
    const std::size_t b = i;
    if (is_space(c)) {
      ++i;
    } else if (is_alpha(c)) {
      while (i < n && (is_alpha(s[i]) || is_digit(s[i]))) ++i;
      out.push_back({TokKind::Name, b, i, s.substr(b, i - b)});
    } else if (is_digit(c) || (c == '.' && i + 1 < n && is_digit(s[i + 1]))) {
      bool decimal = false;
      while (i < n && is_digit(s[i])) ++i;
      if (i < n && s[i] == '.') {
        decimal = true;
        ++i;
        while (i < n && is_digit(s[i])) ++i;
      }
      if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        std::size_t j = i + 1;
        if (j < n && (s[j] == '+' || s[j] == '-')) ++j;
        if (j >= n || !is_digit(s[j]))
          throw_at(src, i, "malformed number '" + s.substr(b, j - b) + "': the exponent has no digits");
        decimal = true;
        i = j;
        while (i < n && is_digit(s[i])) ++i;
      }
      if (i < n && (is_alpha(s[i]) || s[i] == '.'))
        throw_at(src, i, "unexpected character '" + show_char(s[i]) + "' after the number '" + s.substr(b, i - b) + "'");
      out.push_back({decimal ? TokKind::Decimal : TokKind::Int, b, i, s.substr(b, i - b)});
    } else if (c == '$' && allow_holders) {
      ++i;
      while (i < n && is_digit(s[i])) ++i;
      out.push_back({TokKind::Holder, b, i, s.substr(b + 1, i - b - 1)});
    } else if (std::strchr("+-*/(),|=", c) != nullptr) {
      ++i;
      out.push_back({TokKind::Punct, b, i, std::string(1, c)});
    } else {
      throw_at(src, i, "unexpected character '" + show_char(c) + "'");
    }
  }
  out.push_back({TokKind::End, n, n, ""});
  return out;
}

std::string describe(const Source& src, const Token& t) {
  switch (t.kind) {
    case TokKind::Name: return "name '" + t.text + "'";
    case TokKind::Int:
    case TokKind::Decimal: return "number '" + t.text + "'";
    case TokKind::Holder: return "'$" + t.text + "'";
    case TokKind::Punct: return "'" + t.text + "'";
    case TokKind::End: break;
  }
  return "the end of the " + src.what;
}

std::string unexpected(const Source& src, const Token& t) {
  if (t.kind == TokKind::End) return "unexpected end of the " + src.what;
  return "unexpected " + describe(src, t);
}

long long int_literal(const Source& src, const Token& t, bool negative) {
  const unsigned long long limit = negative ? (unsigned long long)LLONG_MAX + 1ULL : (unsigned long long)LLONG_MAX;
  unsigned long long v = 0;
  for (char c : t.text) {
    const unsigned d = (unsigned)(c - '0');
    if (v > (limit - d) / 10) throw_at(src, t.pos, "integer " + std::string(negative ? "-" : "") + t.text + " is out of the 64-bit range");
    v = v * 10 + d;
  }
  if (negative) return v == (unsigned long long)LLONG_MAX + 1ULL ? LLONG_MIN : -(long long)v;
  return (long long)v;
}

namespace {

// Decimal digit strings (no leading zeros) as unbounded naturals.
unsigned mod_small(const std::string& digits, unsigned d) {
  unsigned r = 0;
  for (char c : digits) r = (r * 10 + (unsigned)(c - '0')) % d;
  return r;
}
std::string div_small(const std::string& digits, unsigned d) {
  std::string q;
  unsigned r = 0;
  for (char c : digits) {
    r = r * 10 + (unsigned)(c - '0');
    if (!q.empty() || r / d != 0) q += (char)('0' + r / d);
    r %= d;
  }
  return q.empty() ? "0" : q;
}
bool to_ll(const std::string& digits, long long& out) {
  unsigned long long v = 0;
  for (char c : digits) {
    const unsigned d = (unsigned)(c - '0');
    if (v > ((unsigned long long)LLONG_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  out = (long long)v;
  return true;
}

}  // namespace

bool decimal_literal(const Token& t, long long& p, long long& q) {
  const std::string& s = t.text;
  std::string digits;
  long long exp10 = 0;
  std::size_t i = 0;
  while (i < s.size() && is_digit(s[i])) digits += s[i++];
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && is_digit(s[i])) {
      digits += s[i++];
      --exp10;
    }
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    bool neg = false;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
    long long e = 0;
    while (i < s.size() && is_digit(s[i])) {
      if (e < 100000000) e = e * 10 + (s[i] - '0');  // saturates: far beyond any representable value
      ++i;
    }
    exp10 += neg ? -e : e;
  }
  const std::size_t first = digits.find_first_not_of('0');
  if (first == std::string::npos) {  // zero
    p = 0;
    q = 1;
    return true;
  }
  digits = digits.substr(first);
  while (digits.back() == '0') {
    digits.pop_back();
    ++exp10;
  }
  if (exp10 >= 0) {  // an integer
    if ((long long)digits.size() + exp10 > 19) return false;
    digits.append((std::size_t)exp10, '0');
    if (!to_ll(digits, p)) return false;
    q = 1;
    return true;
  }
  // digits / 10^k, digits not a multiple of 10: cancel its 2s or its 5s.
  // A representable value has p < 2^63 and q = 2^(k-twos) 5^(k-fives) < 2^63,
  // so digits < 2^63 * 5^27 or < 2^63 * 2^62: at most 64 digits.
  if (digits.size() > 64) return false;
  const long long k = -exp10;
  long long twos = 0, fives = 0;
  while (twos < k && mod_small(digits, 2) == 0) {
    digits = div_small(digits, 2);
    ++twos;
  }
  while (fives < k && mod_small(digits, 5) == 0) {
    digits = div_small(digits, 5);
    ++fives;
  }
  if (k - twos > 62 || k - fives > 27 || !to_ll(digits, p)) return false;
  unsigned long long den = 1;
  for (long long j = 0; j < k - twos; ++j) den *= 2;
  for (long long j = 0; j < k - fives; ++j) {
    if (den > (unsigned long long)LLONG_MAX / 5) return false;
    den *= 5;
  }
  if (den > (unsigned long long)LLONG_MAX) return false;
  q = (long long)den;
  return true;
}

namespace {
// v = m 2^e with m odd (or 0): the exact value of a double or a float, in integers.
void split_binary(double v, long long& m, long long& e) {
  m = 0;
  e = 0;
  if (v == 0) return;
  int x = 0;
  const double f = std::frexp(v, &x);  // v = f 2^x, 0.5 <= |f| < 1
  m = (long long)std::ldexp(f, 53);    // exact: 53 bits
  e = (long long)x - 53;
  while ((m & 1) == 0) {
    m /= 2;
    ++e;
  }
}
}  // namespace

void float_literal(const Source& src, const Token& t, std::vector<long long>& ip) {
  const std::string& s = t.text;
  const char* b = s.data();
  const char* e = b + s.size();
  // Decimal exponent of the leading digit, to tell an underflow (-> 0, as Python's float) from an overflow.
  long long lead = 0;
  {
    std::size_t i = 0, nint = 0;
    bool seen = false;
    long long frac_zeros = 0;
    while (i < s.size() && is_digit(s[i])) {
      if (s[i] != '0' || seen) seen = true, ++nint;
      ++i;
    }
    if (i < s.size() && s[i] == '.') {
      ++i;
      while (i < s.size() && is_digit(s[i]) && !seen) {
        if (s[i] != '0') seen = true;
        else ++frac_zeros;
        ++i;
      }
      while (i < s.size() && is_digit(s[i])) ++i;
    }
    long long ex = 0;
    if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
      ++i;
      const bool neg = i < s.size() && s[i] == '-';
      if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
      for (; i < s.size() && is_digit(s[i]); ++i)
        if (ex < 100000000) ex = ex * 10 + (s[i] - '0');
      ex = neg ? -ex : ex;
    }
    lead = (nint > 0 ? (long long)nint - 1 : -frac_zeros - 1) + ex;
  }
  // std::from_chars rounds correctly (to nearest, ties to even) and ignores the locale.
  double d = 0;
  auto rd = std::from_chars(b, e, d);
  if (rd.ec == std::errc::result_out_of_range) {
    if (lead > 0)
      throw_at(src, t.pos, "the number '" + s + "' is beyond the range of a double (about 1.8e308)");
    d = 0;
  } else if (rd.ec != std::errc() || rd.ptr != e) {
    throw_at(src, t.pos, "malformed number '" + s + "'");
  }
  float f = 0;
  long long mf = 0, ef = 0;
  auto rf = std::from_chars(b, e, f);
  if (rf.ec == std::errc::result_out_of_range) {
    if (lead > 0) {
      mf = 1;  // beyond the float range: +inf in float kernels, as IEEE rounding gives
      ef = 128;
    }
  } else {
    split_binary(f, mf, ef);
  }
  long long md = 0, ed = 0;
  split_binary(d, md, ed);
  ip = {md, ed, mf, ef};
}

bool reduce_ratio(long long p, long long q, long long& rp, long long& rq) {
  // magnitudes as unsigned so that LLONG_MIN is fine
  const bool neg = (p < 0) != (q < 0);
  unsigned long long a = p < 0 ? 0ULL - (unsigned long long)p : (unsigned long long)p;
  unsigned long long b = q < 0 ? 0ULL - (unsigned long long)q : (unsigned long long)q;
  unsigned long long x = a, y = b;
  while (y != 0) {
    const unsigned long long r = x % y;
    x = y;
    y = r;
  }
  a /= x;
  b /= x;
  const unsigned long long amax = (unsigned long long)LLONG_MAX + (neg ? 1ULL : 0ULL);
  if (a > amax || b > (unsigned long long)LLONG_MAX) return false;
  rp = neg ? (a == (unsigned long long)LLONG_MAX + 1ULL ? LLONG_MIN : -(long long)a) : (long long)a;
  rq = (long long)b;
  return true;
}

}  // namespace detail
}  // namespace kmr
