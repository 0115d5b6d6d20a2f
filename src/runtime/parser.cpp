// Formula strings -> AST (with dimension checks) -> canonical ParsedFormula.
//
//   expr   := term (('+' | '-') term)*
//   term   := '-' term | factor (('*' | '/') factor)*     -a*b is Minus(Mult(a,b))
//   factor := '-' factor | primary                         a*-b is Mult(a,Minus(b))
//   primary:= number | NAME | NAME '(' args ')' | '(' expr ')' | '(' expr '|' expr ')'
//   alias  := NAME '=' (Vi|Vj|Pm|Vx|Vy) '(' [pos ','] dim ')' | NAME '=' Var '(' pos ',' dim ',' cat ')'
//
// The recursive descent keeps its recursive functions small (messages and
// node construction live in out-of-line helpers) and bounds its nesting, so
// that hostile input cannot exhaust even a small thread stack.
#include <algorithm>
#include <climits>
#include <map>
#include <string>
#include <vector>

#include "formula_internal.hpp"
#include "lexer.hpp"

#if defined(_MSC_VER)
#define KMR_PARSER_COLD __declspec(noinline)
#else
#define KMR_PARSER_COLD __attribute__((noinline))
#endif

namespace kmr {
namespace detail {
namespace {

constexpr long long kMaxPos = 1 << 20;  // largest user argument position
constexpr int kMaxNest = 256;           // nesting of parentheses, calls and unary minus in the text

const char* const kCatName[3] = {"Vi", "Vj", "Pm"};

// A parsed sub-expression with its source span and the size of its tree.
struct Node {
  ExprPtr e;
  std::size_t b = 0, end = 0;
  int depth = 1;
  long long size = 1;
};

struct Decl {
  int cat;
  int dim;
  std::string where;  // "alias 'X = Vi(3)'" or "'Vi(0,3)' in the formula"
};

struct Env {
  std::map<std::string, std::pair<int, int>> aliases;  // name -> (user position, alias index)
  std::map<int, Decl> decls;                           // user position -> declaration
};

std::string decl_text(long long pos, int cat, long long dim) {
  return std::string(kCatName[cat]) + "(" + std::to_string(pos) + "," + std::to_string(dim) + ")";
}

class Parser {
 public:
  // `src` is the text tokenized; spans of the nodes point into `span_src`
  // (the same, except for a composite expansion, whose nodes all take the
  // span `site` of the composite call in the user's formula).
  Parser(const Source& src, const Source& span_src, Env& env, const std::vector<Node>* holders, const Node* site)
      : src_(src), ssrc_(span_src), env_(env), holders_(holders), site_(site), toks_(tokenize(src, holders != nullptr)) {
    count_all_args();
  }

  Node parse_formula() {
    if (peek().kind == TokKind::End) throw_at(src_, 0, "empty " + src_.what);
    Node n = expr();
    if (peek().kind != TokKind::End)
      throw_at(src_, peek().pos, unexpected(src_, peek()) + ", expected an operator or the end of the formula");
    return n;
  }

  void parse_alias(int index) {
    const Token& name = peek();
    if (name.kind != TokKind::Name)
      throw_at(src_, name.pos, "expected an alias name (as in 'X = Vi(3)'), found " + describe(src_, name));
    advance();
    expect('=');
    const Token& cat = peek();
    if (cat.kind != TokKind::Name)
      throw_at(src_, cat.pos, "expected a variable category (Vi, Vj, Pm, Vx or Vy), found " + describe(src_, cat));
    const int vs = var_spelling(cat.text);
    if (vs < 0)
      throw_at(src_, cat.pos, "unknown variable category '" + cat.text + "' in alias '" + src_.text +
                                  "': expected Vi, Vj, Pm, Vx or Vy (or Var(pos,dim,cat))");
    advance();
    const int got = count_args();
    const std::string sig = vs == 3 ? "Var(pos,dim,cat)" : cat.text + "(dim) or " + cat.text + "(pos,dim)";
    if (got >= 0 && (vs == 3 ? got != 3 : (got != 1 && got != 2)))
      throw_at(src_, cat.pos, "wrong number of arguments for '" + cat.text + "' in alias: expected " + sig + ", got " +
                                  std::to_string(got));
    expect('(');
    std::vector<long long> p{int_param(cat.text, sig)};
    while (at(',')) {
      advance();
      p.push_back(int_param(cat.text, sig));
    }
    expect(')');
    if (vs == 3 ? p.size() != 3 : p.size() > 2)
      throw_at(src_, cat.pos, "wrong number of arguments for '" + cat.text + "' in alias: expected " + sig);
    if (peek().kind != TokKind::End) throw_at(src_, peek().pos, unexpected(src_, peek()) + " after the alias");
    if (is_reserved_name(name.text))
      throw_at(src_, name.pos, "alias name '" + name.text + "' is reserved (it names an operation or a variable category)");
    auto prev = env_.aliases.find(name.text);
    if (prev != env_.aliases.end())
      throw_at(src_, name.pos, "alias name '" + name.text + "' is declared twice (aliases " +
                                   std::to_string(prev->second.second) + " and " + std::to_string(index) + ")");
    const long long pos = p.size() == 1 ? index : p[0];
    const long long dim = p.size() == 1 ? p[0] : p[1];
    const long long c = vs == 3 ? p[2] : vs;
    if (c < 0 || c > 2)
      throw_at(src_, cat.pos, "invalid category " + std::to_string(c) + ": expected 0 (i), 1 (j) or 2 (parameter)");
    declare(pos, (int)c, dim, "alias '" + src_.text + "'", cat.pos);
    env_.aliases[name.text] = {(int)pos, index};
  }

 private:
  const Source& src_;
  const Source& ssrc_;
  Env& env_;
  const std::vector<Node>* holders_;
  const Node* site_;
  std::vector<Token> toks_;  // never resized after construction: references stay valid
  std::vector<int> argc_;
  std::size_t i_ = 0;
  int nest_ = 0;

  // Bounds the recursion of the parser itself.
  struct Nest {
    Parser& p;
    explicit Nest(Parser& parser) : p(parser) {
      if (++p.nest_ > kMaxNest) p.fail_nest();
    }
    ~Nest() { --p.nest_; }
  };
  [[noreturn]] KMR_PARSER_COLD void fail_nest() const {
    throw_at(src_, peek().pos, "formula is nested too deeply (more than " + std::to_string(kMaxNest) + " levels)");
  }

  const Token& peek() const { return toks_[i_]; }
  void advance() {
    if (toks_[i_].kind != TokKind::End) ++i_;
  }
  bool at(char c) const { return peek().kind == TokKind::Punct && peek().text[0] == c; }
  // Consumes the punctuation `c`; returns the end of its token.
  std::size_t expect(char c) {
    if (!at(c)) fail_expected(c);
    const std::size_t e = peek().end;
    advance();
    return e;
  }
  [[noreturn]] KMR_PARSER_COLD void fail_expected(char c) const {
    throw_at(src_, peek().pos, "expected '" + std::string(1, c) + "', found " + describe(src_, peek()));
  }

  // Arguments between the '(' at the current token and its ')', or -1 if unbalanced.
  int count_args() const { return at('(') ? argc_[i_] : -1; }

  // argc_[k] for every '(' token k, in one pass (nested calls stay linear).
  void count_all_args() {
    argc_.assign(toks_.size(), -1);
    std::vector<std::size_t> open;
    for (std::size_t k = 0; k < toks_.size(); ++k) {
      if (toks_[k].kind != TokKind::Punct) continue;
      const char c = toks_[k].text[0];
      if (c == '(') {
        open.push_back(k);
        argc_[k] = 1;
      } else if (c == ')' && !open.empty()) {
        if (open.back() + 1 == k) argc_[open.back()] = 0;  // "()"
        open.pop_back();
      } else if (c == ',' && !open.empty()) {
        ++argc_[open.back()];
      }
    }
    for (std::size_t k : open) argc_[k] = -1;
  }

  KMR_PARSER_COLD void check_count(const Token& name, int expected, const char* signature) const {
    const int got = count_args();
    if (got >= 0 && got != expected)
      throw_at(src_, name.pos, "wrong number of arguments for '" + name.text + "': expected " + std::to_string(expected) +
                                   " (" + signature + "), got " + std::to_string(got));
  }

  // An integer literal parameter, with an optional sign.
  KMR_PARSER_COLD long long int_param(const std::string& op, const std::string& signature) {
    bool neg = false;
    if (at('-') || at('+')) {
      neg = at('-');
      advance();
    }
    const Token& t = peek();
    if (t.kind != TokKind::Int)
      throw_at(src_, t.pos, "'" + op + "' expects an integer literal here (" + signature + "), found " + describe(src_, t));
    advance();
    return int_literal(src_, t, neg);
  }

  [[noreturn]] KMR_PARSER_COLD void fail_span(std::size_t b, const std::string& msg) const { throw_at(ssrc_, b, msg); }

  KMR_PARSER_COLD void declare(long long pos, int cat, long long dim, const std::string& where, std::size_t at_pos) {
    if (pos < 0 || pos >= kMaxPos)
      throw_at(src_, at_pos, "variable position " + std::to_string(pos) + " is out of range (0 to " +
                                 std::to_string(kMaxPos - 1) + ")");
    if (dim < 1 || dim > kMaxDim)
      throw_at(src_, at_pos, "variable dim " + std::to_string(dim) + " is out of range (1 to " + std::to_string(kMaxDim) + ")");
    auto it = env_.decls.find((int)pos);
    if (it == env_.decls.end()) {
      env_.decls.emplace((int)pos, Decl{cat, (int)dim, where});
    } else if (it->second.cat != cat || it->second.dim != dim) {
      throw_at(src_, at_pos, "conflicting declarations of argument " + std::to_string(pos) + ": " +
                                 decl_text(pos, it->second.cat, it->second.dim) + " by " + it->second.where + " and " +
                                 decl_text(pos, cat, dim) + " by " + where);
    }
  }

  // Checks the operands with the op's rule and makes the node.
  KMR_PARSER_COLD Node build(const OpSpec& op, const std::vector<Node>& args, std::vector<long long> ip, std::size_t b,
                             std::size_t e) const {
    if (site_) {
      b = site_->b;
      e = site_->end;
    }
    std::vector<ExprPtr> a;
    int depth = 0;
    long long size = 1;
    for (const Node& n : args) {
      a.push_back(n.e);
      depth = std::max(depth, n.depth);
      size = std::min(size + n.size, kMaxNodes + 1);
    }
    const DimResult r = op.rule(a, ip);
    if (!r.error.empty())
      fail_span(b, std::string(r.param_error ? "invalid parameter in '" : "dimension mismatch in '") +
                       excerpt(ssrc_, b, e) + "': " + r.error);
    if (r.dim > kMaxDim)
      fail_span(b, "the dim " + std::to_string(r.dim) + " of '" + excerpt(ssrc_, b, e) + "' is too large (the limit is " +
                       std::to_string(kMaxDim) + ")");
    if (depth + 1 > kMaxDepth)
      fail_span(b, "formula is nested too deeply (more than " + std::to_string(kMaxDepth) + " levels)");
    if (size > kMaxNodes)
      fail_span(b, "formula is too large (more than " + std::to_string(kMaxNodes) +
                       " nodes once composite ops are expanded)");
    Node n;
    n.e = make_expr(op.name, std::move(a), std::move(ip), (int)r.dim);
    n.b = b;
    n.end = e;
    n.depth = depth + 1;
    n.size = size;
    return n;
  }
  KMR_PARSER_COLD Node build1(const char* op, const Node& x, std::size_t b) const { return build(*find_op(op), {x}, {}, b, x.end); }
  KMR_PARSER_COLD Node build2(const char* op, const Node& x, const Node& y, std::size_t b, std::size_t e) const {
    return build(*find_op(op), {x, y}, {}, b, e);
  }

  // ---- recursive descent (keep these frames small)

  Node expr() {
    Nest guard(*this);
    Node l = term();
    while (at('+') || at('-')) {
      const char* op = at('+') ? "Add" : "Subtract";
      advance();
      Node r = term();
      l = build2(op, l, r, l.b, r.end);
    }
    return l;
  }

  Node term() {
    if (at('-')) {
      const std::size_t b = peek().pos;
      Nest guard(*this);
      advance();
      return build1("Minus", term(), b);
    }
    Node l = factor();
    while (at('*') || at('/')) {
      const char* op = at('*') ? "Mult" : "Divide";
      advance();
      Node r = factor();
      l = build2(op, l, r, l.b, r.end);
    }
    return l;
  }

  Node factor() {
    if (at('-')) {
      const std::size_t b = peek().pos;
      Nest guard(*this);
      advance();
      return build1("Minus", factor(), b);
    }
    return primary();
  }

  Node primary() {
    const Token& t = peek();
    if (t.kind == TokKind::Name) {
      advance();
      if (at('(')) return call(t);
      return variable(t);
    }
    if (t.kind == TokKind::Punct && t.text[0] == '(') {
      advance();
      Node x = expr();
      if (at('|')) {
        advance();
        Node y = expr();
        return build2("Scalprod", x, y, t.pos, expect(')'));
      }
      const std::size_t e = expect(')');
      if (!site_) {
        x.b = t.pos;
        x.end = e;
      }
      return x;
    }
    return leaf(t);
  }

  // Numbers and composite operands ($0, $1, ...).
  KMR_PARSER_COLD Node leaf(const Token& t) {
    if (t.kind == TokKind::Int || t.kind == TokKind::Decimal) {
      // Exact integers and ratios keep their exact form (IntCst, RatCst); any other literal Python
      // writes (17 digits, exponents to +-308, integers beyond 64 bits) is rounded once, correctly.
      advance();
      long long p, q;
      if (decimal_literal(t, p, q)) {
        if (q == 1) return build(*find_op("IntCst"), {}, {p}, t.pos, t.end);
        return build(*find_op("RatCst"), {}, {p, q}, t.pos, t.end);
      }
      std::vector<long long> ip;
      float_literal(src_, t, ip);
      return build(*find_op("FpCst"), {}, std::move(ip), t.pos, t.end);
    }
    if (t.kind == TokKind::Holder) {
      advance();
      const std::size_t k = t.text.empty() || t.text.size() > 3 ? ~std::size_t(0) : std::stoul(t.text);
      if (!holders_ || k >= holders_->size())
        throw Error(ErrorKind::Runtime, "kmr: internal error: bad operand '$" + t.text + "' in a composite expansion");
      return (*holders_)[k];
    }
    throw_at(src_, t.pos, unexpected(src_, t) + ", expected an expression");
  }

  KMR_PARSER_COLD Node variable(const Token& t) const {
    auto it = env_.aliases.find(t.text);
    if (it == env_.aliases.end()) {
      if (const OpSpec* op = find_op(t.text))
        throw_at(src_, t.pos, "operation '" + t.text + "' needs its arguments: " + op->signature);
      if (const CompositeSpec* c = find_composite(t.text))
        throw_at(src_, t.pos, "operation '" + t.text + "' needs its arguments: " + c->signature);
      throw_at(src_, t.pos, "undeclared variable '" + t.text + "'");
    }
    const int pos = it->second.first;
    const Decl& d = env_.decls.at(pos);
    Node n;
    n.e = make_expr("Var", {}, {pos, d.dim, d.cat}, d.dim);
    n.b = site_ ? site_->b : t.pos;
    n.end = site_ ? site_->end : t.end;
    return n;
  }

  Node call(const Token& name) {
    const int vs = var_spelling(name.text);
    if (vs >= 0) return inline_var(name, vs);
    if (const CompositeSpec* c = find_composite(name.text)) return composite(name, *c);
    if (const OpSpec* op = find_op(name.text)) return op_call(name, *op);
    fail_unknown(name);
  }
  [[noreturn]] KMR_PARSER_COLD void fail_unknown(const Token& name) const {
    if (env_.aliases.count(name.text)) throw_at(src_, name.pos, "'" + name.text + "' is a variable, not an operation");
    throw_at(src_, name.pos, "unknown operation '" + name.text + "'");
  }

  KMR_PARSER_COLD Node inline_var(const Token& name, int vs) {
    const std::string sig = vs == 3 ? "Var(pos,dim,cat)" : name.text + "(pos,dim)";
    check_count(name, vs == 3 ? 3 : 2, sig.c_str());
    expect('(');
    const long long pos = int_param(name.text, sig);
    expect(',');
    const long long dim = int_param(name.text, sig);
    long long cat = vs;
    if (vs == 3) {
      expect(',');
      cat = int_param(name.text, sig);
    }
    const std::size_t e = expect(')');
    const std::string text = excerpt(src_, name.pos, e);
    if (cat < 0 || cat > 2)
      throw_at(src_, name.pos, "invalid parameter in '" + text +
                                   "': the category must be 0 (i), 1 (j) or 2 (parameter), got " + std::to_string(cat));
    declare(pos, (int)cat, dim, "'" + text + "' in the formula", name.pos);
    Node n;
    n.e = make_expr("Var", {}, {pos, dim, cat}, (int)dim);
    n.b = name.pos;
    n.end = e;
    return n;
  }

  Node op_call(const Token& name, const OpSpec& op) {
    check_count(name, op.n_operands + op.n_iparams, op.signature);
    expect('(');
    std::vector<Node> args;
    for (int k = 0; k < op.n_operands; ++k) {
      if (k > 0) expect(',');
      args.push_back(expr());
    }
    return finish_op(name, op, args);
  }

  // The integer parameters and ')' of an op call, then the node.
  KMR_PARSER_COLD Node finish_op(const Token& name, const OpSpec& op, const std::vector<Node>& args) {
    std::vector<long long> ip;
    for (int k = 0; k < op.n_iparams; ++k) {
      if (op.n_operands + k > 0) expect(',');
      ip.push_back(int_param(name.text, op.signature));
    }
    const std::size_t e = expect(')');
    if (std::string(op.name) == "Grad" && args[1].e->op != "Var")
      fail_span(args[1].b, "the second argument of 'Grad' must be a variable, got '" +
                               excerpt(ssrc_, args[1].b, args[1].end) + "'");
    if (std::string(op.name) == "RatCst" && ip[1] != 0) {  // canonical: q > 0, reduced; q == 1 -> IntCst
      long long sp, q;
      if (!reduce_ratio(ip[0], ip[1], sp, q))
        throw_at(src_, name.pos, "invalid parameter in '" + excerpt(src_, name.pos, e) + "': out of the 64-bit range");
      if (q == 1) return build(*find_op("IntCst"), {}, {sp}, name.pos, e);
      ip = {sp, q};
    }
    return build(op, args, std::move(ip), name.pos, e);
  }

  Node composite(const Token& name, const CompositeSpec& c) {
    check_count(name, c.n_operands, c.signature);
    expect('(');
    std::vector<Node> args;
    for (int k = 0; k < c.n_operands; ++k) {
      if (k > 0) expect(',');
      args.push_back(expr());
    }
    return expand(name, c, args, expect(')'));
  }

  // Parses the expansion of a composite call with its operands in place of $k.
  KMR_PARSER_COLD Node expand(const Token& name, const CompositeSpec& c, const std::vector<Node>& args, std::size_t e) {
    Node site;
    site.b = site_ ? site_->b : name.pos;
    site.end = site_ ? site_->end : e;
    const char* expansion = c.expansion;
    if (c.pick) {
      std::vector<int> dims;
      for (const Node& a : args) dims.push_back(a.e->dim);
      std::string err;
      expansion = c.pick(dims, err);
      if (!expansion) fail_span(site.b, "dimension mismatch in '" + excerpt(ssrc_, site.b, site.end) + "': " + err);
    }
    const Source tsrc{expansion, "expansion of " + std::string(c.name)};
    Parser sub(tsrc, ssrc_, env_, &args, &site);
    Node n = sub.parse_formula();
    n.b = site.b;
    n.end = site.end;
    return n;
  }
};

}  // namespace
}  // namespace detail

ParsedFormula parse_formula(const std::string& formula, const std::vector<std::string>& aliases, bool swap_ij) {
  using namespace detail;
  Env env;
  for (std::size_t k = 0; k < aliases.size(); ++k) {
    const Source src{aliases[k], "alias"};
    Parser(src, src, env, nullptr, nullptr).parse_alias((int)k);
  }
  const Source src{formula, "formula"};
  const Node n = Parser(src, src, env, nullptr, nullptr).parse_formula();

  ParsedFormula out;
  int expected = 0;
  for (const auto& d : env.decls) {
    if (d.first != expected)
      throw Error(ErrorKind::Value, "kmr: no variable is declared at argument position " + std::to_string(expected) +
                                        " (positions up to " + std::to_string(env.decls.rbegin()->first) +
                                        " are used; declare one alias or variable per argument)");
    out.user_args.push_back(VarInfo{d.second.cat, d.second.dim});
    ++expected;
  }
  out.root = canonicalize(n.e, swap_ij, out.user_pos, out.vars);
  out.key = to_key(out.root);
  out.dim = out.root->dim;
  return out;
}

}  // namespace kmr
