"""Differential formula fuzzing (issue 10 §8): random well-typed formulas, run by pykmr.torch.Genred in
float64, against a dense torch evaluator of the same expression tree written here from each op's mathematical
definition (docs/ops.md, the formula headers' one-line math) and pykmr's conventions at singular points
(docs/conventions.md), never from pykmr's code. Values, first and second derivatives (torch.autograd.grad
with create_graph) are compared with named tolerances.

* The generator draws formulas from the parser's own op table (src/runtime/op_table.cpp, read through the docs
  extension's reader, as test_fuzz_parser.py does): every op and composite of the table needs an entry in
  REFERENCE (its generator rule and dense evaluation) or in EXCLUDED with a reason, so a new op without a
  reference fails test_every_op_has_a_reference. Depth up to 5, variable dims 1-8, Vi / Vj / Pm variables,
  every reduction of pykmr.common.REDUCTIONS, both axes.
* Each case runs on three inputs: generic random numbers (values and gradients; some arguments are
  non-contiguous views: transposed, strided rows or columns), special values (zeros, a j-row equal to an
  i-row, NaN, +-inf: values only, though Grad nodes of the formula take derivatives there, by the conventions
  that the reference implements), and an
  empty N or M (values and all-zero gradients; an empty reduced axis with K > 0 must raise).
* Gradients are compared where the reference gradient is finite, and not for the Min/Max/KMin family when the
  reference has a near-tie or a NaN among the candidates (the selected index, hence the gradient, is then a
  matter of rounding). Arg* indices are checked to be valid, distinct and to select the reference's values.
* The reference itself is checked against every row of the conventions table (compiles nothing), and the
  generator's formulas against the parser (accepted, with the dims the generator meant; compiles nothing).

Budget: KMR_FUZZ_FORMULAS cases (default 8; the JIT dominates, 4-5 modules a case: the whole file took 95 s
wall and 72 s of CPU on 2 cores shared with other compilations (load 5), fresh cache). A failure
lists every failing case with its seed, formula, aliases and reduction; KMR_FUZZ_FORMULAS_REPLAY=SEED runs
that one case again (`KMR_FUZZ_FORMULAS=200` runs a long campaign; KMR_TEST_SEED changes the campaign).
"""

from __future__ import annotations

import collections
import math
import os
import random
import time
from dataclasses import dataclass, field

import pykmr.numpy as pn
import pytest
import torch
from helpers import op_table, warm_up
from pykmr.common import REDUCTIONS
from pykmr.conventions import TABLE as CONVENTIONS
from pykmr.torch import Genred

CASES = int(os.environ.get("KMR_FUZZ_FORMULAS", "8"))
REPLAY = os.environ.get("KMR_FUZZ_FORMULAS_REPLAY")
F64 = torch.float64

# Tolerances (float64). A value matches when |got - ref| <= ATOL + RTOL * scale, scale = max(|ref|, the sum of
# |terms| of a Sum-like reduction): pykmr sums in another order and with its own exp/log/sin (a few ulps),
# which deep formulas amplify by their condition number, hence far above float64's 1e-16.
VALUE_RTOL = 1e-7
VALUE_ATOL = 1e-9
GRAD_RTOL = 1e-6  # gradients go through more roundings (and second ones through two adjoints)
GRAD_ATOL = 1e-8
# Two candidates of a Min/Max/KMin closer than this (relative) are a tie: the index may differ from the
# reference's by rounding, so the index check accepts any near-optimal one and gradients are not compared.
TIE_RTOL = 1e-6

MAX_DEPTH = 5  # nesting depth of the generated trees (an adapter at a leaf included)
MAX_DIM = 16  # dims of the intermediate nodes (variables: 1-8)
KMAX = 3  # K of the KMin family


OP_TABLE = op_table()


# ---------------------------------------------------------------------------------------------------------
# Expression trees
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Var:
    name: str
    cat: int  # 0: Vi, 1: Vj, 2: Pm
    dim: int

    def alias(self):
        return f"{self.name} = {('Vi', 'Vj', 'Pm')[self.cat]}({self.dim})"


@dataclass
class Node:
    op: str  # an op of the table, or "Var"
    args: list = field(default_factory=list)  # child Nodes
    params: tuple = ()  # integer parameters (and Var / Grad's variable)
    dim: int = 1
    spelling: int = 0  # 0: Name(args), 1: infix where the language has one

    def text(self):
        if self.op == "Var":
            return self.params[0].name
        a = [c.text() for c in self.args]
        infix = {"Add": "+", "Subtract": "-", "Mult": "*", "Divide": "/"}
        if self.spelling and self.op in infix:
            return f"({a[0]}{infix[self.op]}{a[1]})"
        if self.spelling and self.op == "Minus":
            return f"(-{a[0]})"
        if self.spelling and self.op == "Scalprod":
            return f"({a[0]}|{a[1]})"
        if self.spelling and self.op == "IntCst" and self.params[0] >= 0:
            return str(self.params[0])
        if self.op == "Grad":
            return f"Grad({a[0]},{self.params[0].name},{a[1]})"
        return f"{self.op}({','.join(a + [str(p) for p in self.params])})"

    def ops(self):
        out = {self.op}
        for c in self.args:
            out |= c.ops()
        return out

    def depth(self):
        return 0 if not self.args else 1 + max(c.depth() for c in self.args)


# ---------------------------------------------------------------------------------------------------------
# Dense reference ops: tensors [N, M, dim]. Ops with a convention at a singular point (docs/conventions.md)
# are autograd Functions whose backward is the op's derivative written with these same ops, so that every
# order follows the conventions.
# ---------------------------------------------------------------------------------------------------------
class _Rsqrt(torch.autograd.Function):
    """rsqrt(x) = x^(-1/2), 0 at x = 0 (KeOps); rsqrt' = -1/2 rsqrt^3."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.where(x == 0, torch.zeros_like(x), 1 / torch.sqrt(x))

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (-0.5 * _Rsqrt.apply(x) ** 3)


class _Sqrt(torch.autograd.Function):
    """sqrt' = 1/2 rsqrt, hence 0 at 0 (Rsqrt(0) = 0)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.sqrt(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (0.5 * _Rsqrt.apply(x))


class _XLogX(torch.autograd.Function):
    """x log x, 0 at 0 (KeOps); derivative log x + 1."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.where(x == 0, torch.zeros_like(x), x * torch.log(x))

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (torch.log(x) + 1)


def _step(x):
    """1 if x >= 0 else 0 (so Step(NaN) = 0); derivative 0: no gradient flows."""
    x = x.detach()
    return torch.where(x >= 0, 1.0, 0.0).to(x.dtype)


def _sign(x):
    """-1, 0 or 1: the op reference says sign(x) is in {-1, 0, 1}, so Sign(NaN) = 0 (torch.sign gives NaN)."""
    x = x.detach()
    return torch.where(x > 0, 1.0, torch.where(x < 0, -1.0, 0.0)).to(x.dtype)


def _sqnorm2(x):
    return (x * x).sum(-1, keepdim=True)


def _weighted_sqnorm(s, f):
    ds, df = s.shape[-1], f.shape[-1]
    if ds == 1:
        return s * _sqnorm2(f)
    if ds == df:
        return (s * f * f).sum(-1, keepdim=True)
    return (f * _matvec(s, f)).sum(-1, keepdim=True)  # S: df x df, row-major


def _matvec(s, f):
    """S F with S of dim rows x dim F, row-major."""
    return (s.unflatten(-1, (s.shape[-1] // f.shape[-1], f.shape[-1])) * f.unsqueeze(-2)).sum(-1)


def _vecmat(f, s):
    """F S with S of dim F x columns, row-major."""
    return (f.unsqueeze(-1) * s.unflatten(-1, (f.shape[-1], s.shape[-1] // f.shape[-1]))).sum(-2)


def _pad(x, start, dim):
    """x placed at [start, start + dim x) of a zero vector of dim `dim` (ExtractT, ElemT)."""
    return torch.nn.functional.pad(x, (start, dim - start - x.shape[-1]))


def _const(value):
    return lambda env, a, p: torch.full(env["shape"] + (1,), value, dtype=F64)


# One entry per op of the table: its dimension rule for the generator (`make`) and its dense value (`ev`).
# make(g, d, depth) -> (args as dims-to-generate or Nodes, params) or None when the op cannot give dim d.
@dataclass(frozen=True)
class Ref:
    ev: object
    make: object
    weight: float = 1.0


def _unary(fn, weight=1.0):
    return Ref(lambda env, a, p: fn(a[0]), lambda g, d, depth: ([d], ()), weight)


def _broadcast(arity, fn, weight=1.0):
    def make(g, d, depth):
        dims = [d if g.rng.random() < 0.7 else 1 for _ in range(arity)]
        if d > 1 and d not in dims:
            dims[g.rng.randrange(arity)] = d
        return dims, ()

    return Ref(lambda env, a, p: fn(*a), make, weight)


def _make_sumt(g, d, depth):
    return ([1], (d,)) if d > 1 else None


def _make_extract(g, d, depth):
    n = g.rng.randint(d, min(MAX_DIM, d + 4))
    return [n], (g.rng.randint(0, n - d), d)


def _make_extractt(g, d, depth):
    if d < 2:
        return None
    n = g.rng.randint(1, d - 1)
    return [n], (g.rng.randint(0, d - n), d)


def _make_elemt(g, d, depth):
    return ([1], (g.rng.randrange(d), d)) if d > 1 else None


def _make_concat(g, d, depth):
    if d < 2:
        return None
    a = g.rng.randint(1, d - 1)
    return [a, d - a], ()


def _make_matvec(g, d, depth, vecmat=False):
    f = g.rng.randint(1, max(1, MAX_DIM // d))
    return ([f, d * f] if vecmat else [d * f, f]), ()


def _make_tensorprod(g, d, depth):
    divs = [a for a in range(1, d + 1) if d % a == 0]
    a = g.rng.choice(divs)
    return [a, d // a], ()


def _make_grad(g, d, depth):
    vs = [v for v in g.vars if v.dim == d]
    if not vs:
        return None
    v = g.rng.choice(vs)
    k = g.rng.randint(1, 3)
    return [k, k], (v,)


def _make_weighted(g, d, depth, three=False):
    if d != 1:
        return None
    f = g.rng.randint(1, 4)
    s = g.rng.choice([1, f, f * f])
    return ([s, f, f] if three else [s, f]), ()


def _make_intcst(g, d, depth):
    return ([], (g.rng.randint(-3, 4),)) if d == 1 else None


def _make_ratcst(g, d, depth):
    return ([], (g.rng.randint(-5, 5), g.rng.choice([-3, 2, 3, 4, 7]))) if d == 1 else None


def _make_fpcst(g, d, depth):
    if d != 1:
        return None
    md, ed = g.rng.randint(-(2**20), 2**20), g.rng.randint(-30, 2)
    # the float twin: md 2^ed rounded to 24 bits (the double is exact: |md| < 2^53)
    mf, ef = md, ed
    while abs(mf) >= 2**24:
        mf, ef = mf // 2, ef + 1
    return [], (md, ed, mf, ef)


def _make_zero(g, d, depth):
    return ([], (d,)) if g.rng.random() < 0.3 else None  # rare: a zero tree compares little


def _ev_grad(env, a, p):
    raise AssertionError("Grad is evaluated by evaluate() itself")


def _ev_mod(x, m, o):
    """x - m floor((x - o) / m); d/dx = 1, d/dm = -floor(...), d/do = 0: floor is a constant (derivative 0),
    also where (x - o)/m is infinite (the KeOps convention: d/dm = -floor(inf) at m = 0)."""
    return x - m * torch.floor(((x - o) / m).detach())


def _ev_clamp(x, a, b):
    """a if x < a, else b if x > b, else x (also when a > b)."""
    return torch.where(x < a, a, torch.where(x > b, b, x))


def _ev_ifelse(c, a, b):
    """a if c >= 0 else b; the condition is not differentiated."""
    return torch.where(c.detach() >= 0, a, b)


REFERENCE = {
    # leaves
    "IntCst": Ref(lambda env, a, p: _const(float(p[0]))(env, a, p), _make_intcst, 0.5),
    "RatCst": Ref(lambda env, a, p: _const(p[0] / p[1])(env, a, p), _make_ratcst, 0.5),
    "FpCst": Ref(lambda env, a, p: _const(math.ldexp(p[0], p[1]))(env, a, p), _make_fpcst, 0.5),
    "Zero": Ref(lambda env, a, p: torch.zeros(env["shape"] + (p[0],), dtype=F64), _make_zero, 0.1),
    # elementwise unary
    "Exp": _unary(torch.exp),
    "Log": _unary(torch.log),
    "Sqrt": _unary(_Sqrt.apply),
    "Rsqrt": _unary(_Rsqrt.apply),
    "Square": _unary(torch.square),
    "Inv": _unary(torch.reciprocal),
    "Sin": _unary(torch.sin),
    "Cos": _unary(torch.cos),
    "Atan": _unary(torch.atan),
    "Abs": _unary(torch.abs),  # torch's |x|' = sign(x): 0 at 0, as the convention
    "Sign": _unary(_sign),
    "Step": _unary(_step),
    "ReLU": _unary(lambda x: torch.where(x < 0, torch.zeros_like(x), x)),  # NaN kept; ReLU'(0) = 1
    "XLogX": _unary(_XLogX.apply),
    "Floor": _unary(lambda x: torch.floor(x.detach())),  # derivative 0
    "Minus": _unary(torch.neg),
    # elementwise binary / ternary, a dim-1 operand broadcasting
    "Add": _broadcast(2, torch.add, 2.0),
    "Subtract": _broadcast(2, torch.sub, 2.0),
    "Mult": _broadcast(2, torch.mul, 2.0),
    "Divide": _broadcast(2, torch.div),
    "Powf": _broadcast(2, torch.pow),  # torch's derivatives at the singular points (conventions.md)
    "Clamp": _broadcast(3, _ev_clamp),
    "IfElse": _broadcast(3, _ev_ifelse),
    "Mod": _broadcast(3, _ev_mod),
    # integer power
    "Pow": Ref(lambda env, a, p: torch.pow(a[0], p[0]), lambda g, d, depth: ([d], (g.rng.randint(-2, 4),))),
    # vector ops
    "Sum": Ref(
        lambda env, a, p: a[0].sum(-1, keepdim=True), lambda g, d, depth: ([g.rdim()], ()) if d == 1 else None
    ),
    "SumT": Ref(lambda env, a, p: a[0].expand(*a[0].shape[:-1], p[0]), _make_sumt),
    "Scalprod": Ref(
        lambda env, a, p: (a[0] * a[1]).sum(-1, keepdim=True),
        lambda g, d, depth: ([k := g.rdim(), k], ()) if d == 1 else None,
    ),
    "SqNorm2": Ref(
        lambda env, a, p: _sqnorm2(a[0]), lambda g, d, depth: ([g.rdim()], ()) if d == 1 else None
    ),
    "Concat": Ref(lambda env, a, p: torch.cat([a[0], a[1]], -1), _make_concat),
    "Extract": Ref(lambda env, a, p: a[0][..., p[0] : p[0] + p[1]], _make_extract),
    "ExtractT": Ref(lambda env, a, p: _pad(a[0], p[0], p[1]), _make_extractt, 0.5),
    "Elem": Ref(
        lambda env, a, p: a[0][..., p[0] : p[0] + 1],
        lambda g, d, depth: ([n := g.rdim()], (g.rng.randrange(n),)) if d == 1 else None,
    ),
    "ElemT": Ref(lambda env, a, p: _pad(a[0], p[0], p[1]), _make_elemt, 0.5),
    "MatVecMult": Ref(lambda env, a, p: _matvec(a[0], a[1]), _make_matvec),
    "VecMatMult": Ref(
        lambda env, a, p: _vecmat(a[0], a[1]), lambda g, d, depth: _make_matvec(g, d, depth, True)
    ),
    "TensorProd": Ref(
        lambda env, a, p: (a[0].unsqueeze(-1) * a[1].unsqueeze(-2)).flatten(-2), _make_tensorprod
    ),
    "Grad": Ref(_ev_grad, _make_grad),
    # composites (their definitions: docs/ops.md)
    "SqDist": Ref(
        lambda env, a, p: _sqnorm2(a[0] - a[1]),
        lambda g, d, depth: ([k := g.rdim(), k], ()) if d == 1 else None,
        2.0,
    ),
    "Norm2": Ref(
        lambda env, a, p: _Sqrt.apply(_sqnorm2(a[0])),
        lambda g, d, depth: ([g.rdim()], ()) if d == 1 else None,
    ),
    "Normalize": Ref(lambda env, a, p: _Rsqrt.apply(_sqnorm2(a[0])) * a[0], lambda g, d, depth: ([d], ())),
    "WeightedSqNorm": Ref(lambda env, a, p: _weighted_sqnorm(a[0], a[1]), _make_weighted),
    "WeightedSqDist": Ref(
        lambda env, a, p: _weighted_sqnorm(a[0], a[1] - a[2]),
        lambda g, d, depth: _make_weighted(g, d, depth, True),
    ),
}
# Ops of the table the fuzzer does not generate, each with its reason (none today).
EXCLUDED: dict[str, str] = {}
LEAVES = {"IntCst", "RatCst", "FpCst", "Zero"}


# ---------------------------------------------------------------------------------------------------------
# The generator
# ---------------------------------------------------------------------------------------------------------
class Gen:
    def __init__(self, rng, variables):
        self.rng = rng
        self.vars = variables
        self.ops = sorted(set(REFERENCE) - LEAVES | {"Zero"})

    def rdim(self):
        return self.rng.choice([1, 1, 2, 3, 4, 5, 8])

    def tree(self, d, depth, root=None):
        """A random tree of dim d and nesting depth <= depth (+1 for a leaf adapter)."""
        if depth <= 0 or (root is None and self.rng.random() < 0.25):
            return self.leaf(d)
        names = [root] if root else self.ops
        weights = [REFERENCE[n].weight for n in names]
        for _ in range(30):
            name = self.rng.choices(names, weights)[0]
            made = REFERENCE[name].make(self, d, depth)
            if made is None:
                continue
            dims, params = made
            args = [self.tree(k, depth - 1) for k in dims]
            return Node(name, args, tuple(params), d, self.rng.randrange(2))
        return self.leaf(d)

    def leaf(self, d):
        """Mostly a variable: of dim d, or under one adapter op (Extract, Elem, Sum, SumT, ExtractT); a
        constant for d = 1 now and then."""
        rng = self.rng
        same = [v for v in self.vars if v.dim == d]
        if d == 1 and rng.random() < 0.15:
            name = rng.choice(sorted(LEAVES - {"Zero"}))
            return Node(name, [], tuple(REFERENCE[name].make(self, 1, 0)[1]), 1, rng.randrange(2))
        if same and rng.random() < 0.8:
            return Node("Var", [], (rng.choice(same),), d)
        v = rng.choice(self.vars)
        child = Node("Var", [], (v,), v.dim)
        if v.dim == d:
            return child
        if d == 1:
            return (
                Node("Sum", [child], (), 1)
                if rng.random() < 0.3
                else Node("Elem", [child], (rng.randrange(v.dim),), 1)
            )
        if v.dim > d:
            return Node("Extract", [child], (rng.randint(0, v.dim - d), d), d)
        if v.dim == 1:
            return Node("SumT", [child], (d,), d)
        return Node("ExtractT", [child], (rng.randint(0, d - v.dim), d), d)


def _used(node):
    """The variables of a tree (Grad's variable included)."""
    out = {node.params[0].name} if node.op in ("Var", "Grad") else set()
    for c in node.args:
        out |= _used(c)
    return out


def make_variables(rng):
    """2-4 variables: at least one Vi and one Vj (they give N and M), dims 1-8."""
    cats = [0, 1] + [rng.randrange(3) for _ in range(rng.randint(0, 2))]
    return [Var(f"{'xyp'[c]}{k}", c, rng.randint(1, 8)) for k, c in enumerate(cats)]


@dataclass
class Case:
    seed: int
    variables: list
    tree: Node
    tree2: Node | None  # formula2 of LogSumExp (weights) and SumSoftMaxWeight (values)
    reduction: str
    axis: int
    k: int | None
    grad_vars: list  # names of the variables that require grad
    second: bool  # also the second derivatives

    @property
    def formula(self):
        return self.tree.text()

    @property
    def formula2(self):
        return self.tree2.text() if self.tree2 is not None else None

    @property
    def aliases(self):
        return [v.alias() for v in self.variables]

    def describe(self):
        return (
            f"case seed {self.seed} (replay: KMR_FUZZ_FORMULAS_REPLAY={self.seed}): Genred({self.formula!r}, "
            f"{self.aliases!r}, reduction_op={self.reduction!r}, axis={self.axis}, opt_arg={self.k}, "
            f"formula2={self.formula2!r}); gradients in {self.grad_vars}, second order: {self.second}"
        )


def make_case(seed):
    rng = random.Random(seed)
    variables = make_variables(rng)
    g = Gen(rng, variables)
    reduction = rng.choice(sorted(REDUCTIONS))
    kind = REDUCTIONS[reduction].kind
    d = 1 if kind in ("lse", "ssmw") else rng.choice([1, 1, 2, 3])
    depth = rng.randint(2, MAX_DEPTH - 1)
    for _ in range(20):  # preferably a formula of an i- and a j-variable
        tree = g.tree(d, depth)
        tree2 = None
        if kind == "ssmw" or (kind == "lse" and rng.random() < 0.4):
            tree2 = g.tree(rng.randint(1, 3), rng.randint(0, 2))
        used = _used(tree) | (_used(tree2) if tree2 is not None else set())
        if {v.cat for v in variables if v.name in used} >= {0, 1}:
            break
    k = rng.randint(1, KMAX) if REDUCTIONS[reduction].uses_k else None
    pool = sorted(used) or [v.name for v in variables]
    grad_vars = [] if kind == "index" else sorted(rng.sample(pool, min(len(pool), rng.randint(1, 2))))
    return Case(seed, variables, tree, tree2, reduction, rng.randrange(2), k, grad_vars, rng.random() < 0.6)


# ---------------------------------------------------------------------------------------------------------
# Dense evaluation of a case
# ---------------------------------------------------------------------------------------------------------
def evaluate(node, env):
    """The dense value [N, M, dim] of a tree; env: {'shape': (N, M), name: [N, M, dim] tensors}."""
    if node.op == "Var":
        return env[node.params[0].name]
    if node.op == "Grad":
        f, e = evaluate(node.args[0], env), evaluate(node.args[1], env)
        v = env[node.params[0].name]
        if not f.requires_grad:
            return torch.zeros_like(v)
        # d<F, E>/dV at each pair; E is not differentiated (create_graph: the result is, to any order)
        (gv,) = torch.autograd.grad(f, v, grad_outputs=e, create_graph=True, allow_unused=True)
        return torch.zeros_like(v) if gv is None else gv
    args = [evaluate(c, env) for c in node.args]
    return REFERENCE[node.op].ev(env, args, node.params)


def dense_env(case, data, n, m):
    """Every variable as an [N, M, dim] tensor (expanded views of the arguments: Grad's per-pair derivative
    is autograd's derivative with respect to that view)."""
    env = {"shape": (n, m)}
    for v in case.variables:
        t = data[v.name]
        if v.cat == 0:
            t = t[:, None, :].expand(n, m, v.dim)
        elif v.cat == 1:
            t = t[None, :, :].expand(n, m, v.dim)
        else:
            t = t.expand(n, m, v.dim)
        # a node of its own, with respect to which Grad nodes differentiate (a leaf of its own when the
        # argument needs no gradient)
        env[v.name] = t * 1.0 if t.requires_grad else t.clone().requires_grad_(True)
    return env


def select(fr, largest, k):
    """Sorted selection along dim 1 of fr [rows, R, D], ties to the smaller index: NaN first for Min/Max (it
    propagates), after all numbers for KMin (torch.sort order). Returns (values, int64 indices) [rows, k, D];
    the values are gathered, so their gradient flows to the selected pairs."""
    nan = torch.isnan(fr)
    v = torch.where(nan, torch.zeros_like(fr), fr.detach())
    order = torch.sort(-v if largest else v, dim=1, stable=True).indices
    nan_key = nan.gather(1, order)
    nan_key = (~nan_key if k is None else nan_key).to(torch.int8)
    order = order.gather(1, torch.sort(nan_key, dim=1, stable=True).indices)
    idx = order[:, : (k or 1)]
    return fr.gather(1, idx), idx


def reduce_dense(case, f, f2, rows, red_size):
    """The reference output: values (or None) and int64 indices (or None), in pykmr.torch's shapes."""
    kind = REDUCTIONS[case.reduction].kind
    fr = f if case.axis == 1 else f.transpose(0, 1)  # [rows, reduced, D]
    f2r = None if f2 is None else (f2 if case.axis == 1 else f2.transpose(0, 1))
    d = fr.shape[-1]
    if kind == "sum":
        return fr.sum(1), None
    if kind in ("lse", "ssmw"):
        w = f2r if f2r is not None else torch.ones_like(fr)
        if red_size == 0:
            dd = w.shape[-1]
            return torch.full((rows, dd), -math.inf if kind == "lse" else math.nan, dtype=F64), None
        mx = fr.detach().amax(1, keepdim=True)
        finite = torch.isfinite(mx)
        shift = torch.where(finite, mx, torch.zeros_like(mx))
        # p_j = exp(f_j - max): the limit where max = +inf is uniform over the +inf terms; none where -inf
        p = torch.where(finite, torch.exp(fr - shift), (fr == mx).to(F64) * (mx == math.inf))
        s = (p * w).sum(1)
        if kind == "lse":
            return mx[:, 0] + torch.log(s), None
        return s / p.sum(1), None
    largest = case.reduction.startswith("Max") or case.reduction == "ArgMax"
    uses_k = REDUCTIONS[case.reduction].uses_k
    if red_size == 0:
        vals = torch.full((rows, d), math.inf if not largest else -math.inf, dtype=F64)
        idx = torch.full((rows, d), -1, dtype=torch.int64)
    else:
        vals, idx = select(fr, largest, case.k if uses_k else None)
        if not uses_k:
            vals, idx = vals[:, 0], idx[:, 0]
        elif d == 1:
            vals, idx = vals[..., 0], idx[..., 0]
    if kind == "select":
        return vals, None
    if kind == "index":
        return None, idx
    return vals, idx


def near_tie(case, f, red_size):
    """Whether some selected candidate of a Min/Max/KMin has a rival within TIE_RTOL (or is NaN)."""
    if REDUCTIONS[case.reduction].kind not in ("select", "both", "index") or red_size < 2:
        return False
    fr = (f if case.axis == 1 else f.transpose(0, 1)).detach()
    if torch.isnan(fr).any():
        return True
    srt = torch.sort(fr, dim=1).values
    k = case.k or 1
    gaps = srt[:, 1:] - srt[:, :-1]  # consecutive candidates
    scale = srt[:, 1:].abs() + srt[:, :-1].abs()
    tied = (gaps <= TIE_RTOL * scale) | ~torch.isfinite(gaps)
    largest = case.reduction.startswith("Max") or case.reduction == "ArgMax"
    tied = tied[:, -k:] if largest else tied[:, :k]
    return bool(tied.any())


# ---------------------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------------------
def tile_vars(case):
    """Vi and Vj variables of dim 8 (docs/internals.md: SqDist/Scalprod terms of an i and a j variable of dim
    >= 8 come from |x|^2 + |y|^2 - 2<x,y>, so +-inf gives NaN and equal rows a rounding residue instead of
    0: documented differences). The special inputs put no inf and no equal rows in them."""
    i8 = [v.name for v in case.variables if v.cat == 0 and v.dim >= 8]
    j8 = [v.name for v in case.variables if v.cat == 1 and v.dim >= 8]
    return set(i8 + j8) if i8 and j8 else set()


def make_inputs(case, scenario, gen):
    """({name: leaf tensor}, n, m) for a scenario: 'generic', 'special' or 'empty'."""
    n, m = (int(torch.randint(1, 7, (1,), generator=gen)) for _ in range(2))
    if scenario == "empty":
        empty_rows = bool(torch.randint(0, 2, (1,), generator=gen))
        if empty_rows == (case.axis == 1):
            n = 0
        else:
            m = 0
    if REDUCTIONS[case.reduction].uses_k:  # K <= the reduced size (an empty one is tested to raise)
        if case.axis == 1 and m:
            m = max(m, case.k)
        if case.axis == 0 and n:
            n = max(n, case.k)
    data = {}
    for v in case.variables:
        shape = {0: (n, v.dim), 1: (m, v.dim), 2: (v.dim,)}[v.cat]
        data[v.name] = 2 * torch.rand(shape, dtype=F64, generator=gen) - 1
    if scenario == "special":
        avoid = tile_vars(case)
        # equal rows: a j-row copies an i-row (x = y) where dims agree
        xs = [v for v in case.variables if v.cat == 0 and v.name not in avoid]
        ys = [v for v in case.variables if v.cat == 1 and v.name not in avoid]
        for x in xs:
            for y in ys:
                if x.dim == y.dim and n and m:
                    data[y.name][int(torch.randint(0, m, (1,), generator=gen))] = data[x.name][
                        int(torch.randint(0, n, (1,), generator=gen))
                    ]
        specials = [0.0, 0.0, 0.0, 1.0, -1.0, math.nan, math.inf, -math.inf]
        for v in case.variables:
            t = data[v.name].view(-1)
            if t.numel() == 0:
                continue
            if v.cat != 2 and t.numel() > v.dim and torch.rand((), generator=gen) < 0.5:
                data[v.name][0] = 0.0  # a zero row
            for _ in range(int(torch.randint(0, 3, (1,), generator=gen))):
                s = specials[int(torch.randint(0, len(specials), (1,), generator=gen))]
                if math.isinf(s) and v.name in avoid:
                    s = 0.0
                t[int(torch.randint(0, t.numel(), (1,), generator=gen))] = s
    return data, n, m


def layout(t, how):
    """The same values as a (non-contiguous) differentiable view of t."""
    if how == 1 and t.dim() == 2:
        return t.t().contiguous().t()  # transposed storage
    if how == 2:
        return t.repeat_interleave(2, dim=0)[::2]  # strided rows
    if how == 3 and t.dim() == 2:
        return t.repeat_interleave(3, dim=1)[:, ::3]  # strided columns
    return t


# ---------------------------------------------------------------------------------------------------------
# Running and comparing
# ---------------------------------------------------------------------------------------------------------
def _as_pair(res, kind):
    """(values or None, indices or None) of a pykmr.torch result."""
    if kind == "both":
        return res
    if kind == "index":
        return None, res
    return res, None


def run_pykmr(case, scenario, gen_seed):
    """The pykmr side of one scenario: a dict with the inputs, the output, the gradients."""
    gen = torch.Generator().manual_seed(gen_seed)
    data, n, m = make_inputs(case, scenario, gen)
    hows = {v.name: int(torch.randint(0, 4, (1,), generator=gen)) for v in case.variables}
    kind = REDUCTIONS[case.reduction].kind
    grads = scenario != "special" and bool(case.grad_vars)
    leaves = {k: t.clone().requires_grad_(grads and k in case.grad_vars) for k, t in data.items()}
    routine = Genred(
        case.formula,
        case.aliases,
        reduction_op=case.reduction,
        axis=case.axis,
        opt_arg=case.k,
        formula2=case.formula2,
    )
    args = [layout(leaves[v.name], hows[v.name] if scenario != "special" else 0) for v in case.variables]
    out = {"data": data, "n": n, "m": m, "seed": gen_seed}
    rows, red = (n, m) if case.axis == 1 else (m, n)
    if REDUCTIONS[case.reduction].uses_k and case.k > red:
        with pytest.raises(ValueError, match="K"):
            routine(*args)
        out["raised"] = True
        return out
    vals, idx = _as_pair(routine(*args), kind)
    out["vals"], out["idx"] = vals, idx
    if grads:
        out.update(_grads(case, vals, [leaves[k] for k in case.grad_vars], gen_seed))
    return out


def _grads(case, vals, inputs, gen_seed):
    """First derivatives of <vals, W>, and second ones of <first, W2> (W, W2 fixed random weights)."""
    gen = torch.Generator().manual_seed(gen_seed + 1)
    w = torch.rand(vals.shape, dtype=F64, generator=gen) - 0.5
    ws = [torch.rand(x.shape, dtype=F64, generator=gen) - 0.5 for x in inputs]
    first = torch.autograd.grad((vals * w).sum(), inputs, create_graph=case.second, allow_unused=True)
    first = [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, first)]
    out = {"grad1": [g.detach() for g in first]}
    if case.second:
        total = sum((g * wk).sum() for g, wk in zip(first, ws))
        if total.requires_grad:
            second = torch.autograd.grad(total, inputs, allow_unused=True)
            out["grad2"] = [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, second)]
        else:
            out["grad2"] = [torch.zeros_like(x) for x in inputs]
    return out


def run_reference(case, got):
    """The dense side, on the same inputs (fresh leaves)."""
    n, m = got["n"], got["m"]
    leaves = {
        k: t.clone().requires_grad_(k in case.grad_vars and "grad1" in got) for k, t in got["data"].items()
    }
    env = dense_env(case, leaves, n, m)
    f = evaluate(case.tree, env)
    f2 = evaluate(case.tree2, env) if case.tree2 is not None else None
    rows, red = (n, m) if case.axis == 1 else (m, n)
    vals, idx = reduce_dense(case, f, f2, rows, red)
    out = {"f": f.detach(), "vals": vals, "idx": idx, "tie": near_tie(case, f, red)}
    if "grad1" in got:
        if vals.requires_grad:
            out.update(_grads(case, vals, [leaves[k] for k in case.grad_vars], got["seed"]))
        else:
            zeros = [torch.zeros_like(leaves[k]) for k in case.grad_vars]
            out.update({"grad1": zeros, "grad2": zeros})
    return out


def _mismatch(got, ref, rtol, atol, scale=None, only_finite_ref=False):
    """A message for the first entries where got differs from ref, or None."""
    if got.shape != ref.shape:
        return f"shape {tuple(got.shape)} != reference {tuple(ref.shape)}"
    got, ref = got.detach(), ref.detach()
    sc = ref.abs() if scale is None else torch.maximum(ref.abs(), scale)
    sc = torch.where(torch.isfinite(sc), sc, torch.zeros_like(sc))
    ok = (got - ref).abs() <= atol + rtol * sc
    ok |= torch.isnan(got) & torch.isnan(ref)
    ok |= torch.isinf(ref) & (got == ref)
    if only_finite_ref:
        ok |= ~torch.isfinite(ref)
    if bool(ok.all()):
        return None
    bad = (~ok).nonzero()[:4].tolist()
    return "; ".join(
        f"at {tuple(b)}: got {got[tuple(b)].item()!r}, reference {ref[tuple(b)].item()!r}" for b in bad
    )


def _sum_scale(case, f, rows):
    """Per output entry, the sum of |terms| of a Sum (the scale of its rounding error)."""
    kind = REDUCTIONS[case.reduction].kind
    fr = f if case.axis == 1 else f.transpose(0, 1)
    if kind != "sum" or fr.numel() == 0:
        return None
    a = fr.abs()
    return torch.where(torch.isfinite(a), a, torch.zeros_like(a)).sum(1)


def _check_indices(case, got_idx, ref, rows, red):
    """Indices are valid, distinct among the K of a row, and select a reference value equal (within the
    tolerance, or both NaN) to the reference's selection at that rank: any near-optimal index is accepted."""
    if got_idx.dtype != torch.int64:
        return f"indices have dtype {got_idx.dtype}, expected int64"
    if got_idx.shape != ref["idx"].shape:
        return f"indices shape {tuple(got_idx.shape)} != reference {tuple(ref['idx'].shape)}"
    if red == 0 or rows == 0:
        return None if bool((got_idx == -1).all()) else f"indices {got_idx.tolist()} for an empty reduction"
    fr = ref["f"] if case.axis == 1 else ref["f"].transpose(0, 1)
    d = fr.shape[-1]
    g = got_idx.reshape(rows, -1, d)  # [rows, K, D]
    r = ref["idx"].reshape(rows, -1, d)
    if bool(((g < 0) | (g >= red)).any()):
        return f"index out of [0, {red}): {got_idx.tolist()}"
    if g.shape[1] > 1 and bool((torch.sort(g, 1).values[:, 1:] == torch.sort(g, 1).values[:, :-1]).any()):
        return f"repeated index among the K of a row: {got_idx.tolist()}"
    picked, wanted = fr.gather(1, g), fr.gather(1, r)
    bad = _mismatch(picked, wanted, TIE_RTOL, VALUE_ATOL)
    return (
        None if bad is None else f"indices {got_idx.tolist()} select other values than the reference: {bad}"
    )


def check_case(case, scenario, gen_seed, stats):
    """Runs pykmr and the reference on one scenario; returns a list of failure messages. stats counts what
    was compared (values, index sets, gradient entries where the reference is finite, skipped ties)."""
    got = run_pykmr(case, scenario, gen_seed)
    if got.get("raised"):
        stats["K > reduced size raised"] += 1
        return []
    ref = run_reference(case, got)
    rows, red = (got["n"], got["m"]) if case.axis == 1 else (got["m"], got["n"])
    fails = []
    stats[f"{scenario} values"] += 1
    if got["vals"] is not None:
        bad = _mismatch(got["vals"], ref["vals"], VALUE_RTOL, VALUE_ATOL, _sum_scale(case, ref["f"], rows))
        if bad:
            fails.append(f"{scenario}: values: {bad}")
    if got["idx"] is not None:
        bad = _check_indices(case, got["idx"], ref, rows, red)
        if bad:
            fails.append(f"{scenario}: {bad}")
    if "grad1" in got and ref["tie"]:
        stats["gradients skipped (near-tie)"] += 1
    # LogSumExp with weights whose weighted sum is negative (a NaN output) is compared too: its gradients
    # follow Log's convention, d log s = ds / s, at every order (test_weighted_logsumexp_negative_sums_*).
    if "grad1" in got and not ref["tie"]:
        orders = ["grad1"] + (["grad2"] if case.second else [])
        for order in orders:
            for name, g, r in zip(case.grad_vars, got[order], ref[order]):
                if scenario == "empty":
                    bad = (
                        None
                        if bool((g == 0).all()) and g.shape == r.shape
                        else f"{g.tolist()} (expected zeros)"
                    )
                else:
                    bad = _mismatch(g, r, GRAD_RTOL, GRAD_ATOL, only_finite_ref=True)
                    stats[f"{order} finite entries"] += int(torch.isfinite(r).sum())
                if bad:
                    fails.append(f"{scenario}: {order} d/d{name}: {bad}")
    return fails


SCENARIOS = ("generic", "special", "empty")


def run_case(case, stats):
    fails = []
    for k, scenario in enumerate(SCENARIOS):
        try:
            fails += check_case(case, scenario, case.seed * 7 + k, stats)
        except Exception as e:  # pykmr (or the reference) raised: report it with the case
            fails.append(f"{scenario}: raised {type(e).__name__}: {str(e)[:500]}")
    return fails


def _pykmr_only(case):
    """What the warm-up runs in threads: the pykmr calls (they compile every module of the case)."""

    def job():
        for k, scenario in enumerate(SCENARIOS):
            run_pykmr(case, scenario, case.seed * 7 + k)

    return job


# ---------------------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------------------
def test_every_op_has_a_reference():
    """Every op of the parser's table is generated with a dense reference, or excluded with a reason."""
    table = set(OP_TABLE)
    missing = table - set(REFERENCE) - set(EXCLUDED)
    assert not missing, f"ops of the op table without a reference in {__file__}: {sorted(missing)}"
    assert not set(REFERENCE) & set(EXCLUDED), "an op is both referenced and excluded"
    stale = (set(REFERENCE) | set(EXCLUDED)) - table
    assert not stale, f"references of ops no longer in the op table: {sorted(stale)}"


def _point(v):
    return torch.tensor([[[v]]], dtype=F64, requires_grad=True)


def _d(y, x, create_graph=False):
    """dy/dx (zeros where y does not depend on x)."""
    g = (
        torch.autograd.grad(y, x, create_graph=create_graph, retain_graph=True, allow_unused=True)[0]
        if y.requires_grad
        else None
    )
    return torch.zeros_like(x) if g is None else g


def test_reference_follows_the_conventions():
    """The dense reference itself at every row of the conventions table (pykmr.conventions.TABLE): value,
    d/dX, d2/dX2 and the other first derivatives; this test compiles nothing."""
    for formula, at, value, dx, dxx, others, _ in CONVENTIONS:
        pts = {k: _point(at.get(k, 1.0)) for k in "XBC"}
        tree = _parse_simple(formula, {k: Var(k, 0, 1) for k in "XBC"})
        val = evaluate(tree, {"shape": (1, 1), **pts})
        gx = _d(val.sum(), pts["X"], create_graph=True)
        got = {"value": val, "d/dX": gx, "d2/dX2": _d(gx.sum(), pts["X"])}
        want = {"value": value, "d/dX": dx, "d2/dX2": dxx}
        for name, wrt in others.items():
            got[f"d/d{name}"], want[f"d/d{name}"] = _d(val.sum(), pts[name]), wrt
        for key, w in want.items():
            gv = got[key].item()
            assert (math.isnan(w) and math.isnan(gv)) or gv == w, (
                f"{formula} at {at}: {key} = {gv}, convention {w}"
            )


def _parse_simple(text, variables):
    """Name(args) / variables / integers (the conventions table's formulas) into a Node."""
    text = text.replace(" ", "")
    pos = 0

    def expr():
        nonlocal pos
        start = pos
        while pos < len(text) and (text[pos].isalnum() or text[pos] == "-"):
            pos += 1
        word = text[start:pos]
        if word in variables:
            return Node("Var", [], (variables[word],), 1)
        if word.lstrip("-").isdigit():
            return int(word)
        assert text[pos] == "(", text
        pos += 1
        items = [expr()]
        while text[pos] == ",":
            pos += 1
            items.append(expr())
        pos += 1
        args = [a for a in items if isinstance(a, Node)]
        params = tuple(a for a in items if isinstance(a, int))
        return Node(word, args, params, 1)

    return expr()


def test_generated_formulas_parse_with_the_expected_dims(seed):
    """The generator's formulas are well typed: pykmr's parser accepts each one and gives it the dim the
    generator meant (no compilation). Each op of REFERENCE is forced at the root of some formulas."""
    rng = random.Random(seed)
    seen = set()
    for k in range(40 * len(REFERENCE)):
        variables = make_variables(rng)
        g = Gen(rng, variables)
        root = sorted(REFERENCE)[k % len(REFERENCE)]
        d = rng.randint(1, 6)
        tree = g.tree(d, rng.randint(1, MAX_DEPTH - 1), root=root)
        seen |= tree.ops()
        assert tree.depth() <= MAX_DEPTH, tree.text()
        aliases = [v.alias() for v in variables]
        try:
            core = pn.Genred(tree.text(), aliases, reduction_op="Sum", axis=1)._core
        except ValueError as e:
            pytest.fail(f"seed {seed}: the parser rejects generated formula {tree.text()!r} {aliases}: {e}")
        assert core.out_dim == tree.dim, (
            f"seed {seed}: {tree.text()!r} {aliases}: dim {core.out_dim} != {tree.dim}"
        )
    assert seen >= set(REFERENCE), f"never generated: {sorted(set(REFERENCE) - seen)}"


def _cases(seed):
    if REPLAY:
        return [make_case(int(REPLAY))]
    rng = random.Random(seed)
    return [make_case(rng.randrange(2**31)) for _ in range(CASES)]


def test_fuzz_formulas(seed):
    """CASES random cases (fixed seed in CI), pykmr against the dense reference; every failure is listed."""
    cases = _cases(seed)
    t0 = time.perf_counter()
    warm_up([_pykmr_only(c) for c in cases])  # the JIT compiles the cases' modules in parallel
    t1 = time.perf_counter()
    report, stats = [], collections.Counter()
    for case in cases:
        fails = run_case(case, stats)
        if fails:
            report.append(case.describe() + "\n    " + "\n    ".join(fails))
    ops = set().union(*(c.tree.ops() for c in cases))
    print(
        f"seed={seed}: {len(cases)} cases, warm-up {t1 - t0:.1f} s, checks {time.perf_counter() - t1:.1f} s, "
        f"{len(ops)} ops: {sorted(ops)}; compared: {dict(stats)}"
    )
    assert not report, f"{len(report)} of {len(cases)} cases differ from the reference:\n" + "\n".join(report)
    # not vacuous: the campaign compared values on every scenario and some gradients of both orders
    if len(cases) >= 4:
        assert stats["generic values"] == len(cases) and stats["grad1 finite entries"] > 0, dict(stats)
        assert stats["grad2 finite entries"] > 0, dict(stats)


def test_weighted_logsumexp_negative_sum():
    """Found by this fuzzer: out = log(sum_j exp(y_j) w_j) with y = (0, 0), w = (1, -2): s = -1, out NaN;
    by Log's convention (docs/conventions.md: d log x = 1/x, also for x < 0) d/dy = exp(y) w / s = (-1, 2)
    and d/dw = exp(y) / s = (-1, -1), finite (the backward divides by the kernel's S, not exp(F - L))."""
    routine = Genred("Y", ["X = Vi(1)", "Y = Vj(1)", "W = Vj(1)"], "LogSumExp", axis=1, formula2="W")
    x = torch.zeros(1, 1, dtype=F64)
    y = torch.zeros(2, 1, dtype=F64, requires_grad=True)
    w = torch.tensor([[1.0], [-2.0]], dtype=F64, requires_grad=True)
    out = routine(x, y, w)
    assert torch.isnan(out).all()
    gy, gw = torch.autograd.grad(out.sum(), [y, w])
    torch.testing.assert_close(gy, torch.tensor([[-1.0], [2.0]], dtype=F64))
    torch.testing.assert_close(gw, torch.tensor([[-1.0], [-1.0]], dtype=F64))


@pytest.mark.parametrize("batched", [False, True], ids=["state", "batched"])
@pytest.mark.parametrize("dim_w", [1, 2])
def test_weighted_logsumexp_negative_sums_any_order(batched, dim_w):
    """The whole kind of test_weighted_logsumexp_negative_sum: rows whose weighted sum is negative next to
    rows whose sum is positive, first and second order against torch float64 (whose d log s = 1/s is also
    finite for s < 0), through the CPU's state backward and through the batched path (no state: the
    negated-weights LogSumExp gives log|s|). Seed printed."""
    seed = 3
    print(f"seed = {seed}")
    gen = torch.Generator().manual_seed(seed)
    routine = Genred("X*Y", ["X = Vi(1)", "Y = Vj(1)", f"W = Vj({dim_w})"], "LogSumExp", axis=1, formula2="W")
    batch = (2,) if batched else ()
    # rows x < 0 weigh the first j most (w > 0 there), rows x > 0 the last (w < 0): both signs of sum
    noise = 0.1 * torch.rand(*batch, 4, 1, dtype=F64, generator=gen)
    x = (torch.tensor([[-3.0], [-1.0], [1.0], [3.0]], dtype=F64) + noise).requires_grad_(True)
    y = torch.linspace(-1, 1, 5, dtype=F64).reshape(5, 1) + 0.1 * torch.rand(
        *batch, 5, 1, dtype=F64, generator=gen
    )
    y.requires_grad_(True)
    w0 = torch.tensor([[2.0, -2.0], [1.0, 0.0], [-1.0, 1.0], [-1.0, 1.0], [-3.0, 3.0]], dtype=F64)[:, :dim_w]
    w = (w0 + 0.1 * torch.rand(*batch, 5, dim_w, dtype=F64, generator=gen)).requires_grad_(True)

    def dense(x, y, w):  # log sum_j exp(x_i y_j) w_j, NaN where the sum is negative, as torch.log
        return torch.log((torch.exp(x * y.transpose(-1, -2)).unsqueeze(-1) * w.unsqueeze(-3)).sum(-2))

    out, ref = routine(x, y, w), dense(x, y, w)
    neg = torch.isnan(ref)
    assert neg.any() and (~neg).any(), "the data must mix negative and positive sums"
    assert torch.equal(torch.isnan(out), neg)
    # a loss that reads every output, the NaN ones through a finite derivative
    v = torch.rand(out.shape, dtype=F64, generator=gen)
    g1 = torch.autograd.grad((out * v).nansum(), [x, y, w], create_graph=True)
    r1 = torch.autograd.grad((ref * v).nansum(), [x, y, w], create_graph=True)
    for got, want in zip(g1, r1):
        torch.testing.assert_close(got, want)
    # second order: the gradient of a functional of the first-order gradients
    u = [torch.rand(t.shape, dtype=F64, generator=gen) for t in g1]
    g2 = torch.autograd.grad(sum((a * b).sum() for a, b in zip(g1, u)), [x, y, w])
    r2 = torch.autograd.grad(sum((a * b).sum() for a, b in zip(r1, u)), [x, y, w])
    for got, want in zip(g2, r2):
        torch.testing.assert_close(got, want)
