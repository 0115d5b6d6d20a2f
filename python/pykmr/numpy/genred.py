"""pykmr.numpy.Genred: checks and converts numpy arguments, runs the kernel, shapes the output as pykeops."""

from __future__ import annotations

import numpy as np

from pykmr.common import (
    CPU,
    ArrayOps,
    Device,
    GenredCore,
    PartialState,
    PicklableRoutine,
    batch_layout,
    check_call_options,
    check_out_shapes,
    check_ranges,
    compute_dtype,
    is_numbers,
    keops_options_to_dtype_acc,
    launch,
    merge_partial,
    postprocess,
    postprocess_batched,
    run_partial,
)


class Genred(PicklableRoutine):
    """a_i = Red_j F(p, x_i, y_j) on numpy arrays, without autograd.

    pykeops equivalent: ``pykeops.numpy.Genred``. The arguments, the call
    ``routine(*args, backend="auto", device_id=-1, ranges=None, out=None)``, the output shapes and the
    exceptions are those of :class:`pykmr.torch.Genred`, with numpy arrays (float32 or float64; float16
    on the CPU: computed and accumulated in float32, returned in float16) in place of tensors;
    ``backend="GPU"`` copies the arrays to the GPU and back. Arg* reductions return int64 arrays.
    Pickles like :class:`pykmr.torch.Genred`; :class:`pykmr.dask.Genred` runs it on dask arrays.
    """

    def __init__(self, formula, aliases, reduction_op="Sum", axis=0, opt_arg=None, formula2=None,
                 dtype_acc="auto", sum_scheme="auto", **keops_options):
        dtype_acc = keops_options_to_dtype_acc(keops_options, dtype_acc)
        self._core = GenredCore(formula, aliases, reduction_op, axis, opt_arg, formula2, dtype_acc,
                                sum_scheme)

    def __call__(self, *args, backend="auto", device_id=-1, ranges=None, out=None):
        """Runs the reduction (pykeops.numpy.Genred.__call__); the arguments, batch dims, ranges (int32/int64
        arrays), output and errors are those of pykmr.torch.Genred.__call__, on numpy arrays."""
        core = self._core
        check_call_options(backend, device_id, ranges)
        arrays, in_dtype = _convert(core, args, backend)
        plan = core.plan_call([a.shape for a in arrays])
        arrays = batch_layout(core, plan, arrays, _expand)
        ranges_arg = ()
        if ranges is not None:
            check_ranges(ranges, plan, lambda r: r.shape, lambda r: str(r.dtype))
            host = [np.ascontiguousarray(r, dtype=np.int64) for r in ranges]
            ranges_arg = [(r.ctypes.data, r.shape[0]) for r in host]
        # numpy arrays live on the host: backend="GPU" copies them to the GPU and back.
        device = Device("cuda_host", device_id) if backend.startswith("GPU") else CPU
        dtype = str(arrays[0].dtype) if arrays else "float32"
        rows = core.out_rows(plan.nx, plan.ny)
        vals = np.empty(plan.batch + (rows, core.out_dim), dtype=dtype)
        idx = np.empty(plan.batch + (rows, core.out_idx_dim), dtype=np.int64)
        if plan.nbatch > 0:
            strides = [a.size // plan.nbatch if m != "shared" else 0 for a, m in zip(arrays, plan.modes)]
            launch(core, dtype, [a.ctypes.data for a in arrays], plan.nx, plan.ny, vals.ctypes.data, device,
                   idx_ptr=idx.ctypes.data, nbatch=plan.nbatch, strides=strides if plan.batch else (),
                   ranges=ranges_arg)
        result = postprocess_batched(vals, idx, core, plan.batch)
        if compute_dtype(in_dtype) != in_dtype:  # float16 computed in float32: values cast back
            result = tuple(_values_to(r, in_dtype) for r in result) if isinstance(result, tuple) else (
                _values_to(result, in_dtype))
        if out is None:
            return result
        outs, results = check_out_shapes(core, out, result, lambda o: isinstance(o, np.ndarray))
        for o, r in zip(outs, results):
            o[...] = r
        return out


    # ----------------------------------------------------------------------------------------------------
    def partial(self, *args, offset=0) -> PartialState:
        """The unfinalized state of this reduction over the reduced rows passed (numpy arrays, as for a
        call), with indices made global: `offset` is the global index of the first reduced row passed
        (j for axis=1, i for axis=0). Merge the states of the slices of an axis with merge(), then
        finalize() gives ``routine(*args)`` on the whole axis. See pykmr.common.PartialState for the layout.

        Raises TypeError/ValueError as a call does (TypeError for float16: states are float32 or float64), and
        ValueError for a negative or non-integer offset. No pykeops equivalent.
        """
        core = self._core
        arrays, _ = _convert(core, args)
        nx, ny = core.check_shapes([a.shape for a in arrays])
        dtype = str(arrays[0].dtype) if arrays else "float32"
        return run_partial(core, _OPS, dtype, [a.ctypes.data for a in arrays], nx, ny, offset)

    def merge(self, states) -> PartialState:
        """Merges a list of PartialState of this routine (same rows) with the reduction's own merge. The
        result does not depend on the order or grouping of the merges beyond float round-off (Arg*: ties
        go to the smaller global index). Raises TypeError/ValueError for states of another routine,
        dtype or number of rows, or an empty list."""
        return merge_partial(self._core, _OPS, states, finalize=False)

    def finalize(self, state: PartialState):
        """The result of routine(*args) from the merged state of all the reduced rows: same shapes and
        dtypes as a direct call (int64 indices for Arg*)."""
        if not isinstance(state, PartialState):
            raise TypeError(f"pykmr: finalize takes a PartialState, got {type(state).__name__}")
        vals, idx = merge_partial(self._core, _OPS, [state], finalize=True)
        return postprocess(vals, idx, self._core)


_OPS = ArrayOps(empty=lambda shape, dt: np.empty(shape, dtype=dt), ptr=lambda a: a.ctypes.data,
                contiguous=np.ascontiguousarray, dtype_name=lambda a: str(a.dtype),
                is_array=lambda a: isinstance(a, np.ndarray), kind="numpy arrays")


def _convert(core, args, backend=None):
    """numpy arrays (contiguous, one float dtype) and the arguments' dtype name (None: numbers only); Python
    numbers accepted for parameters. A call (`backend` given) on the CPU takes float16 and converts it to
    float32; partial states (no backend) and backend="GPU" refuse it (GenredCore.check_dtypes)."""
    core.check_count(len(args))
    dtypes = []
    for p, a in enumerate(args):
        if isinstance(a, np.ndarray):
            dtypes.append(str(a.dtype))
        elif core.args[p][0] == 2 and is_numbers(a):
            dtypes.append(None)
        elif type(a).__module__.startswith("torch"):
            raise TypeError(f"pykmr: {core.labels[p]} is a torch tensor: pykmr.numpy takes numpy arrays "
                            "(use pykmr.torch for torch tensors)")
        else:
            kind = "a numpy array or a number" if core.args[p][0] == 2 else "a numpy array"
            raise TypeError(f"pykmr: {core.labels[p]} must be {kind}, got {type(a).__name__}")
    half = None if backend is None else "gpu" if backend.startswith("GPU") else "cpu"
    name = core.check_dtypes(dtypes, half)
    dtype = compute_dtype(name) or "float64"
    return [np.ascontiguousarray(a, dtype=dtype) if isinstance(a, np.ndarray)
            else np.array(a, dtype=dtype).reshape(-1) for a in args], name


def _values_to(a, dtype):
    """A result array in `dtype`, int64 indices left as they are."""
    return a.astype(dtype) if a.dtype.kind == "f" else a


def _expand(a, shape):
    """A broadcast view copied out contiguous (see pykmr.common.batch_layout)."""
    return np.ascontiguousarray(np.broadcast_to(a, shape))
