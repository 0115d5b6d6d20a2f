// Internal to the runtime formula parser: tokens, number literals and error
// messages that point at a position of the source text.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace kmr {
namespace detail {

// A text being parsed; `what` names it in messages ("formula", "alias").
struct Source {
  std::string text;
  std::string what;
};

// Throws kmr::Error(Value) "kmr: <msg> at position <pos> in <what>:\n  <text>\n  <caret>".
[[noreturn]] void throw_at(const Source& src, std::size_t pos, const std::string& msg);

// The source text of [b, e), shortened when long, for messages.
std::string excerpt(const Source& src, std::size_t b, std::size_t e);

enum class TokKind { Name, Int, Decimal, Punct, Holder, End };

struct Token {
  TokKind kind;
  std::size_t pos;  // first character
  std::size_t end;  // one past the last character
  std::string text;
};

// Splits `src` into tokens (the last one is End). `$0`, `$1`... (Holder) are
// accepted only when allow_holders (composite expansions).
std::vector<Token> tokenize(const Source& src, bool allow_holders);

// "name 'X'", "number '3'", "'+'", "the end of the formula".
std::string describe(const Source& src, const Token& t);

// "unexpected name 'X'", "unexpected end of the formula".
std::string unexpected(const Source& src, const Token& t);

// Value of an Int token, negated when `negative`; range-checked.
long long int_literal(const Source& src, const Token& t, bool negative);

// Exact value p/q (q >= 1, reduced) of a Decimal token; false when it is no ratio of 64-bit integers.
bool decimal_literal(const Token& t, long long& p, long long& q);

// A number literal that is no 64-bit ratio, as FpCst's parameters: the nearest double MD 2^ED and the
// nearest float MF 2^EF (EF = 128: beyond the float range, +inf), both correctly rounded; an underflow
// gives 0 (as Python's float), an overflow of the double range is an error.
void float_literal(const Source& src, const Token& t, std::vector<long long>& ip);

// p/q reduced with q > 0 (q != 0 on entry); false if out of the 64-bit range.
bool reduce_ratio(long long p, long long q, long long& rp, long long& rq);

}  // namespace detail
}  // namespace kmr
