"""The expression tree behind LazyTensor (DESIGN 14): immutable nodes named after the parser's op table,
their dimension rules, a few exact rewrites that steer the common kernels onto their precompiled spelling,
and the lowering of a tree to one formula string and its aliases (done once per reduction and cached).

A node is (op, args, params): `op` is a name of src/runtime/op_table.cpp ("Exp", "Mult", "SqNorm2"...,
composites such as "SqDist" included: the parser expands them), `args` child nodes, `params` the integer
parameters of the op ("Pow" n, "Extract" start and dim...). Leaves are Var nodes (a tensor, a number or a
symbolic variable) and IntCst nodes. Nothing here rewrites formula strings: the string is printed from the
tree in one pass.
"""

from __future__ import annotations

import itertools

# Ops with their arity and dimension rule. "same": the operand's dim; "bcast": elementwise with dim-1
# broadcasting; "scalar": 1. Others are computed by _dim below.
_UNARY_SAME = {
    "Exp",
    "Log",
    "Sqrt",
    "Rsqrt",
    "Square",
    "Inv",
    "Sin",
    "Cos",
    "Atan",
    "Abs",
    "Sign",
    "Step",
    "ReLU",
    "XLogX",
    "Floor",
    "Minus",
    "Normalize",
    "Pow",
}
_BCAST = {"Add", "Subtract", "Mult", "Divide", "Powf", "Clamp", "IfElse", "Mod"}
_SCALAR = {"Sum", "SqNorm2", "Norm2", "Scalprod", "SqDist", "Elem", "IntCst"}

_counter = itertools.count()


class Var:
    """A leaf: cat 0 (i), 1 (j) or 2 (parameter) with its dim. `data` is a tensor/array (its rows are
    the variable's), a tuple of Python floats (a constant parameter, made an array of the call's dtype) or
    None (a symbolic variable: `ind` is its argument position at call time)."""

    __slots__ = ("cat", "dim", "data", "ind", "uid")

    def __init__(self, cat, dim, data=None, ind=None):
        self.cat, self.dim, self.data, self.ind = cat, dim, data, ind
        self.uid = next(_counter)

    def swapped(self):
        if self.cat == 2:
            return self
        v = Var(1 - self.cat, self.dim, self.data, self.ind)
        return v


class Node:
    __slots__ = ("op", "args", "params", "dim", "var", "_key")

    def __init__(self, op, args=(), params=(), var=None):
        self.op, self.args, self.params, self.var = op, tuple(args), tuple(params), var
        self.dim = var.dim if var is not None else _dim(op, self.args, self.params)
        self._key = None

    def is_leaf_param(self):
        """A parameter or constant subtree (no i/j variable)."""
        return all(v.cat == 2 for v in leaves(self)) if self.var is None else self.var.cat == 2


def _dim(op, a, p):
    if op in _UNARY_SAME:
        return a[0].dim
    if op in _SCALAR:
        if op in ("Scalprod", "SqDist") and a[0].dim != a[1].dim:
            raise ValueError(f"pykmr: {op} of operands with dims {a[0].dim} and {a[1].dim}: they must agree")
        if op == "Elem" and not 0 <= p[0] < a[0].dim:
            raise IndexError(f"pykmr: index {p[0]} is out of range for a LazyTensor of dim {a[0].dim}")
        return 1
    if op in _BCAST:
        d = max(x.dim for x in a)
        if any(x.dim not in (1, d) for x in a):
            dims = ", ".join(str(x.dim) for x in a)
            raise ValueError(f"pykmr: {op} of LazyTensors with dims {dims}: dims must agree or be 1")
        return d
    if op == "Concat":
        return a[0].dim + a[1].dim
    if op == "Extract":
        start, d = p
        if start < 0 or d < 1 or start + d > a[0].dim:
            raise IndexError(
                f"pykmr: extract({start}, {d}) is out of range for a LazyTensor of dim {a[0].dim}"
            )
        return d
    if op == "ElemT":
        return p[1]
    if op == "SumT":
        return p[0]
    if op in ("MatVecMult", "VecMatMult"):
        s, f = (a[0].dim, a[1].dim) if op == "MatVecMult" else (a[1].dim, a[0].dim)
        if s % f:
            raise ValueError(f"pykmr: {op}: the matrix dim {s} is not a multiple of the vector dim {f}")
        return s // f
    if op == "TensorProd":
        return a[0].dim * a[1].dim
    if op == "WeightedSqNorm":
        s, f = a[0].dim, a[1].dim
        if s not in (1, f, f * f):
            raise ValueError(f"pykmr: weightedsqnorm: the weight has dim {s}, expected 1, {f} or {f * f}")
        return 1
    if op == "WeightedSqDist":
        return 1
    if op == "Grad":
        return a[1].dim
    raise ValueError(f"pykmr: internal error: unknown op {op}")


def leaves(node):
    """The Var leaves of a tree, in first-appearance order, each once."""
    seen, out, stack = set(), [], [node]
    while stack:
        n = stack.pop()
        if n.var is not None:
            if n.var.uid not in seen:
                seen.add(n.var.uid)
                out.append(n.var)
        else:
            stack.extend(reversed(n.args))
    return out


def intcst(n):
    """An exact integer constant (negative ones as Minus: the parser's IntCst takes n >= 0)."""
    node = Node("IntCst", (), (abs(int(n)),))
    return Node("Minus", (node,)) if n < 0 else node


def make(op, *args, params=()):
    """Builds a node, with exact rewrites (bitwise-identical values) that make common LazyTensor
    spellings land on the precompiled kernels' formulas:
      Sum(Square(a)) -> SqNorm2(a)        (the same sum of the same squares)
      Mult(Minus(a), b) -> Minus(Mult(a, b)), Mult(a, Minus(b)) -> Minus(Mult(a, b))   (negation is exact)
      Mult(a, p) -> Mult(p, a) for a parameter p and a non-parameter a   (products commute exactly)
    """
    if op == "Sum" and args[0].op == "Square":
        return Node("SqNorm2", args[0].args)
    if op == "Mult":
        a, b = args
        if a.op == "Minus" and b.op != "Minus":
            return Node("Minus", (make("Mult", a.args[0], b),))
        if b.op == "Minus" and a.op != "Minus":
            return Node("Minus", (make("Mult", a, b.args[0]),))
        if b.is_leaf_param() and not a.is_leaf_param():
            return Node("Mult", (b, a))
    return Node(op, args, params)


def swap_ij(node, memo=None):
    """The same tree with i- and j-variables swapped (LazyTensor.t())."""
    memo = {} if memo is None else memo
    if node.var is not None:
        if node.var.cat == 2:
            return node
        v = memo.get(node.var.uid)
        if v is None:
            v = memo[node.var.uid] = node.var.swapped()
        return Node("Var", var=v)
    return Node(node.op, [swap_ij(a, memo) for a in node.args], node.params)


def lower(nodes):
    """Prints trees sharing their variables: (formula strings, aliases, variables in argument order).

    Symbolic variables keep their positions; the others follow in first-appearance order. Each distinct
    leaf gets one alias, so a tensor used both as Vi and Vj is two arguments (autograd adds both parts).
    """
    vars_ = []
    seen = set()
    for n in nodes:
        for v in leaves(n):
            if v.uid not in seen:
                seen.add(v.uid)
                vars_.append(v)
    sym = sorted((v for v in vars_ if v.data is None), key=lambda v: v.ind)
    concrete = [v for v in vars_ if v.data is not None]
    positions, order, names = {}, [], {}
    for v in sym:
        if v.ind in positions and (positions[v.ind].cat, positions[v.ind].dim) != (v.cat, v.dim):
            raise ValueError(f"pykmr: symbolic variable {v.ind} is declared with two categories or dims")
        positions.setdefault(v.ind, v)
    first = (max(positions) + 1) if positions else 0
    if positions and sorted(positions) != list(range(first)):
        missing = sorted(set(range(first)) - set(positions))
        raise ValueError(f"pykmr: symbolic variables are numbered 0..{first - 1} but {missing} are missing")
    aliases = []
    for k in range(first):
        v = positions[k]
        aliases.append(f"V{k} = {('Vi', 'Vj', 'Pm')[v.cat]}({k},{v.dim})")
        order.append(v)
    for v in sym:
        names[v.uid] = f"V{v.ind}"
    for k, v in enumerate(concrete, start=first):
        names[v.uid] = f"V{k}"
        aliases.append(f"V{k} = {('Vi', 'Vj', 'Pm')[v.cat]}({k},{v.dim})")
        order.append(v)
    return [_print(n, names) for n in nodes], aliases, order


def _print(node, names):
    if node.var is not None:
        return names[node.var.uid]
    parts = [_print(a, names) for a in node.args] + [str(p) for p in node.params]
    return f"{node.op}({','.join(parts)})"


def to_str(node):
    """A readable formula (str(LazyTensor)): variables named by category and creation order."""
    names = {}
    for v in leaves(node):
        kind = ("Vi", "Vj", "Pm")[v.cat]
        names[v.uid] = f"{kind}({v.ind},{v.dim})" if v.data is None else f"{kind}_{len(names)}"
    return _print(node, names)
