"""pykmr.numpy.Genred: checks and converts numpy arguments, runs the kernel, shapes the output as pykeops."""

from __future__ import annotations

import numbers

import numpy as np

from pykmr.common import (
    CPU,
    Device,
    GenredCore,
    check_call_options,
    check_out_shapes,
    keops_options_to_dtype_acc,
    launch,
    postprocess,
)


class Genred:
    """a_i = Red_j F(p, x_i, y_j) on numpy arrays (see pykmr.torch.Genred for the arguments)."""

    def __init__(self, formula, aliases, reduction_op="Sum", axis=0, opt_arg=None, formula2=None,
                 dtype_acc="auto", sum_scheme="auto", **keops_options):
        dtype_acc = keops_options_to_dtype_acc(keops_options, dtype_acc)
        self._core = GenredCore(formula, aliases, reduction_op, axis, opt_arg, formula2, dtype_acc,
                                sum_scheme)

    def __call__(self, *args, backend="auto", device_id=-1, ranges=None, out=None):
        core = self._core
        check_call_options(backend, device_id, ranges)
        arrays = _convert(core, args)
        nx, ny = core.check_shapes([a.shape for a in arrays])
        # numpy arrays live on the host: backend="GPU" copies them to the GPU and back.
        device = Device("cuda_host", device_id) if backend.startswith("GPU") else CPU
        dtype = str(arrays[0].dtype) if arrays else "float32"
        raw = np.empty((core.out_rows(nx, ny), core.out_dim), dtype=dtype)
        launch(core, dtype, [a.ctypes.data for a in arrays], nx, ny, raw.ctypes.data, device)
        result = postprocess(raw, core, lambda a: a.astype(np.int64))
        if out is None:
            return result
        outs, results = check_out_shapes(core, out, result, lambda o: isinstance(o, np.ndarray))
        for o, r in zip(outs, results):
            o[...] = r
        return out


def _convert(core, args):
    """numpy arrays (contiguous, one float dtype); Python numbers accepted for parameters."""
    core.check_count(len(args))
    dtypes = []
    for p, a in enumerate(args):
        if isinstance(a, np.ndarray):
            dtypes.append(str(a.dtype))
        elif core.args[p][0] == 2 and _is_numbers(a):
            dtypes.append(None)
        elif type(a).__module__.startswith("torch"):
            raise TypeError(f"pykmr: {core.labels[p]} is a torch tensor: pykmr.numpy takes numpy arrays "
                            "(use pykmr.torch for torch tensors)")
        else:
            kind = "a numpy array or a number" if core.args[p][0] == 2 else "a numpy array"
            raise TypeError(f"pykmr: {core.labels[p]} must be {kind}, got {type(a).__name__}")
    dtype = core.check_dtypes(dtypes) or "float64"
    return [np.ascontiguousarray(a) if isinstance(a, np.ndarray) else np.array(a, dtype=dtype).reshape(-1)
            for a in args]


def _is_numbers(a):
    def num(v):
        return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))

    return num(a) or (isinstance(a, (list, tuple)) and len(a) > 0 and all(num(v) for v in a))
