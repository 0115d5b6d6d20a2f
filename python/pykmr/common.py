"""What pykmr.numpy and pykmr.torch share: alias parsing, the reduction table,
argument checks with errors that name the argument, output post-processing
(KeOps's shapes and dtypes) and the launch point of a kernel.

This module imports neither numpy nor torch: the front ends turn their arrays
into (shape, dtype name, data pointer) and call in here.
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass

from pykmr import _kmr

CATS = ("Vi", "Vj", "Pm")  # category codes 0, 1, 2 of _kmr.Genred.args
_CAT_OF = {"Vi": 0, "Vx": 0, "Vj": 1, "Vy": 1, "Pm": 2}


# ---------------------------------------------------------------------------------------------------------
# Aliases: "X = Vi(3)", "X = Vi(0, 3)", "X = Var(0, 3, 0)", older "X = Vx(3)" / "Vy"
# ---------------------------------------------------------------------------------------------------------
_ALIAS = re.compile(r"^\s*([A-Za-z_]\w*)\s*=\s*(Vi|Vj|Vx|Vy|Pm)\s*\(\s*(?:(\d+)\s*,\s*)?(\d+)\s*\)\s*$")
_ALIAS_VAR = re.compile(r"^\s*([A-Za-z_]\w*)\s*=\s*Var\s*\(\s*(\d+)\s*,\s*(\d+)\s*,\s*([012])\s*\)\s*$")
_IDENT = re.compile(r"[A-Za-z_]\w*")


@dataclass(frozen=True)
class Alias:
    name: str
    cat: int  # 0: i, 1: j, 2: parameter
    pos: int | None  # explicit position, or None (then: its index in the alias list)
    dim: int


def parse_alias(text: str) -> Alias | None:
    """Parses one alias; None if it is not of a form this module knows (libkmr then says why)."""
    m = _ALIAS.match(text)
    if m:
        pos = None if m.group(3) is None else int(m.group(3))
        return Alias(m.group(1), _CAT_OF[m.group(2)], pos, int(m.group(4)))
    m = _ALIAS_VAR.match(text)
    if m:
        return Alias(m.group(1), int(m.group(4)), int(m.group(2)), int(m.group(3)))
    return None


def parse_output(output) -> tuple[int, int]:
    """The output alias of generic_* ("A = Vi(2)", "A = Vx(2)", "A = Vj(3)"): (axis, dim)."""
    if not isinstance(output, str):
        raise TypeError(f"pykmr: the output alias must be a string like 'A = Vi(2)', got "
                        f"{type(output).__name__}")
    a = parse_alias(output)
    if a is None:
        raise ValueError(f"pykmr: malformed output alias '{output}': expected 'NAME = Vi(dim)' or "
                         "'NAME = Vj(dim)'")
    if a.cat == 2:
        raise ValueError(f"pykmr: the output alias '{output}' must be Vi/Vx (one row per i) or Vj/Vy, not Pm")
    if a.dim < 1:
        raise ValueError(f"pykmr: the output alias '{output}' has dim {a.dim}, expected >= 1")
    return (1 if a.cat == 0 else 0), a.dim


def to_all_i(text: str) -> str:
    """Re-declares every j-variable of a formula or alias as an i-variable (same positions and dims)."""
    text = re.sub(r"\b(?:Vj|Vy)(\s*\()", r"Vi\1", text)
    return re.sub(r"\bVar(\s*\(\s*\d+\s*,\s*\d+\s*,\s*)1(\s*\))", r"Var\g<1>0\2", text)


# ---------------------------------------------------------------------------------------------------------
# Reductions
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reduction:
    kind: str  # sum | lse | ssmw | select (values) | both (values + indices) | index
    uses_k: bool = False
    companion: str | None = None  # values + indices version, run when a value gradient is needed


# libkmr writes values ([rows, out_dim], the data dtype) and indices ([rows, out_idx_dim], int64: exact
# past 2^24, never through float32) to two arrays; out_dim or out_idx_dim is (K *) dim F.
REDUCTIONS = {
    "Sum": Reduction("sum"),
    "LogSumExp": Reduction("lse"),
    "SumSoftMaxWeight": Reduction("ssmw"),
    "Min": Reduction("select", companion="Min_ArgMin"),
    "Max": Reduction("select", companion="Max_ArgMax"),
    "KMin": Reduction("select", uses_k=True, companion="KMin_ArgKMin"),
    "Min_ArgMin": Reduction("both"),
    "Max_ArgMax": Reduction("both"),
    "KMin_ArgKMin": Reduction("both", uses_k=True),
    "ArgMin": Reduction("index"),
    "ArgMax": Reduction("index"),
    "ArgKMin": Reduction("index", uses_k=True),
}


@dataclass(frozen=True)
class CallPlan:
    """The sizes of one call: nx, ny, the broadcast batch dims, and per argument how it meets them:
    "shared" (no batch dim, or all of size 1: one copy for every batch, stride 0), "full" (every batch dim),
    "expand" (some of them: the front end materializes it with the full batch dims)."""

    nx: int
    ny: int
    batch: tuple
    modes: list

    @property
    def nbatch(self):
        return math.prod(self.batch)


# ---------------------------------------------------------------------------------------------------------
# One reduction as libkmr sees it, plus what the front ends need to check and name its arguments
# ---------------------------------------------------------------------------------------------------------
class GenredCore:
    def __init__(self, formula, aliases, reduction_op, axis, opt_arg, formula2, dtype_acc, sum_scheme):
        if not isinstance(formula, str):
            raise TypeError(f"pykmr: formula must be a string, got {type(formula).__name__}")
        if isinstance(aliases, str) or not isinstance(aliases, (list, tuple)):
            raise TypeError("pykmr: aliases must be a list of strings like ['X = Vi(3)', 'Y = Vj(3)']")
        for k, a in enumerate(aliases):
            if not isinstance(a, str):
                raise TypeError(f"pykmr: alias {k} must be a string like 'X = Vi(3)', got {type(a).__name__}")
        if not isinstance(reduction_op, str):
            raise TypeError(f"pykmr: reduction_op must be a string, got {type(reduction_op).__name__}")
        if isinstance(axis, bool) or axis not in (0, 1):
            raise ValueError(f"pykmr: axis must be 0 (reduce over i) or 1 (reduce over j), got {axis!r}")
        if opt_arg is not None and (isinstance(opt_arg, bool) or not isinstance(opt_arg, int)):
            raise TypeError(f"pykmr: opt_arg (K) must be an integer, got {opt_arg!r}")
        if formula2 is not None and not isinstance(formula2, str):
            raise TypeError(f"pykmr: formula2 must be a string, got {type(formula2).__name__}")
        self.formula = formula
        self.aliases = list(aliases)
        self.reduction_op = reduction_op
        self.axis = int(axis)
        self.opt_arg = opt_arg
        self.formula2 = formula2
        self.dtype_acc = dtype_acc
        self.sum_scheme = sum_scheme
        self.kernel = _kmr.Genred(formula, self.aliases, reduction_op, self.axis, opt_arg or 0,
                                  formula2 or "", dtype_acc, sum_scheme)
        self.red = REDUCTIONS[reduction_op]
        self.k = opt_arg if self.red.uses_k else 1
        self.args = [tuple(a) for a in self.kernel.args]  # (cat, dim) per argument position
        self.nargs = len(self.args)
        self.out_dim = self.kernel.out_dim  # values per output row
        self.out_idx_dim = self.kernel.out_idx_dim  # int64 indices per output row
        if self.red.kind in ("lse", "ssmw"):  # F of dim 1, or of dim D reduced coordinate by coordinate
            self.dim_g = self.out_dim if formula2 else 0
            self.dim_f = self.out_dim if not formula2 else 1 if self.out_dim == 1 else self._formula_dim()
        else:
            self.dim_f = (self.out_dim or self.out_idx_dim) // self.k
            self.dim_g = 0
        self.own_cat = 0 if self.axis == 1 else 1  # the category indexed like the output rows
        # What a PartialState records of its routine: states merge only with states of the same reduction.
        self.state_key = (formula, tuple(self.aliases), reduction_op, self.axis, opt_arg or 0, formula2 or "",
                          dtype_acc, sum_scheme)
        self._name_arguments()
        self.what = f"Genred('{formula}', {reduction_op}, axis={self.axis})"

    def _formula_dim(self) -> int:
        """dim F alone (formula2 given: out_dim is dim F2), from a Sum of F (parsed, not compiled)."""
        return _kmr.Genred(self.formula, self.aliases, "Sum", self.axis, 0, "", "auto", "auto").out_dim

    def spec(self) -> dict:
        """The constructor arguments that rebuild this reduction (what pickling ships)."""
        return dict(formula=self.formula, aliases=list(self.aliases), reduction_op=self.reduction_op,
                    axis=self.axis, opt_arg=self.opt_arg, formula2=self.formula2, dtype_acc=self.dtype_acc,
                    sum_scheme=self.sum_scheme)

    def __reduce__(self):
        # The libkmr kernel handle cannot travel; its spec can, and the receiving process finds the same
        # kernel again (precompiled registry, or the JIT's disk cache: same key, no compile).
        return (_rebuild_core, (tuple(sorted(self.spec().items())),))

    def _name_arguments(self):
        """labels[p]: how errors name argument p; names[p]: how a formula refers to it (Grad's V)."""
        declared = {}
        for k, text in enumerate(self.aliases):
            a = parse_alias(text)
            if a is not None:
                declared[k if a.pos is None else a.pos] = (a, text.strip())
        self.labels, self.names = [], []
        for p, (cat, dim) in enumerate(self.args):
            got = declared.get(p)
            if got is not None and got[0].cat == cat and got[0].dim == dim:
                self.names.append(got[0].name)
                self.labels.append(f"argument {p} ('{got[1]}')")
            else:  # a variable written in the formula itself, like Vi(3,2)
                self.names.append(f"{CATS[cat]}({p},{dim})")
                self.labels.append(f"argument {p} ({CATS[cat]}({p},{dim}))")

    def fresh_names(self, *tags):
        """Alias names that clash with nothing in the formula or the aliases."""
        taken = set(_IDENT.findall(self.formula)) | set(_IDENT.findall(self.formula2 or ""))
        taken |= {a.name for a in map(parse_alias, self.aliases) if a is not None}
        out = []
        for tag in tags:
            name, n = f"_kmr{tag}", 0
            while name in taken:
                n += 1
                name = f"_kmr{tag}{n}"
            taken.add(name)
            out.append(name)
        return out

    # -----------------------------------------------------------------------------------------------------
    def check_count(self, nargs):
        if nargs != self.nargs:
            want = ", ".join(f"'{a}'" for a in self.aliases) or "none"
            raise TypeError(f"pykmr: {self.what} takes {self.nargs} arguments (aliases: {want}), got {nargs}")

    def check_shapes(self, shapes) -> tuple[int, int]:
        """(nx, ny) of a call (see plan_call)."""
        plan = self.plan_call(shapes)
        return plan.nx, plan.ny

    def plan_call(self, shapes) -> CallPlan:
        """Checks each argument's shape against its alias and broadcasts the batch dims (see CallPlan).

        shapes: one tuple per argument. i/j-variables are [B1, ..., Bk, n, dim]; a parameter holds dim
        values per batch ([B1, ..., Bk, dim]; without batch dims also (dim,), (1, dim) or () for dim 1).
        Missing leading batch dims and batch dims of size 1 broadcast. With no i- (or j-) variable, that size
        is 1.
        """
        nbd = max([len(sh) - 2 for sh, (cat, _) in zip(shapes, self.args) if cat != 2 and len(sh) >= 2],
                  default=0)
        sizes = [None, None]  # (rows, argument) of the first i- and j-variable
        batches = []  # each argument's batch dims, left-padded with 1 to nbd
        for p, ((cat, dim), shape) in enumerate(zip(self.args, shapes)):
            label, shape = self.labels[p], tuple(shape)
            if cat == 2:
                numel = math.prod(shape)
                if nbd == 0:
                    ok_shape = len(shape) <= 1 or (len(shape) == 2 and shape[0] == 1)
                    if numel != dim or not ok_shape:
                        raise ValueError(f"pykmr: {label} is a parameter of dim {dim}: expected shape "
                                         f"({dim},), got shape {shape}")
                    batches.append(())
                    continue
                if len(shape) == 0 and dim == 1:
                    shape = (1,)
                if len(shape) == 0 or shape[-1] != dim or len(shape) - 1 > nbd:
                    raise ValueError(f"pykmr: {label} is a parameter of dim {dim} with {nbd} batch dims: "
                                     f"expected shape (B1, ..., B{nbd}, {dim}) (or ({dim},)), "
                                     f"got shape {shape}")
                batches.append((1,) * (nbd + 1 - len(shape)) + shape[:-1])
                continue
            n_name = "nx" if cat == 0 else "ny"
            if len(shape) < 2:
                raise ValueError(f"pykmr: {label} must be 2-D [{n_name}, {dim}], got shape {shape}"
                                 + (f" (reshape it to (-1, {dim}))" if len(shape) == 1 else "")
                                 + f"; with batch dims: [B1, ..., Bk, {n_name}, {dim}]")
            if shape[-1] != dim:
                raise ValueError(f"pykmr: {label} has {shape[-1]} columns but its alias declares dim {dim} "
                                 f"(shape {shape})")
            batches.append((1,) * (nbd + 2 - len(shape)) + shape[:-2])
            first = sizes[cat]
            if first is None:
                sizes[cat] = (shape[-2], p)
            elif first[0] != shape[-2]:
                kind = "i-variables" if cat == 0 else "j-variables"
                raise ValueError(f"pykmr: {kind} must have the same number of rows: "
                                 f"{self.labels[first[1]]} has {first[0]}, {label} has {shape[-2]}")
        batch = []
        for d in range(nbd):
            sizes_d = {b[d] for b in batches if b} - {1}
            if len(sizes_d) > 1:
                got = ", ".join(f"{self.labels[p]}: {tuple(shapes[p])}" for p in range(len(shapes)))
                raise ValueError(f"pykmr: the batch dims of the arguments do not broadcast (dim {d} has "
                                 f"sizes {sorted(sizes_d)}; {got})")
            batch.append(sizes_d.pop() if sizes_d else 1)
        batch = tuple(batch)
        modes = []
        for b in batches:
            if not b or all(x == 1 for x in b):
                modes.append("shared")
            elif b == batch:
                modes.append("full")
            else:
                modes.append("expand")  # broadcast along some batch dims only: the front end copies it
        nx, ny = (1 if s is None else s[0] for s in sizes)
        return CallPlan(nx, ny, batch, modes)

    def check_dtypes(self, dtypes, half=None) -> str:
        """dtypes: a dtype name per argument (None for Python numbers). Returns the common one (None if
        all are numbers): 'float32', 'float64', or 'float16' / 'bfloat16' where `half` is "cpu".

        half: where the arguments go. "cpu" (a call on the CPU) accepts float16 and bfloat16: the front end
        computes them in float32 (compute_dtype) and casts the values back. "gpu" (CUDA arrays or
        backend="GPU") and None (partial states, dask) refuse them: no kernel takes half floats."""
        common, first = None, None
        for p, dt in enumerate(dtypes):
            if dt is None:
                continue
            if dt in HALF_DTYPES and half != "cpu":
                where = ("pykmr's GPU kernels compute in float32 or float64" if half == "gpu"
                         else "partial states are float32 or float64")
                raise TypeError(f"pykmr: {self.labels[p]} has dtype {dt}, which pykmr takes only in calls on "
                                f"the CPU (computed in float32): {where}; convert it first (.float())")
            if dt not in ("float32", "float64") + HALF_DTYPES:
                kind = "integer" if "int" in dt else "unsupported"
                raise TypeError(f"pykmr: {self.labels[p]} has {kind} dtype {dt}: pykmr computes in float32 "
                                "or float64 (float16 and bfloat16 on the CPU in float32), convert it first")
            if common is None:
                common, first = dt, p
            elif dt != common:
                raise TypeError(f"pykmr: mixed dtypes: {self.labels[first]} is {common} but {self.labels[p]} "
                                f"is {dt}; convert them to one dtype")
        return common

    def out_rows(self, nx, ny):
        return nx if self.axis == 1 else ny


def _rebuild_core(spec_items):
    """Unpickles a GenredCore (parsing a formula again takes about 0.1 ms; nothing compiles here)."""
    spec = dict(spec_items)
    spec["aliases"] = list(spec["aliases"])
    return GenredCore(**spec)


class PicklableRoutine:
    """Mixin: a routine built from a GenredCore pickles (pickle, cloudpickle) as the core's spec.

    A subclass keeps its core in `self._core` and takes the spec's names as constructor arguments (Genred);
    caches (gradient routines, companions) are rebuilt on first use in the receiving process. A routine with
    more state overrides `_pickle_args` to return (callable, args) that rebuild it.
    """

    def _pickle_args(self):
        return rebuild_routine, (type(self), tuple(sorted(self._core.spec().items())))

    def __reduce__(self):
        return self._pickle_args()


def rebuild_routine(cls, spec_items):
    """Rebuilds a routine of class `cls` from its spec (see PicklableRoutine)."""
    obj = cls.__new__(cls)
    obj.__init__(**{k: (list(v) if k == "aliases" else v) for k, v in spec_items})
    return obj


# float16 and bfloat16 arguments of a call on the CPU: the front ends convert them to float32 (torch:
# differentiably, so gradients come back in the input dtype), run the float32 kernel (float32 accumulation)
# and cast the values back to the input dtype; indices stay int64. GenredCore.check_dtypes says where.
HALF_DTYPES = ("float16", "bfloat16")


def compute_dtype(dtype: str | None) -> str | None:
    """The dtype the kernel runs in for arguments of `dtype`: float32 for float16/bfloat16, else itself."""
    return "float32" if dtype in HALF_DTYPES else dtype


def is_numbers(a) -> bool:
    """A Python number, or a non-empty list/tuple of them (parameters may be given so); bools are not."""

    def num(v):
        return isinstance(v, numbers.Real) and not isinstance(v, bool) and type(v).__name__ != "bool_"

    return num(a) or (isinstance(a, (list, tuple)) and len(a) > 0 and all(num(v) for v in a))


def batch_layout(core: GenredCore, plan: CallPlan, arrays, expand):
    """The arrays as the kernel reads them: parameters flat without batch dims; arguments broadcast along
    some batch dims only ("expand") copied out to the full batch dims by `expand(a, shape)` (a contiguous
    copy, the front end's own broadcast)."""
    out = []
    for a, (cat, dim), mode in zip(arrays, core.args, plan.modes):
        if not plan.batch:
            out.append(a.reshape(-1) if cat == 2 else a)
        elif mode == "expand":
            tail = (dim,) if cat == 2 else tuple(a.shape[-2:])
            pad = len(plan.batch) + len(tail) - len(a.shape)
            out.append(expand(a.reshape((1,) * pad + tuple(a.shape)), plan.batch + tail))
        else:
            out.append(a.reshape(1) if cat == 2 and len(a.shape) == 0 else a)
    return out


# ---------------------------------------------------------------------------------------------------------
# Calls
# ---------------------------------------------------------------------------------------------------------
def check_call_options(backend, device_id, ranges=None):
    if not isinstance(backend, str) or not re.fullmatch(r"auto|CPU|GPU(_[12]D)?(_host|_device)?", backend):
        raise ValueError(f"pykmr: backend must be 'auto', 'CPU' or 'GPU', got {backend!r}")
    if isinstance(device_id, bool) or not isinstance(device_id, int):
        raise TypeError(f"pykmr: device_id must be an integer (-1: default), got {device_id!r}")


def keops_options_to_dtype_acc(opts, dtype_acc):
    """KeOps's other constructor options: accepted for drop-in use; use_double_acc maps to dtype_acc."""
    known = {"dtype", "cuda_type", "enable_chunks", "rec_multVar_highdim", "use_double_acc", "use_fast_math",
             "optional_flags"}
    unknown = set(opts) - known
    if unknown:
        raise TypeError(f"pykmr: Genred() got unexpected keyword arguments {sorted(unknown)}")
    if opts.get("use_double_acc") and dtype_acc == "auto":
        return "float64"
    return dtype_acc


RANGES_NAMES = ("ranges_i", "slices_i", "redranges_j", "ranges_j", "slices_j", "redranges_i")


def check_ranges(ranges, plan: CallPlan, shape_of, dtype_of):
    """Checks the structure of KeOps's 6-tuple of ranges (libkmr checks the values: sorted, in bounds).

    shape_of / dtype_of: the front end's accessors (tuple of ints, dtype name). Raises TypeError (not a
    6-tuple, not integer arrays) or ValueError (shapes, with batch dims)."""
    if not isinstance(ranges, (tuple, list)) or len(ranges) != 6:
        raise TypeError("pykmr: ranges must be KeOps's 6-tuple (ranges_i, slices_i, redranges_j, ranges_j, "
                        f"slices_j, redranges_i), got {type(ranges).__name__}"
                        + (f" of length {len(ranges)}" if isinstance(ranges, (tuple, list)) else ""))
    if plan.batch:
        raise ValueError(f"pykmr: ranges (block-sparse reductions) are not supported with batch dimensions "
                         f"(batch shape {plan.batch}), as in KeOps; reshape the batches into the rows and "
                         "use block-diagonal ranges instead")
    for k, (name, r) in enumerate(zip(RANGES_NAMES, ranges)):
        try:
            dt, shape = dtype_of(r), tuple(shape_of(r))
        except AttributeError:
            raise TypeError(f"pykmr: ranges[{k}] ({name}) must be an integer array/tensor, got "
                            f"{type(r).__name__}") from None
        if dt not in ("int32", "int64"):
            raise TypeError(f"pykmr: ranges[{k}] ({name}) must be int32 or int64, got {dt}")
        want = 1 if name.startswith("slices") else 2
        if len(shape) != want or (want == 2 and shape[1] != 2):
            raise ValueError(f"pykmr: ranges[{k}] ({name}) must have shape "
                             + ("(n,)" if want == 1 else "(n, 2)") + f", got {shape}")
    for a, b in ((0, 1), (3, 4)):
        if tuple(shape_of(ranges[a]))[0] != tuple(shape_of(ranges[b]))[0]:
            raise ValueError(f"pykmr: {RANGES_NAMES[b]} must have one entry per block of {RANGES_NAMES[a]}: "
                             f"got {tuple(shape_of(ranges[b]))[0]} and {tuple(shape_of(ranges[a]))[0]}")


@dataclass(frozen=True)
class Device:
    """Where a kernel runs: "cpu"; "cuda" (device pointers of GPU `index`, queued on `stream`, an integer
    CUstream of its primary context, 0 for the default stream); "cuda_host" (host pointers, copied to GPU
    `index` and back by libkmr)."""

    type: str = "cpu"
    index: int = -1
    stream: int = 0


CPU = Device()


def launch(core: GenredCore, dtype: str, ptrs, nx: int, ny: int, out_ptr: int, device: Device = CPU,
           kernel=None, idx_ptr: int = 0, nbatch=1, strides=(), ranges=()):
    """Runs a kernel on contiguous row-major data (the one place where kernels start): values to out_ptr
    ([*batch, rows, out_dim]), int64 indices to idx_ptr ([*batch, rows, out_idx_dim]).

    nbatch, strides: batches, and per argument the values between two of them (0: shared); ranges: KeOps's
    six arrays as (pointer to contiguous host int64, rows) pairs, or () for a dense reduction."""
    k = kernel or core.kernel
    extra = {"nbatch": nbatch, "batch_strides": list(strides), "ranges": list(ranges)}
    if device.type == "cpu":
        k.run(dtype, list(ptrs), nx, ny, out_ptr, idx_ptr, **extra)
        return
    from pykmr import _cuda

    _cuda.prepare()
    if device.type == "cuda":
        k.run_cuda(dtype, list(ptrs), nx, ny, out_ptr, device.index, device.stream, idx_ptr, **extra)
    elif device.type == "cuda_host":
        _cuda.require_gpu()
        k.run_cuda_host(dtype, list(ptrs), nx, ny, out_ptr, max(device.index, 0), idx_ptr, **extra)
    else:
        raise ValueError(f"pykmr: unknown device type {device.type!r}")


def postprocess(vals, idx, core: GenredCore):
    """KeOps's output layout from libkmr's values [n, out_dim] and int64 indices [n, out_idx_dim].

    Arg* reductions return the indices (int64); Min_ArgMin-like reductions return (values, indices);
    KMin-like ones [n, K, D], squeezed to [n, K] when D == 1.
    """
    kind, n, d, k = core.red.kind, vals.shape[0], core.dim_f, core.k

    def kview(a):
        return a.reshape(n, k) if d == 1 else a.reshape(n, k, d)

    if kind == "index":
        return kview(idx) if core.red.uses_k else idx
    if kind == "both":
        return (kview(vals), kview(idx)) if core.red.uses_k else (vals, idx)
    if kind == "select" and core.red.uses_k:
        return kview(vals)
    return vals


def postprocess_batched(vals, idx, core: GenredCore, batch):
    """postprocess on values [*batch, n, out_dim] and indices [*batch, n, out_idx_dim]: each result gets the
    batch dims back in front."""
    if not batch:
        return postprocess(vals, idx, core)
    n = vals.shape[-2]
    rows = math.prod(batch) * n  # explicit: an empty values or index part (ArgMin, Sum) has no -1 to infer
    res = postprocess(vals.reshape(rows, vals.shape[-1]), idx.reshape(rows, idx.shape[-1]), core)

    def back(a):
        return a.reshape(tuple(batch) + (n,) + tuple(a.shape[1:]))

    return tuple(back(a) for a in res) if isinstance(res, tuple) else back(res)


def check_out_shapes(core, out, result, is_array):
    """out= must match the result: one array, or a pair for Min_ArgMin-like reductions."""
    results = result if isinstance(result, tuple) else (result,)
    outs = out if isinstance(out, tuple) else (out,)
    if isinstance(result, tuple) != isinstance(out, tuple) or len(outs) != len(results):
        raise TypeError(f"pykmr: out= for {core.reduction_op} must be "
                        + ("a pair (values, indices)" if isinstance(result, tuple) else "one array"))
    for o, r in zip(outs, results):
        if not is_array(o):
            raise TypeError(f"pykmr: out= must hold arrays of the front end's type, got {type(o).__name__}")
        if tuple(o.shape) != tuple(r.shape) or str(o.dtype) != str(r.dtype):
            raise ValueError(f"pykmr: out= has shape {tuple(o.shape)} and dtype {o.dtype}, expected shape "
                             f"{tuple(r.shape)} and dtype {r.dtype}")
    return outs, results


# ---------------------------------------------------------------------------------------------------------
# Partial states: the reductions' unfinalized accumulators, merged by the reductions' own merge (libkmr)
# ---------------------------------------------------------------------------------------------------------
@dataclass
class PartialState:
    """The unfinalized result of one Genred over a slice of its reduced axis (``routine.partial``).

    Merge states of slices with ``routine.merge`` (any grouping and order), then ``routine.finalize`` gives
    what ``routine(*args)`` gives on the whole axis. Picklable (plain arrays), so states can travel
    between processes (pykmr.dask).

    Attributes:
        routine: what identifies the reduction (formula, aliases, reduction_op, axis, opt_arg, formula2,
            dtype_acc, sum_scheme); states merge only with states of the same one.
        dtype: the data dtype, "float32" or "float64" (the dtype of the finalized values).
        acc: [rows, acc_dim] accumulators, of the accumulation dtype (dtype_acc; "auto": the data
            dtype): a numpy array (pykmr.numpy) or a CPU torch tensor (pykmr.torch). Per reduction:
            Sum: the partial sums [D] (sum_scheme="kahan": sums, then compensations); LogSumExp: the
            running max m and sum_j exp(f_j - m) (F of dim D > 1: one such pair per coordinate); with
            weights: m, then the shifted weighted sums [D] (F of dim D: a pair (m, weighted sum) per
            coordinate); SumSoftMaxWeight: m, the shifted sum, the shifted weighted sums [D] (F of dim D:
            a triple (m, sum, weighted sum) per coordinate); Min/Max and the Arg
            reductions: the best values [D]; the KMin family: the K best values per coordinate, sorted,
            slot r * D + d.
        idx: [rows, idx_dim] int64 GLOBAL indices along the reduced axis of the values of acc (Arg
            reductions, Min_ArgMin..., the KMin family; idx_dim = 0 otherwise); 2**63 - 1 marks a slot
            that holds no element yet.
    """

    routine: tuple
    dtype: str
    acc: object
    idx: object

    @property
    def rows(self) -> int:
        return int(self.acc.shape[0])


@dataclass(frozen=True)
class ArrayOps:
    """What partial states need of a front end's arrays: empty(shape, dtype name), the data pointer of a
    contiguous array, a contiguous version, the dtype name, and the type test."""

    empty: object
    ptr: object
    contiguous: object
    dtype_name: object
    is_array: object
    kind: str  # "numpy arrays" / "torch tensors", for messages


def check_offset(offset):
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"pykmr: offset must be an integer >= 0 (the global index of the first reduced row "
                         f"passed), got {offset!r}")
    return int(offset)


def run_partial(core: GenredCore, ops: ArrayOps, dtype: str, ptrs, nx: int, ny: int, offset: int):
    """The partial state of one call (host memory), indices shifted by offset."""
    acc_dim, idx_dim, acc_dtype = core.kernel.state_layout(dtype)
    rows = core.out_rows(nx, ny)
    acc, idx = ops.empty((rows, acc_dim), acc_dtype), ops.empty((rows, idx_dim), "int64")
    core.kernel.run_state(dtype, list(ptrs), nx, ny, ops.ptr(acc), ops.ptr(idx), check_offset(offset))
    return PartialState(core.state_key, dtype, acc, idx)


def _checked_states(core: GenredCore, ops: ArrayOps, states, what):
    """The states as contiguous arrays, checked against the routine and each other (a foreign or damaged
    state gives an error, never a crash)."""
    first = states[0]
    if first.dtype not in ("float32", "float64"):
        raise ValueError(f"pykmr: {what}: the state's dtype {first.dtype!r} is not float32 or float64")
    acc_dim, idx_dim, acc_dtype = core.kernel.state_layout(first.dtype)
    out = []
    for n, st in enumerate(states):
        if not isinstance(st, PartialState):
            raise TypeError(f"pykmr: {what}: state {n} is a {type(st).__name__}, not a pykmr PartialState")
        if st.routine != core.state_key:
            raise ValueError(f"pykmr: {what}: state {n} comes from another routine ({st.routine[2]} of "
                             f"'{st.routine[0]}', axis={st.routine[3]}), not {core.what}")
        if st.dtype != first.dtype:
            raise ValueError(f"pykmr: {what}: state {n} is {st.dtype} but state 0 is {first.dtype}")
        for name, a, dim, dt in (("acc", st.acc, acc_dim, acc_dtype), ("idx", st.idx, idx_dim, "int64")):
            if not ops.is_array(a):
                raise TypeError(f"pykmr: {what}: state {n}'s {name} is a {type(a).__name__}; this front "
                                f"end's states hold {ops.kind}")
            if tuple(a.shape) != (first.rows, dim) or ops.dtype_name(a) != dt:
                raise ValueError(f"pykmr: {what}: state {n}'s {name} has shape {tuple(a.shape)} and dtype "
                                 f"{ops.dtype_name(a)}, expected ({first.rows}, {dim}) and {dt}")
        out.append((ops.contiguous(st.acc), ops.contiguous(st.idx)))
    return first, out


def merge_partial(core: GenredCore, ops: ArrayOps, states, finalize: bool):
    """Merges states with the reduction's merge: a PartialState, or (values, indices) when finalize."""
    what = "finalize" if finalize else "merge"
    if isinstance(states, PartialState) or not isinstance(states, (list, tuple)):
        raise TypeError(f"pykmr: merge takes a list of PartialState, got {type(states).__name__}")
    if not states:
        raise ValueError("pykmr: merge needs at least one PartialState")
    first, arrays = _checked_states(core, ops, list(states), what)
    rows = first.rows
    if finalize:
        out = ops.empty((rows, core.out_dim), first.dtype)
        out_idx = ops.empty((rows, core.out_idx_dim), "int64")
    else:
        out = ops.empty(tuple(first.acc.shape), ops.dtype_name(first.acc))
        out_idx = ops.empty(tuple(first.idx.shape), "int64")
    accs, idxs = [ops.ptr(a) for a, _ in arrays], [ops.ptr(i) for _, i in arrays]
    core.kernel.merge_states(first.dtype, rows, accs, idxs, ops.ptr(out), ops.ptr(out_idx), finalize)
    return (out, out_idx) if finalize else PartialState(core.state_key, first.dtype, out, out_idx)


# ---------------------------------------------------------------------------------------------------------
# generic_sum & co (the seed's spelling): the output alias gives the axis and is checked against the formula
# ---------------------------------------------------------------------------------------------------------
def make_generic(genred_cls, reduction, formula, output, aliases, kwargs):
    for bad in ("axis", "reduction_op") + (("opt_arg",) if reduction == "ArgKMin" else ()):
        if bad in kwargs:
            raise TypeError(f"pykmr: generic_* take {bad} from the output alias, not as a keyword")
    axis, dim = parse_output(output)
    if reduction == "ArgKMin":
        kwargs = dict(kwargs, opt_arg=dim)
    routine = genred_cls(formula, list(aliases), reduction_op=reduction, axis=axis, **kwargs)
    core = routine._core
    expect = {"Sum": core.out_dim, "LogSumExp": core.out_dim, "ArgMin": core.dim_f}.get(reduction)
    if expect is not None and dim != expect:
        raise ValueError(f"pykmr: the output alias '{output}' declares dim {dim} but {reduction} of "
                         f"'{formula}' has dim {expect}")
    return routine


def make_generics(genred_cls):
    """generic_sum, generic_logsumexp, generic_argmin, generic_argkmin bound to a front end's Genred.

    The output alias ("A = Vi(2)", or the older "A = Vx(2)") gives the reduction axis; its dim is
    checked against the formula's (for ArgKMin it is K)."""

    def generic_sum(formula, output, *aliases, **kwargs):
        """Sum reduction with the output alias first (pykeops equivalent: ``generic_sum``).

        ``generic_sum("Exp(-G*SqDist(X,Y)) * B", "A = Vi(2)", "G = Pm(1)", "X = Vi(3)", "Y = Vj(3)",
        "B = Vj(2)")`` returns a Genred routine; ``"A = Vi(2)"`` reduces over j into ``[N, 2]``
        (``"A = Vj(2)"``: over i into ``[M, 2]``). Keyword arguments go to Genred (not ``axis`` or
        ``reduction_op``, taken from the output alias).

        Raises:
            ValueError: a malformed output alias, or one whose dim differs from the formula's.
            TypeError: ``axis``/``reduction_op`` given as keywords; see Genred for the rest.
        """
        return make_generic(genred_cls, "Sum", formula, output, aliases, kwargs)

    def generic_logsumexp(formula, output, *aliases, **kwargs):
        """LogSumExp reduction (pykeops equivalent: ``generic_logsumexp``).

        ``log sum_j exp(F)``, computed with a running maximum (no overflow); output alias
        ``"A = Vi(1)"`` gives ``[N, 1]``. A formula of dim D > 1 is reduced coordinate by coordinate
        (``"A = Vi(D)"``, ``[N, D]``; pykeops refuses it). Raises as :func:`generic_sum`.
        """
        return make_generic(genred_cls, "LogSumExp", formula, output, aliases, kwargs)

    def generic_argmin(formula, output, *aliases, **kwargs):
        """ArgMin reduction (pykeops equivalent: ``generic_argmin``): int64 indices ``[N, dim F]``.

        Raises as :func:`generic_sum`; indices carry no gradient.
        """
        return make_generic(genred_cls, "ArgMin", formula, output, aliases, kwargs)

    def generic_argkmin(formula, output, *aliases, **kwargs):
        """ArgKMin reduction (pykeops equivalent: ``generic_argkmin``): the K nearest in the formula's order.

        The output alias ``"A = Vi(K)"`` gives K; returns ``[N, K]`` int64 indices (sorted by value) for a
        scalar formula. Raises ValueError when K exceeds the number of j points; otherwise as
        :func:`generic_sum`.
        """
        return make_generic(genred_cls, "ArgKMin", formula, output, aliases, kwargs)

    return generic_sum, generic_logsumexp, generic_argmin, generic_argkmin
