"""Kernel(expr) and kernel_product(params, x, y, b): the seed's high-level API.

A kernel expression such as ``"gaussian(x,y) * linear(u,v)**2"`` is parsed here
(pure Python) and compiled down to one ``Genred`` formula, e.g.
``Exp(-G0*SqDist(X0,Y0))*Pow((X1|Y1),2)*B``, which pykmr.torch (autograd) or
pykmr.numpy runs. A single kernel with a scalar gamma is spelled exactly as in
src/precompiled/manifest.txt, so it never compiles anything.

Kernels (g is the kernel's gamma; a per-dimension gamma gives a weighted
distance sum_d g_d (x_d - y_d)^2, a D*D one (x-y)^T g (x-y))::

    gaussian(x,y)             = exp(-g |x-y|^2)
    laplacian(x,y)            = exp(-sqrt(g |x-y|^2))
    cauchy(x,y)               = 1 / (1 + g |x-y|^2)
    inverse_multiquadric(x,y) = 1 / sqrt(1 + g |x-y|^2)
    linear(u,v)               = <u, v>                     (no gamma: None)

combined with ``+``, ``-``, ``*``, positive integer powers ``**n``, integer
constants and parentheses. The first argument of each kernel is an i-side
variable (taken from ``x``), the second a j-side one (taken from ``y``).
"""

from __future__ import annotations

import difflib
import functools
import re
import sys

__all__ = ["Kernel", "kernel_product", "KERNELS"]

# name -> formula of the squared distance d ("{d}"); None: linear (no gamma).
KERNELS = {
    "gaussian": "Exp(-{d})",  # exp(-g|x-y|^2)
    "laplacian": "Exp(-Sqrt({d}))",  # exp(-sqrt(g|x-y|^2))
    "cauchy": "Inv(1+{d})",  # 1/(1+g|x-y|^2)
    "inverse_multiquadric": "Rsqrt(1+{d})",  # 1/sqrt(1+g|x-y|^2)
    "linear": None,  # <x,y>
}

_MODES = ("sum",)
_PARAM_KEYS = ("id", "gamma", "backend", "mode")

# --------------------------------------------------------------------------- parsing

_TOKEN = re.compile(r"\s*(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<int>[0-9]+)|(?P<op>\*\*|[-+*(),]))")


class _Call:
    """One kernel term name(x, y); slot = its index among the terms (its gamma)."""

    def __init__(self, name, xvar, yvar, slot, pos):
        self.name, self.xvar, self.yvar, self.slot, self.pos = name, xvar, yvar, slot, pos

    def __repr__(self):
        return f"{self.name}({self.xvar},{self.yvar})"


def _error(expr, pos, msg):
    return ValueError(f"Kernel {expr!r}, position {pos}: {msg}\n  {expr}\n  {' ' * pos}^")


def _tokenize(expr):
    tokens, pos = [], 0
    while pos < len(expr):
        if expr[pos:].isspace():
            break
        m = _TOKEN.match(expr, pos)
        if not m:
            bad = expr[pos:].lstrip()
            at = len(expr) - len(bad)
            hint = " (constants must be integers)" if bad[0] == "." else ""
            raise _error(expr, at, f"unexpected character {bad[0]!r}{hint}")
        kind = m.lastgroup
        tokens.append((kind, m.group(kind), m.start(kind)))
        pos = m.end()
    tokens.append(("end", "", len(expr)))
    return tokens


class _Parser:
    """Recursive descent: sum := prod (('+'|'-') prod)*; prod := power ('*' power)*;
    power := unary ('**' INT)?; unary := '-' unary | atom; atom := INT | call | '(' sum ')'."""

    def __init__(self, expr):
        self.expr = expr
        self.tokens = _tokenize(expr)
        self.i = 0
        self.calls = []

    def peek(self):
        return self.tokens[self.i]

    def take(self, value=None, kind=None):
        tok = self.tokens[self.i]
        if (value is not None and tok[1] != value) or (kind is not None and tok[0] != kind):
            want = repr(value) if value is not None else {"name": "a name", "int": "an integer"}[kind]
            got = "the end" if tok[0] == "end" else repr(tok[1])
            raise _error(self.expr, tok[2], f"expected {want}, got {got}")
        self.i += 1
        return tok

    def parse(self):
        node = self.sum()
        tok = self.peek()
        if tok[0] != "end":
            raise _error(self.expr, tok[2], f"unexpected {tok[1]!r}")
        return node

    def sum(self):
        node = self.prod()
        while self.peek()[1] in ("+", "-"):
            op = self.take()[1]
            node = ("add" if op == "+" else "sub", node, self.prod())
        return node

    def prod(self):
        node = self.power()
        while self.peek()[1] == "*":
            self.take()
            node = ("mul", node, self.power())
        return node

    def power(self):
        node = self.unary()
        if self.peek()[1] == "**":
            self.take()
            tok = self.peek()
            if tok[1] == "-":
                raise _error(self.expr, tok[2], "powers must be positive integers")
            n = int(self.take(kind="int")[1])
            if n < 1:
                raise _error(self.expr, tok[2], "powers must be positive integers")
            node = node if n == 1 else ("pow", node, n)
        return node

    def unary(self):
        if self.peek()[1] == "-":
            self.take()
            return ("neg", self.unary())
        return self.atom()

    def atom(self):
        kind, value, pos = self.peek()
        if kind == "int":
            self.take()
            return ("const", int(value))
        if value == "(":
            self.take()
            node = self.sum()
            self.take(")")
            return node
        if kind != "name":
            got = "the end" if kind == "end" else repr(value)
            raise _error(self.expr, pos, f"expected a kernel, an integer or '(', got {got}")
        self.take()
        if value not in KERNELS:
            close = difflib.get_close_matches(value, KERNELS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise _error(
                self.expr, pos, f"unknown kernel {value!r}{hint}; known kernels: {', '.join(sorted(KERNELS))}"
            )
        self.take("(")
        xvar = self.take(kind="name")[1]
        self.take(",")
        yvar = self.take(kind="name")[1]
        self.take(")")
        call = _Call(value, xvar, yvar, len(self.calls), pos)
        self.calls.append(call)
        return ("call", call)


# --------------------------------------------------------------------------- formula text

# Binding strength of each node when printed; an operand weaker than its context gets parentheses.
_LEVEL = {"add": 1, "sub": 1, "mul": 2, "neg": 0, "pow": 3, "call": 3, "const": 3}


def _render(node, names, ctx=0):
    kind = node[0]
    if kind == "const":
        text = str(node[1])
    elif kind == "call":
        text = names[node[1].slot]
    elif kind == "pow":
        text = f"Pow({_render(node[1], names)},{node[2]})"
    elif kind == "neg":
        text = "-" + _render(node[1], names, 3)
    elif kind == "mul":
        text = f"{_render(node[1], names, 2)}*{_render(node[2], names, 2)}"
    else:  # add, sub: the right operand of '-' must bind tighter
        op = "+" if kind == "add" else "-"
        text = f"{_render(node[1], names, 1)}{op}{_render(node[2], names, 2 if kind == 'sub' else 1)}"
    return f"({text})" if _LEVEL[kind] < ctx else text


def _term_formula(call, g, x, y, gamma_dim, dim):
    """Formula text of one kernel term; gamma_dim 1 gives the precompiled spelling."""
    template = KERNELS[call.name]
    if template is None:
        return f"({x}|{y})"
    d = f"{g}*SqDist({x},{y})" if gamma_dim == 1 else f"WeightedSqDist({g},{x},{y})"
    return template.format(d=d)


class Kernel:
    """A kernel expression, e.g. ``Kernel("gaussian(x,y) * linear(u,v)**2")`` (pykeops 1.x ``Kernel``).

    Kernels: ``gaussian`` exp(-g|x-y|^2), ``laplacian`` exp(-sqrt(g|x-y|^2)), ``cauchy`` 1/(1+g|x-y|^2),
    ``inverse_multiquadric`` 1/sqrt(1+g|x-y|^2), ``linear`` (x|y); sums, products and integer powers
    (``**n``) of them. Raises TypeError for a non-string and ValueError (with the position) for a
    malformed expression.

    Attributes: ``expr``; ``x_vars`` / ``y_vars``, the variable names of the first /
    second kernel arguments in order of appearance (``x`` / ``y`` of kernel_product
    give them in this order); ``terms``, the kernel names in order of appearance
    (one gamma each, None for linear).
    """

    def __init__(self, expr):
        if isinstance(expr, Kernel):
            expr = expr.expr
        if not isinstance(expr, str):
            raise TypeError(f"Kernel: expected a string such as 'gaussian(x,y)', got {type(expr).__name__}")
        if not expr.isascii():
            pos = next(i for i, c in enumerate(expr) if not c.isascii())
            raise _error(expr, pos, f"non-ASCII character {expr[pos]!r}")
        self.expr = expr
        parser = _Parser(expr)
        self._tree = parser.parse()
        self._calls = parser.calls
        if not self._calls:
            raise ValueError(f"Kernel: {expr!r} has no kernel term (gaussian(x,y), linear(u,v), ...)")
        x_vars, y_vars, side = [], [], {}
        for c in self._calls:
            for var, s in ((c.xvar, "first (x-side)"), (c.yvar, "second (y-side)")):
                if side.setdefault(var, (s, c))[0] != s:
                    first = side[var][1]
                    raise _error(
                        expr,
                        c.pos,
                        f"variable {var!r} is the {s} argument of {c} but the "
                        f"{side[var][0]} argument of {first}",
                    )
                lst = x_vars if s.startswith("first") else y_vars
                if var not in lst:
                    lst.append(var)
        self.x_vars, self.y_vars = tuple(x_vars), tuple(y_vars)
        self.terms = tuple(c.name for c in self._calls)

    def __repr__(self):
        return f"Kernel({self.expr!r})"

    def __eq__(self, other):
        return isinstance(other, Kernel) and other.expr == self.expr

    def __hash__(self):
        return hash(self.expr)

    def formula(self, x_dims, y_dims, gamma_dims, b_dim):
        """The Genred formula and aliases for these dims (gamma_dims: one per term, None for linear).

        Aliases: G<k> = Pm (gamma of term k), X<n> = Vi (x_vars[n]), Y<n> = Vj (y_vars[n]),
        B = Vj(b_dim). Returns (formula, aliases, gamma_slots) where gamma_slots lists the terms
        whose gamma is an argument, in the aliases' order.
        """
        xa = {v: f"X{n}" for n, v in enumerate(self.x_vars)}
        ya = {v: f"Y{n}" for n, v in enumerate(self.y_vars)}
        names = []
        for c in self._calls:
            names.append(
                _term_formula(c, f"G{c.slot}", xa[c.xvar], ya[c.yvar], gamma_dims[c.slot], x_dims[c.xvar])
            )
        formula = f"{_render(self._tree, names, 2)}*B"
        slots = [c.slot for c in self._calls if gamma_dims[c.slot] is not None]
        aliases = [f"G{k} = Pm({gamma_dims[k]})" for k in slots]
        aliases += [f"X{n} = Vi({x_dims[v]})" for n, v in enumerate(self.x_vars)]
        aliases += [f"Y{n} = Vj({y_dims[v]})" for n, v in enumerate(self.y_vars)]
        aliases.append(f"B = Vj({b_dim})")
        return formula, aliases, slots


# --------------------------------------------------------------------------- kernel_product


def _array_kind(a):
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(a, torch.Tensor):
        return "torch"
    np = sys.modules.get("numpy")
    if np is not None and isinstance(a, np.ndarray):
        return "numpy"
    return None


def _points(arg, names, what, kernel):
    """x or y: one array or a tuple/list of arrays, one per variable name."""
    arrays = tuple(arg) if isinstance(arg, (tuple, list)) else (arg,)
    if len(arrays) != len(names):
        n = len(names)
        raise ValueError(
            f"kernel_product: {kernel!r} has {n} {what}-side variable(s) {', '.join(names)}; "
            f"{what} must give {'a tuple of ' if n > 1 else ''}{n} array(s), got {len(arrays)}"
        )
    return dict(zip(names, arrays))


def _shape2(a, label):
    shape = tuple(getattr(a, "shape", ()))
    if _array_kind(a) is None:
        raise TypeError(
            f"kernel_product: {label} must be a torch tensor or a numpy array, got {type(a).__name__}"
        )
    if len(shape) != 2:
        raise ValueError(f"kernel_product: {label} must be 2-D (points, dim), got shape {shape}")
    return shape


def _gammas(gamma, kernel):
    """One gamma per term: a tuple gives them in order; anything else is the gamma of a one-term kernel."""
    n = len(kernel.terms)
    if isinstance(gamma, tuple):
        gammas = gamma
    elif n == 1:
        gammas = (gamma,)
    else:
        gammas = None
    if gammas is None or len(gammas) != n:
        got = f"a tuple of {len(gammas)}" if gammas is not None else type(gamma).__name__
        hint = " (a per-dimension gamma is an array or a list, not a tuple)" if n == 1 else ""
        raise ValueError(
            f"kernel_product: {kernel!r} has {n} kernel term(s) ({', '.join(kernel.terms)}) and takes "
            f"a tuple of {n} gamma(s) in this order (None for linear), got {got}{hint}"
        )
    for k, (name, g) in enumerate(zip(kernel.terms, gammas)):
        if (KERNELS[name] is None) != (g is None):
            need = "None (linear has no gamma)" if g is not None else "a value"
            raise ValueError(f"kernel_product: gamma[{k}] (for {name}) must be {need}, got {g!r}")
    return gammas


def _as_param(g, like, kind):
    """A gamma as a flat array of the points' dtype (and device); torch tensors keep their graph."""
    if kind == "torch":
        import torch

        if isinstance(g, torch.Tensor):
            return g.reshape(-1).to(dtype=like.dtype, device=like.device)
        return torch.as_tensor(g, dtype=like.dtype, device=like.device).reshape(-1)
    import numpy as np

    if _array_kind(g) == "torch":
        raise TypeError("kernel_product: a torch tensor gamma was given with numpy points")
    return np.ascontiguousarray(np.asarray(g, dtype=like.dtype).reshape(-1))


@functools.lru_cache(maxsize=256)
def _routine(kind, formula, aliases):
    if kind == "torch":
        from pykmr.torch import Genred
    else:
        from pykmr.numpy import Genred
    return Genred(formula, list(aliases), reduction_op="Sum", axis=1)


def kernel_product(params, x, y, *bs, mode="sum", frontend=None):
    """a_i = sum_j K(x_i, y_j) b_j with K given by ``params["id"]`` (a Kernel or its expression).

    params: ``{"id": Kernel(...), "gamma": g}`` with g one gamma for a one-term kernel or a
    tuple with one entry per term in order of appearance (None for linear); each gamma is a
    scalar (float, 1-element array), a per-dimension vector (D values) or a D*D matrix.
    Optional ``"backend"``: "auto" (default), "CPU" or "GPU".
    x, y: a (N, D) / (M, D) array, or a tuple of them matching the kernel's x_vars / y_vars.
    bs: one (M, E) array b. Torch tensors go through pykmr.torch (autograd), numpy arrays
    through pykmr.numpy. Returns a (N, E) array of the points' dtype (float32 or float64).
    ``frontend`` ("torch" or "numpy", set by pykmr.torch.kernel_product /
    pykmr.numpy.kernel_product) refuses the other array type.

    pykeops equivalent: ``pykeops.torch.kernel_product`` (pykeops 1.x), mode "sum".

    Raises:
        TypeError: params not a dict, mixed torch/numpy arrays, the other front end's arrays.
        ValueError: unknown params keys, no "id", a gamma of the wrong size, points not 2-D, a mode
            other than "sum", a wrong number of b arrays.
    """
    if not isinstance(params, dict):
        raise TypeError(
            f"kernel_product: params must be a dict with 'id' and 'gamma', got {type(params).__name__}"
        )
    unknown = sorted(set(params) - set(_PARAM_KEYS))
    if unknown:
        raise ValueError(f"kernel_product: unknown params key(s) {unknown}; known: {list(_PARAM_KEYS)}")
    if "id" not in params:
        raise ValueError("kernel_product: params has no 'id' (the Kernel)")
    kernel = params["id"] if isinstance(params["id"], Kernel) else Kernel(params["id"])
    mode = params.get("mode", mode)
    if mode not in _MODES:
        raise ValueError(f"kernel_product: mode {mode!r} is not supported; supported: {', '.join(_MODES)}")
    if len(bs) != 1:
        raise ValueError(f"kernel_product: mode 'sum' takes one array b after x and y, got {len(bs)}")
    b = bs[0]
    gammas = _gammas(params.get("gamma"), kernel)

    xs = _points(x, kernel.x_vars, "x", kernel)
    ys = _points(y, kernel.y_vars, "y", kernel)
    shapes = {("x", v): _shape2(a, f"x variable {v!r}") for v, a in xs.items()}
    shapes.update({("y", v): _shape2(a, f"y variable {v!r}") for v, a in ys.items()})
    b_shape = _shape2(b, "b")
    kinds = {_array_kind(a) for a in (*xs.values(), *ys.values(), b)}
    if len(kinds) != 1:
        raise TypeError("kernel_product: points and b mix torch tensors and numpy arrays")
    kind = kinds.pop()
    if frontend is not None and kind != frontend:
        raise TypeError(f"kernel_product: pykmr.{frontend} takes {frontend} arrays, got {kind} arrays "
                        f"(use pykmr.{kind}.kernel_product)")
    for side, n in (("x", shapes[("x", kernel.x_vars[0])][0]), ("y", b_shape[0])):
        for (s, v), shape in shapes.items():
            if s == side and shape[0] != n:
                ref = f"x variable {kernel.x_vars[0]!r}" if side == "x" else "b"
                raise ValueError(
                    f"kernel_product: {side} variable {v!r} has {shape[0]} points but {ref} has {n}"
                )

    like = xs[kernel.x_vars[0]]
    x_dims = {v: shapes[("x", v)][1] for v in kernel.x_vars}
    y_dims = {v: shapes[("y", v)][1] for v in kernel.y_vars}
    gamma_dims, gamma_args = [], {}
    for k, (c, g) in enumerate(zip(kernel._calls, gammas)):
        if x_dims[c.xvar] != y_dims[c.yvar]:
            raise ValueError(
                f"kernel_product: in {c}, {c.xvar!r} has dim {x_dims[c.xvar]} but {c.yvar!r} has dim "
                f"{y_dims[c.yvar]}"
            )
        if g is None:
            gamma_dims.append(None)
            continue
        p = _as_param(g, like, kind)
        d, size = x_dims[c.xvar], int(p.shape[0])
        if size not in (1, d, d * d):
            raise ValueError(
                f"kernel_product: gamma[{k}] (for {c}) has {size} values; expected 1, {d} (per dimension) "
                f"or {d * d} (a {d}x{d} matrix) for points of dim {d}"
            )
        gamma_dims.append(size)
        gamma_args[k] = p

    formula, aliases, slots = kernel.formula(x_dims, y_dims, gamma_dims, b_shape[1])
    routine = _routine(kind, formula, tuple(aliases))
    args = [gamma_args[k] for k in slots] + [xs[v] for v in kernel.x_vars] + [ys[v] for v in kernel.y_vars]
    return routine(*args, b, backend=params.get("backend", "auto"))
