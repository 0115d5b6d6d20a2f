"""pykmr on dask arrays: kernel reductions over chunked point clouds, on one machine or a cluster.

    from pykmr.dask import Genred
    conv = Genred("Exp(-G*SqDist(X,Y)) * B", ["G = Pm(1)", "X = Vi(3)", "Y = Vj(3)", "B = Vj(2)"],
                  reduction_op="Sum", axis=1)
    a = conv(np.array([2.0]), x, y, b)   # x: dask [N, 3], y: dask [M, 3], b: dask [M, 2] -> dask [N, 2]
    a.compute()                          # on the current scheduler (a dask.distributed Client if one is set)

How the work is cut (DESIGN decision 13): every pair (row chunk of the output's variables, row chunk of the
reduced variables) is one task that runs pykmr.numpy's kernel and returns the reduction's *partial state*
(Sum: the partial sums; LogSumExp: running max and shifted sum; Arg*/KMin: values with global int64
indices). The states of one output chunk are merged by dask's own tree reduction (`dask.array.reduction`)
with the reductions' libkmr `merge`, then finalised. Output chunks are independent; parameters are one dask
key each, shipped once per worker.
"""

from __future__ import annotations

import functools
import numbers

import dask.array as da
import numpy as np

from pykmr import numpy as _kmr_numpy
from pykmr.common import check_call_options, postprocess

__all__ = ["Genred"]


class Genred:
    """a_i = Red_j F(p, x_i, y_j) on dask arrays; the arguments and results of pykmr.numpy.Genred.

    Args:
        formula, aliases, reduction_op, axis, opt_arg, formula2, dtype_acc, sum_scheme: as
            pykmr.numpy.Genred (and pykeops.numpy.Genred; pykeops has no Dask front end).
        split_every: how many partial states one merge task combines (dask's tree reduction fan-in;
            None: dask's default, `dask.config` key "split_every").

    Called as routine(*args, backend="auto", device_id=-1) with the arguments in the aliases' order:
    i-variables dask arrays [N, dim] (or numpy arrays, taken as one chunk), j-variables [M, dim],
    parameters numpy arrays / numbers / dask arrays of dim values. All float32 or all float64. Returns a
    dask array of the shape and dtype pykmr.numpy would return (a pair for Min_ArgMin-like reductions), in
    row chunks of the output's variables (i for axis=1, j for axis=0). Nothing runs until .compute().

    Chunking advice:
        * Only the row axis may be chunked; the columns (dim) of each variable are put in one chunk.
        * Chunks of the output's variables are independent tasks; chunks of the reduced variables give
          partial states merged in a tree, so both axes spread work. Aim for chunks of 1e5-1e6 rows on a CPU
          worker (1e6-1e7 on a GPU): each task should compute for at least ~0.1 s (n_own * n_red * cost of F
          per pair), else Dask's per-task overhead (about 1 ms) and the merges dominate.
        * Memory per task: the two input chunks (rows * dim * itemsize each) plus the partial state of the
          output chunk: rows_own * state width (Sum: dim F; LogSumExp: 2, 1 + dim weights, 2 * dim F for a
          vector F; SumSoftMaxWeight: 2 + dim values, 3 * dim F for a vector F; Min/ArgMin/Min_ArgMin: dim F
          values + dim F int64; KMin/ArgKMin: 2 * K * dim F).
        * Use about 2-4 tasks per worker thread, so that a slow or lost worker costs little.
        * With threads_per_worker > 1, set KMR_NUM_THREADS=1 on the workers (each task would otherwise use
          every core); with one thread per worker, each task uses all the cores libkmr sees.

    Raises:
        TypeError: an argument that is not an array/number, mixed dtypes, out= or ranges= given.
        ValueError: shapes that disagree with the aliases, unknown chunk sizes (NaN), as pykmr.numpy.
    """

    def __init__(
        self,
        formula,
        aliases,
        reduction_op="Sum",
        axis=0,
        opt_arg=None,
        formula2=None,
        dtype_acc="auto",
        sum_scheme="auto",
        split_every=None,
        **keops_options,
    ):
        self._routine = _kmr_numpy.Genred(
            formula, aliases, reduction_op, axis, opt_arg, formula2, dtype_acc, sum_scheme, **keops_options
        )
        self._core = self._routine._core
        if split_every is not None and (
            isinstance(split_every, bool) or not isinstance(split_every, int) or split_every < 2
        ):
            raise ValueError(f"pykmr: split_every must be an integer >= 2 (or None), got {split_every!r}")
        self.split_every = split_every

    def __repr__(self):
        return f"pykmr.dask.{self._core.what}"

    def __reduce__(self):
        return (_rebuild, (self._routine, self.split_every))

    def __call__(self, *args, backend="auto", device_id=-1, ranges=None, out=None):
        core = self._core
        check_call_options(backend, device_id, ranges)
        if out is not None:
            raise TypeError(
                "pykmr: out= is not supported on dask arrays (dask arrays are immutable); use the "
                "returned array"
            )
        if backend not in ("auto", "CPU"):
            raise NotImplementedError(
                f"pykmr: pykmr.dask runs on the workers' CPUs (backend='auto' or 'CPU'), got "
                f"backend={backend!r}: libkmr computes partial states in host memory"
            )
        arrays = _convert(core, args)
        nx, ny = core.check_shapes([a.shape for a in arrays])
        dtype = core.check_dtypes([str(a.dtype) for a in arrays]) or "float64"
        own, red = core.own_cat, 1 - core.own_cat
        own_chunks = _common_row_chunks(core, arrays, own, nx if own == 0 else ny)
        red_chunks = _common_row_chunks(core, arrays, red, ny if own == 0 else nx)
        if core.red.uses_k:  # a K-list needs K reduced rows in every chunk
            if sum(red_chunks) < core.k:
                raise ValueError(
                    f"pykmr: K = {core.k} is larger than the number of reduced points ({sum(red_chunks)}) "
                    f"in {core.what}"
                )
            red_chunks = _at_least(red_chunks, core.k)

        # One task per (own chunk, reduced chunk): a [n_own_chunks, n_red_chunks] array of partial states.
        # Indices 0 and 1 are the two chunk axes; 100 + p the columns of argument p (one chunk each). The
        # arrays were rechunked above, so dask need not align them (offsets has one element per chunk).
        offsets = da.from_array(np.cumsum((0,) + red_chunks[:-1], dtype=np.int64), chunks=1)
        bw_args = [offsets, (1,)]
        for p, (a, (cat, _)) in enumerate(zip(arrays, core.args)):
            if cat == 2:
                bw_args += [a.rechunk(-1), (100 + p,)]
            else:
                axis = 0 if cat == own else 1
                a = a.rechunk({0: own_chunks if axis == 0 else red_chunks, 1: -1})
                bw_args += [a, (axis, 100 + p)]
        new_axes = {}
        if not any(cat == own for cat, _ in core.args):
            new_axes[0] = 1
        if not any(cat == red for cat, _ in core.args):
            new_axes[1] = 1
        states = da.blockwise(
            _partial_block,
            (0, 1),
            *bw_args,
            routine=self._routine,
            new_axes=new_axes,
            adjust_chunks={0: 1, 1: 1},
            concatenate=True,
            align_arrays=False,
            dtype=object,
            meta=np.empty((0, 0), dtype=object),
            name=f"pykmr-partial-{_token(self, arrays)}",
        )
        merge = functools.partial(_merge_blocks, routine=self._routine)
        merged = da.reduction(
            states,
            _identity,
            merge,
            combine=merge,
            axis=1,
            keepdims=True,
            concatenate=False,
            split_every=self.split_every,
            dtype=object,
            meta=np.empty((0, 0), dtype=object),
            name="pykmr-merge",
        )
        # The outputs' trailing shapes and dtypes: postprocess of an empty raw output (runs nothing).
        specimen = postprocess(
            np.empty((0, core.out_dim), dtype=dtype), np.empty((0, core.out_idx_dim), np.int64), core
        )
        parts = specimen if isinstance(specimen, tuple) else (specimen,)
        outs = []
        for k, s in enumerate(parts):
            trailing = s.shape[1:]
            outs.append(
                merged.map_blocks(
                    _finalize_block,
                    self._routine,
                    k if isinstance(specimen, tuple) else None,
                    chunks=(own_chunks,) + tuple((d,) for d in trailing),
                    dtype=s.dtype,
                    new_axis=list(range(2, 1 + len(trailing))) if len(trailing) > 1 else None,
                    drop_axis=[1] if not trailing else None,
                    meta=np.empty((0,) * (1 + len(trailing)), s.dtype),
                    token="pykmr-finalize",
                )
            )
        return tuple(outs) if isinstance(specimen, tuple) else outs[0]


def _rebuild(routine, split_every):
    obj = Genred.__new__(Genred)
    obj._routine, obj._core, obj.split_every = routine, routine._core, split_every
    return obj


def _token(routine, arrays):
    from dask.base import tokenize

    return tokenize(routine._core.spec(), *arrays)


def _convert(core, args):
    """Dask arrays (numpy arrays wrapped as one chunk; numbers for parameters), with the errors of
    pykmr.numpy for the rest."""
    core.check_count(len(args))
    out = []
    for p, a in enumerate(args):
        if isinstance(a, da.Array):
            if any(np.isnan(c) for cs in a.chunks for c in cs):
                raise ValueError(
                    f"pykmr: {core.labels[p]} has unknown chunk sizes (NaN); call "
                    ".compute_chunk_sizes() on it first"
                )
            out.append(a)
        elif isinstance(a, np.ndarray):
            out.append(da.from_array(a, chunks=-1))
        elif core.args[p][0] == 2 and _is_numbers(a):
            out.append(None)  # its dtype follows the others'
        else:
            kind = "a dask or numpy array or a number" if core.args[p][0] == 2 else "a dask or numpy array"
            raise TypeError(f"pykmr: {core.labels[p]} must be {kind}, got {type(a).__name__}")
    dtype = core.check_dtypes([None if a is None else str(a.dtype) for a in out]) or "float64"
    return [
        da.from_array(np.array(a, dtype=dtype).reshape(-1), chunks=-1) if o is None else o
        for a, o in zip(args, out)
    ]


def _is_numbers(a):
    def num(v):
        return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))

    return num(a) or (isinstance(a, (list, tuple)) and len(a) > 0 and all(num(v) for v in a))


def _common_row_chunks(core, arrays, cat, n):
    """The row chunks of the first variable of category `cat` (every other one of that category is
    rechunked to them); ((n,),) when the formula has none (then n == 1)."""
    for (c, _), a in zip(core.args, arrays):
        if c == cat:
            return tuple(int(s) for s in a.chunks[0])
    return (n,)


def _at_least(chunks, k):
    """Chunks of at least k rows each (each one too small is merged into the chunk that follows; the last
    one into the one before)."""
    out, pending = [], 0
    for c in chunks:
        pending += c
        if pending >= k:
            out.append(pending)
            pending = 0
    if pending:
        out[-1] += pending
    return tuple(out)


# ---------------------------------------------------------------------------------------------------------
# Task functions (module-level: they pickle by reference)
# ---------------------------------------------------------------------------------------------------------
def _partial_block(offset, *blocks, routine):
    """One (own chunk, reduced chunk) pair: the partial state, in a [1, 1] object array (dask's unit)."""
    out = np.empty((1, 1), dtype=object)
    out[0, 0] = routine.partial(*blocks, offset=int(offset[0]))
    return out


def _identity(x, axis=None, keepdims=None):
    return x


def _merge_blocks(blocks, axis=None, keepdims=None, *, routine):
    """A node of dask's tree: merges the partial states of one output chunk (libkmr's merge)."""
    blocks = blocks if isinstance(blocks, list) else [blocks]
    states = [b[0, 0] for b in blocks]
    out = np.empty((1, 1), dtype=object)
    out[0, 0] = states[0] if len(states) == 1 else routine.merge(states)
    return out


def _finalize_block(block, routine, part):
    result = routine.finalize(block[0, 0])
    return result if part is None else result[part]
