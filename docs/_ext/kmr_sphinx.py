"""Sphinx extension of the pykmr docs.

* ``ops.md`` (the op reference) is generated at build time from the parser's op table
  (src/runtime/op_table.cpp: name, arity, integer parameters, signature, dimension rule; the composite
  ops and their expansions) joined with the one-line math and derivative/singular-point comment that
  sits above each op's functor in include/kmr/formula/*.hpp. Nothing in it is kept by hand: an op added
  to the table appears; an op without a header comment, or one that the installed libkmr's parser
  rejects, fails the build.
* Pages added to docs/ by others (e.g. lazy_tensor.md, conventions.md, a dask page) are appended to the
  index's "More" toctree when the index does not list them, so that they are never orphans.
* ``gallery_argv``: the command line of the gallery's example scripts (``--small --out TMP``).
"""

from __future__ import annotations

import glob
import os
import re
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
DOCS = os.path.dirname(HERE)
ROOT = os.path.dirname(DOCS)
OP_TABLE = os.path.join(ROOT, "src", "runtime", "op_table.cpp")
FORMULA_HEADERS = os.path.join(ROOT, "include", "kmr", "formula")

_OP = re.compile(r'\{"(\w+)",\s*(\d+),\s*(\d+),\s*"([^"]+)",\s*(\w+)\}')
_COMPOSITE = re.compile(r'\{"(\w+)",\s*(\d+),\s*"([^"]+)",\s*(?:"([^"]*)"|nullptr),\s*(\w+)\}')
_RULES = {
    "rule_same": "dim of F",
    "rule_scalar": "1",
    "rule_broadcast": "common dim (a dim-1 operand broadcasts)",
    "rule_sumt": "dim (F of dim 1, repeated)",
    "rule_scalprod": "1 (A, B of equal dims)",
    "rule_concat": "dim A + dim B",
    "rule_extract": "dim",
    "rule_extractt": "dim (F placed at start, zeros elsewhere)",
    "rule_elem": "1",
    "rule_elemt": "dim (F at index m, zeros elsewhere)",
    "rule_matvec": "rows of S (S: rows x dim F, row-major)",
    "rule_vecmat": "columns of S (S: dim F x columns, row-major)",
    "rule_tensorprod": "dim A x dim B",
    "rule_grad": "dim of V",
    "rule_zero": "dim",
    "rule_ratcst": "1",
}
# Ops without a functor of their own (the parser lowers them): what they are.
_BUILTIN = {
    "IntCst": "integer constant n (also written as a literal, e.g. 2)",
    "RatCst": "rational constant p/q (also written 0.5)",
    "Zero": "zero vector of dim `dim`",
    "Minus": "-F (also written as unary minus)",
    "Add": "A + B",
    "Subtract": "A - B",
    "Mult": "A * B (elementwise)",
    "Divide": "A / B (elementwise)",
    "Pow": "F^n for an integer n",
    "Sum": "sum of the coordinates of F",
    "SumT": "adjoint of Sum: F (dim 1) repeated dim times",
    "Scalprod": "(A|B), the scalar product",
    "SqNorm2": "|F|^2",
    "Concat": "[A, B]",
    "Extract": "F[start : start + dim]",
    "ExtractT": "adjoint of Extract",
    "Elem": "F[m]",
    "ElemT": "adjoint of Elem",
    "MatVecMult": "S F (matrix-vector product)",
    "VecMatMult": "F S (vector-matrix product)",
    "TensorProd": "A B^T flattened (outer product)",
    "Grad": "gradient of F with respect to variable V, contracted with E (resolved by the C++ templates)",
}


def read_op_table(path=OP_TABLE):
    """(ops, composites) parsed from the parser's op table."""
    with open(path) as f:
        text = f.read()
    ops_block = text[text.index("const OpSpec kOps[]") :]
    ops_block = ops_block[: ops_block.index("};")]
    comp_block = text[text.index("const CompositeSpec kComposites[]") :]
    comp_block = comp_block[: comp_block.index("};")]
    ops = [
        {"name": m[0], "arity": int(m[1]), "params": int(m[2]), "signature": m[3], "rule": m[4]}
        for m in _OP.findall(ops_block)
    ]
    comps = [
        {"name": m[0], "arity": int(m[1]), "signature": m[2], "expansion": m[3] or None, "picker": m[4]}
        for m in _COMPOSITE.findall(comp_block)
    ]
    if not ops or not comps:
        raise RuntimeError(f"kmr_sphinx: no op found in {path}: has its layout changed?")
    return ops, comps


def read_header_comments(folder=FORMULA_HEADERS):
    """{Name: comment lines}: the comment block above each struct *definition* of the formula headers
    (`struct ExpOp {`, or `template <...>` then `struct Sum {`); `NameOp` wins over `Name`."""
    out, weak = {}, {}
    for hpp in sorted(glob.glob(os.path.join(folder, "*.hpp"))):
        with open(hpp) as f:
            lines = f.read().splitlines()
        for k, line in enumerate(lines):
            m = re.match(r"struct (\w+)\b[^;]*$", line)  # a definition, not a declaration
            if not m:
                continue
            j = k - 1
            while j >= 0 and lines[j].startswith("template"):
                j -= 1
            block = []
            while j >= 0 and lines[j].startswith("//"):
                block.insert(0, lines[j][2:].strip())
                j -= 1
            if not block:
                continue
            name = m.group(1)
            if name.endswith("Op"):
                out.setdefault(name[:-2], block)
            else:
                weak.setdefault(name, block)
    for name, block in weak.items():
        out.setdefault(name, block)
    return out


def _probe_formula(op):
    """A well-formed formula using `op`: its `arity` operands X = Vi(1), then its integer parameters (from
    the table's count, so a new op with parameters needs no edit here): 0 for a start or an index, 2 for a
    denominator, else 1."""
    name, args = op["signature"][:-1].split("(", 1)
    out = []
    for k, a in enumerate(args.split(",")):
        if k < op["arity"]:
            out.append("X")
        elif a in ("start", "m"):
            out.append("0")
        else:
            out.append("2" if (name, a) == ("RatCst", "q") else "1")
    return f"{name}({','.join(out)})"


def check_ops_with_libkmr(ops):
    """Asks the installed libkmr's parser for every op of the table: a documented op it does not know
    (or a stale op table) fails the build."""
    from pykmr import _kmr

    for op in ops:
        formula = _probe_formula(op)
        try:
            _kmr.Genred(formula, ["X = Vi(1)"], "Sum", 1)
        except ValueError as e:
            raise RuntimeError(f"kmr_sphinx: libkmr rejects {formula} (op {op['name']}): {e}") from e


def _md_cell(text):
    return text.replace("|", "\\|")


def ops_markdown():
    ops, comps = read_op_table()
    check_ops_with_libkmr(ops)
    comments = read_header_comments()
    missing = [op["name"] for op in ops if op["name"] not in comments and op["name"] not in _BUILTIN]
    if missing:
        raise RuntimeError(
            f"kmr_sphinx: ops without a math comment above their functor in include/kmr/formula: {missing}"
        )
    out = [
        "# Op reference",
        "",
        "```{note}",
        "Generated at build time from the parser's op table (`src/runtime/op_table.cpp`) and the comment",
        "above each op's functor in `include/kmr/formula/` (value, derivative, convention at singular",
        "points). Do not edit: change the table or the header.",
        "```",
        "",
        f"{len(ops)} ops and {len(comps)} composite ops.",
        "",
        "## Ops",
        "",
        "| Op | Operands | Integer parameters | Output dim | Value, derivative and singular points |",
        "| --- | --- | --- | --- | --- |",
    ]
    for op in ops:
        math = comments.get(op["name"]) or [_BUILTIN[op["name"]]]
        out.append(
            f"| `{_md_cell(op['signature'])}` | {op['arity']} | {op['params']} | "
            f"{_md_cell(_RULES.get(op['rule'], op['rule']))} | {_md_cell('; '.join(math))} |"
        )
    out += [
        "",
        "## Composite ops",
        "",
        "Each is rewritten by the parser into the ops above before anything else sees it (so its",
        "derivative and its singular points are those of the expansion).",
        "",
        "| Op | Expansion |",
        "| --- | --- |",
    ]
    for c in comps:
        exp = c["expansion"]
        if exp is None:
            exp = "by the weight's dim: scalar `S*SqNorm2(F)`, diagonal `Sum(S*Square(F))`, full `(F|S F)`"
        else:
            names = re.findall(r"\w+", c["signature"])[1:]  # the operands' names in the signature
            exp = "`" + re.sub(r"\$(\d)", lambda m, names=names: names[int(m.group(1))], exp) + "`"
        exp = _md_cell(exp)
        out.append(f"| `{_md_cell(c['signature'])}` | {exp} |")
    out.append("")
    return "\n".join(out)


MAIN_PAGES = {
    "index",
    "install",
    "formulas",
    "ops",
    "reductions",
    "autograd",
    "pykeops_migration",
    "gpu",
    "cpp",
    "troubleshooting",
    "api",
    "internals",
}


def extra_pages():
    """Pages in docs/ that the index does not list (added by other areas)."""
    names = []
    for p in sorted(glob.glob(os.path.join(DOCS, "*.md")) + glob.glob(os.path.join(DOCS, "*.rst"))):
        stem = os.path.splitext(os.path.basename(p))[0]
        if stem not in MAIN_PAGES:
            names.append(stem)
    return names


def _write_if_changed(path, text):
    if os.path.exists(path):
        with open(path) as f:
            if f.read() == text:
                return
    with open(path, "w") as f:
        f.write(text)


def _generate(app):
    _write_if_changed(os.path.join(app.srcdir, "ops.md"), ops_markdown())


def _index_extras(app, docname, source):
    if docname != "index":
        return
    pages = extra_pages()
    gallery = "sphinx_gallery.gen_gallery" in app.config.extensions
    block = ""
    if gallery:
        block += "\n```{toctree}\n:caption: Examples\n:maxdepth: 1\n\nauto_examples/index\n```\n"
    if pages:
        block += "\n```{toctree}\n:caption: More\n:maxdepth: 1\n\n" + "\n".join(pages) + "\n```\n"
    source[0] += block


def gallery_argv(gallery_conf, script_vars):
    """Command line of each gallery example: a quick size, figures written outside the source tree."""
    out = os.path.join(tempfile.gettempdir(), "pykmr-docs-gallery")
    return ["--small", "--out", out]


def setup(app):
    app.connect("builder-inited", _generate)
    app.connect("source-read", _index_extras)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
