"""pykmr.torch.Genred: checks and converts the arguments, runs the kernel, shapes the output as pykeops."""

from __future__ import annotations

import torch
from torch.autograd import forward_ad as _forward_ad

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

# private torch API (torch >= 2.0 has it): whether a torch.func transform is running; absent: none can be
_FUNCTORCH_ACTIVE = getattr(torch._C, "_are_functorch_transforms_active", lambda: False)


class Genred(PicklableRoutine):
    """A generic reduction a_i = Red_j F(p, x_i, y_j), compiled once and reusable with any sizes.

    pykeops equivalent: ``pykeops.torch.Genred`` (same arguments and call).

    Args:
        formula (str): the formula, in KeOps's language (``"Exp(-G*SqDist(X,Y)) * B"``).
        aliases (list[str]): the variables, ``"X = Vi(3)"`` (indexed by i), ``"Y = Vj(3)"`` (by j),
            ``"G = Pm(1)"`` (parameter); the older ``Vx``/``Vy`` spelling and explicit positions
            (``"X = Vi(0, 3)"``) are accepted.
        reduction_op (str): ``Sum``, ``Max``, ``Min``, ``ArgMax``, ``ArgMin``, ``Max_ArgMax``,
            ``Min_ArgMin``, ``KMin``, ``ArgKMin``, ``KMin_ArgKMin`` (K = ``opt_arg``), ``LogSumExp``
            (``formula2``: optional weights), ``SumSoftMaxWeight`` (``formula2``: the values).
        axis (int): 1 reduces over j (one output row per i), 0 over i.
        opt_arg (int | None): K of the KMin family.
        formula2 (str | None): second formula of LogSumExp (weights) and SumSoftMaxWeight (values).
        dtype_acc (str): accumulation type, ``"auto"``, ``"float32"`` or ``"float64"``.
        sum_scheme (str): ``"auto"``, ``"block"``, ``"direct"`` or ``"kahan"`` (Sum only).

    Calling ``routine(*args, backend="auto", device_id=-1, ranges=None, out=None)``:

    * ``args``: in the aliases' order; i-variables ``[N, d]``, j-variables ``[M, d]`` tensors, parameters
      ``[d]`` tensors (or Python numbers for d = 1), each with optional leading batch dims (see
      ``__call__``; ``ranges``: KeOps's block-sparse 6-tuple); all float32 or all float64, all on one
      device (CPU or one CUDA GPU). On the CPU, all float16 or all bfloat16 also work: computed and
      accumulated in float32, values returned (and gradients) in the input dtype (the GPU kernels have
      no half floats: TypeError). Differentiable w.r.t. every argument, to any order.
    * ``backend``: ``"auto"`` (the tensors' device), ``"CPU"`` or ``"GPU"`` (CPU tensors are copied to the
      GPU and back).
    * Returns a ``[N, dim]`` tensor (``axis=1``; ``[M, dim]`` for ``axis=0``) of the arguments' dtype;
      Arg* reductions return int64 indices, ``Min_ArgMin``-type ones a (values, indices) pair.

    Raises:
        ValueError: a malformed formula or alias (the message shows the position), dims that do not match
            the ops or the aliases, an unknown reduction or axis, K larger than the reduced size, arguments
            on different devices.
        TypeError: arguments that are not tensors, mixed or integer dtypes, float16/bfloat16 on a GPU, a
            wrong argument count.
        RuntimeError: a formula that must be compiled when no C++ compiler (or, on GPU, no NVRTC) is
            available, an unusable cache folder, no usable GPU for ``backend="GPU"``.

    Routines pickle (pickle, cloudpickle) as their formula, aliases and options, so they can be sent to
    multiprocessing / DataLoader / Dask workers; the receiving process finds the kernel precompiled or in
    the JIT cache (KMR_CACHE_DIR) and compiles only a formula it has never seen.
    """

    def __init__(self, formula, aliases, reduction_op="Sum", axis=0, opt_arg=None, formula2=None,
                 dtype_acc="auto", sum_scheme="auto", **keops_options):
        dtype_acc = keops_options_to_dtype_acc(keops_options, dtype_acc)
        self._core = GenredCore(formula, aliases, reduction_op, axis, opt_arg, formula2, dtype_acc,
                                sum_scheme)
        self._companion = None  # values + indices version of Min/Max/KMin, built on the first gradient
        self._derived = {}  # gradient routines, built on first use (see autograd.py)

    def __repr__(self):
        return f"pykmr.torch.{self._core.what}"

    def __call__(self, *args, backend="auto", device_id=-1, ranges=None, out=None):
        """Runs the reduction (pykeops.torch.Genred.__call__).

        Args:
            *args: the arguments in the aliases' order. i-variables (B1, ..., Bk, N, dim), j-variables
                (B1, ..., Bk, M, dim), parameters (B1, ..., Bk, dim) (or (dim,), or Python numbers). The
                batch dims B1..Bk (k >= 0) broadcast as in numpy: a size-1 dim (or a missing leading dim)
                repeats the argument over that batch dim. All batches run in one launch; the gradient of a
                broadcast argument is summed over the dims it was broadcast along.
            backend: "auto" (the tensors' device), "CPU" or "GPU" (KeOps's "GPU_1D"... accepted).
            device_id: the GPU (-1: the tensors' one, or the current one).
            ranges: KeOps's block-sparse 6-tuple (ranges_i, slices_i, redranges_j, ranges_j, slices_j,
                redranges_i) of int32/int64 tensors (any device): ranges_i [Mc, 2] the [start, end) of each
                block of output rows (sorted, disjoint), slices_i [Mc] the cumulative end of each block's
                list in redranges_j (the first starts at 0), redranges_j [Mcc, 2] the [start, end) of the
                j-rows reduced for it. axis=1 uses the first three, axis=0 the last three (with i and j
                swapped); gradients use both. Output rows in no block get the reduction of nothing: Sum 0,
                Min +inf, Max -inf, LogSumExp -inf, Arg* -1, SumSoftMaxWeight NaN (as KeOps). Not
                combined with batch dims (KeOps refuses that too): ValueError.
            out: a tensor (or (values, indices) pair) of the result's shape and dtype to write into.

        Returns:
            (B1, ..., Bk, N, out_dim) for axis=1 ((..., M, out_dim) for axis=0); KMin-like reductions
            (..., N, K, dim) (squeezed to (..., N, K) when dim is 1); Min_ArgMin-like ones a (values,
            indices) pair; indices are int64.

        Raises:
            TypeError: wrong argument count, types or dtypes. ValueError: shapes that disagree with the
            aliases or do not broadcast, malformed ranges (shape, dtype, unsorted, out of bounds).
        """
        from pykmr.torch.autograd import GenredFunction

        core = self._core
        check_call_options(backend, device_id, ranges)
        tensors, in_dtype = _convert(core, args, backend)
        plan = core.plan_call([t.shape for t in tensors])
        tensors = batch_layout(core, plan, tensors, _expand)
        call = TorchCall(plan, ranges)
        device = _device(core, tensors, backend, device_id)
        back_to_cpu = device.type == "cuda_host"  # CPU tensors with backend="GPU": run on a copy on the GPU
        if back_to_cpu:
            gpu = torch.device("cuda", device.index)
            tensors = [t.to(gpu) for t in tensors]
            device = Device("cuda", device.index, torch.cuda.current_stream(gpu).cuda_stream)
        needs_grad = (torch.is_grad_enabled() and core.red.kind != "index"
                      and any(t.requires_grad for t in tensors))
        # under torch.func (grad, vmap, jvp...) the tensors may be wrappers without storage, and dual tensors
        # of torch.autograd.forward_ad carry tangents: only the Function (its rules) may see them
        transformed = _FUNCTORCH_ACTIVE() or getattr(_forward_ad, "_current_level", -1) >= 0
        if needs_grad or transformed:
            if out is not None:
                raise RuntimeError("pykmr: out= does not support automatic differentiation or torch.func "
                                   "transforms, but an argument requires grad or a transform is active")
            vals, idx, _m, _s = GenredFunction.apply(self, device, call, *tensors)
        else:
            vals, idx = self.forward_raw(tensors, call, device)
        result = postprocess_batched(vals, idx, core, plan.batch)
        if back_to_cpu:
            result = tuple(r.cpu() for r in result) if isinstance(result, tuple) else result.cpu()
        if compute_dtype(in_dtype) != in_dtype:  # float16/bfloat16 computed in float32: values cast back
            half = getattr(torch, in_dtype)
            result = tuple(_values_to(r, half) for r in result) if isinstance(result, tuple) else (
                _values_to(result, half))
        if out is None:
            return result
        outs, results = check_out_shapes(core, out, result, lambda o: isinstance(o, torch.Tensor))
        for o, r in zip(outs, results):
            o.copy_(r)
        return out

    def forward_raw(self, tensors, call, device, indices=False):
        """Runs the kernel: the values [*batch, rows, out_dim] (the data dtype) and the int64 indices
        [*batch, rows, out_idx_dim] of Arg* reductions, or, when `indices`, of the values of Min/Max/KMin (the
        companion Min_ArgMin... is run instead; [..., 0] for reductions without indices)."""
        core = run = self._core
        if indices and core.red.kind == "select":
            if self._companion is None:
                self._companion = GenredCore(core.formula, core.aliases, core.red.companion, core.axis,
                                             core.opt_arg, core.formula2, core.dtype_acc, core.sum_scheme)
            run = self._companion
        plan = call.plan
        ref = tensors[0] if tensors else torch.empty(0)
        rows = core.out_rows(plan.nx, plan.ny)
        vals = torch.empty(plan.batch + (rows, run.out_dim), dtype=ref.dtype, device=ref.device)
        idx = torch.empty(plan.batch + (rows, run.out_idx_dim), dtype=torch.int64, device=ref.device)
        dtype = str(ref.dtype).replace("torch.", "")
        if plan.nbatch > 0:
            strides = [t.numel() // plan.nbatch if m != "shared" else 0 for t, m in zip(tensors, plan.modes)]
            launch(run, dtype, [t.data_ptr() for t in tensors], plan.nx, plan.ny, vals.data_ptr(), device,
                   idx_ptr=idx.data_ptr(), nbatch=plan.nbatch, strides=strides if plan.batch else (),
                   ranges=call.ranges_arg(core))
        return vals, idx


    # ----------------------------------------------------------------------------------------------------
    def partial(self, *args, offset=0) -> PartialState:
        """The unfinalized state of this reduction over the reduced rows passed (CPU tensors, as for a
        call), with indices made global: `offset` is the global index of the first reduced row passed
        (j for axis=1, i for axis=0). Merge the states of the slices of an axis with merge(), then
        finalize() gives ``routine(*args)`` on the whole axis (no autograd through states). See
        pykmr.common.PartialState for the layout.

        Raises TypeError/ValueError as a call does, ValueError for a negative or non-integer offset, and
        NotImplementedError for CUDA tensors (partial states run on the CPU), TypeError for float16/bfloat16
        (states are float32 or float64). No pykeops equivalent.
        """
        core = self._core
        with torch.no_grad():
            tensors, _ = _convert(core, args)
            for p, t in enumerate(tensors):
                if t.device.type != "cpu":
                    raise NotImplementedError(f"pykmr: partial states are computed on the CPU, but "
                                              f"{core.labels[p]} is on {t.device}; pass CPU tensors")
            nx, ny = core.check_shapes([t.shape for t in tensors])
            tensors = [t.detach().reshape(-1) if cat == 2 else t.detach()
                       for t, (cat, _) in zip(tensors, core.args)]
            dtype = str(tensors[0].dtype).replace("torch.", "") if tensors else "float32"
            return run_partial(core, _OPS, dtype, [t.data_ptr() for t in tensors], nx, ny, offset)

    def merge(self, states) -> PartialState:
        """Merges a list of PartialState of this routine (same rows) with the reduction's own merge. The
        result does not depend on the order or grouping of the merges beyond float round-off (Arg*: ties
        go to the smaller global index). Raises TypeError/ValueError for states of another routine,
        dtype or number of rows, or an empty list."""
        return merge_partial(self._core, _OPS, states, finalize=False)

    def finalize(self, state: PartialState):
        """The result of routine(*args) from the merged state of all the reduced rows: same shapes and
        dtypes as a direct call (int64 indices for Arg*), CPU tensors."""
        if not isinstance(state, PartialState):
            raise TypeError(f"pykmr: finalize takes a PartialState, got {type(state).__name__}")
        vals, idx = merge_partial(self._core, _OPS, [state], finalize=True)
        return postprocess(vals, idx, self._core)


def _is_cpu_tensor(a):
    return isinstance(a, torch.Tensor) and a.device.type == "cpu"


_OPS = ArrayOps(empty=lambda shape, dt: torch.empty(shape, dtype=getattr(torch, dt)),
                ptr=lambda t: t.data_ptr(), contiguous=lambda t: t.detach().contiguous(),
                dtype_name=lambda t: str(t.dtype).replace("torch.", ""), is_array=_is_cpu_tensor,
                kind="CPU torch tensors")


class TorchCall:
    """What a call carries besides its tensors: its CallPlan and KeOps's ranges (the user's tuple, passed on
    to the gradient routines, and its host int64 copy for libkmr, made once)."""

    def __init__(self, plan, ranges):
        self.plan = plan
        self.ranges = ranges
        self._host = None
        if ranges is not None:
            check_ranges(ranges, plan, lambda r: tuple(r.shape), lambda r: str(r.dtype).replace("torch.", ""))

    def ranges_arg(self, core):
        if self.ranges is None:
            return ()
        if self._host is None:
            self._host = [r.detach().to("cpu", torch.int64).contiguous() for r in self.ranges]
        return [(r.data_ptr(), r.shape[0]) for r in self._host]



def _convert(core, args, backend=None):
    """Contiguous tensors of one float dtype, and the arguments' dtype name (None: numbers only); Python
    numbers (or lists of them) accepted for parameters. A call (`backend` given) on the CPU takes float16 or
    bfloat16 and converts them to float32 (differentiably: gradients come back in the input dtype); partial
    states (no backend) and GPU calls refuse them (GenredCore.check_dtypes)."""
    core.check_count(len(args))
    dtypes, ref = [], None
    for p, a in enumerate(args):
        if isinstance(a, torch.Tensor):
            dtypes.append(str(a.dtype).replace("torch.", ""))
            ref = a if ref is None else ref
        elif core.args[p][0] == 2 and is_numbers(a):
            dtypes.append(None)
        elif type(a).__module__ == "numpy":
            raise TypeError(f"pykmr: {core.labels[p]} is a numpy array: pykmr.torch takes torch tensors "
                            "(use pykmr.numpy for numpy arrays, or torch.from_numpy)")
        else:
            kind = "a torch.Tensor or a number" if core.args[p][0] == 2 else "a torch.Tensor"
            raise TypeError(f"pykmr: {core.labels[p]} must be {kind}, got {type(a).__name__}")
    device = ref.device if ref is not None else torch.device("cpu")
    half = None if backend is None else "gpu" if device.type == "cuda" or backend.startswith("GPU") else "cpu"
    name = core.check_dtypes(dtypes, half)
    dtype = getattr(torch, compute_dtype(name)) if name else torch.get_default_dtype()
    return [a.to(dtype).contiguous() if isinstance(a, torch.Tensor)
            else torch.tensor(a, dtype=dtype, device=device).reshape(-1) for a in args], name


def _values_to(t, dtype):
    """A result tensor in `dtype`, int64 indices left as they are."""
    return t.to(dtype) if t.is_floating_point() else t


def _device(core, tensors, backend, device_id):
    """The device of the call: the tensors' (backend="auto"), checked against backend and device_id. CPU
    tensors with backend="GPU" give Device("cuda_host"): the caller copies them to that GPU and back."""
    first = None
    for p, t in enumerate(tensors):
        if first is None:
            first = p
        elif t.device != tensors[first].device:
            raise ValueError(f"pykmr: {core.labels[first]} is on {tensors[first].device} but "
                             f"{core.labels[p]} is on {t.device}; put all arguments on one device")
    dev = tensors[first].device if first is not None else torch.device("cpu")
    gpu = backend.startswith("GPU")
    if dev.type == "cuda":
        if backend == "CPU":
            raise ValueError(f"pykmr: backend='CPU' but the arguments are on {dev}; move them to the CPU "
                             "(tensor.cpu()) or use backend='auto'")
        if device_id not in (-1, dev.index):
            raise ValueError(f"pykmr: device_id={device_id} but the arguments are on {dev}")
        return Device("cuda", dev.index, torch.cuda.current_stream(dev).cuda_stream)
    if dev.type != "cpu":
        raise ValueError(f"pykmr: arguments on {dev} are not supported (CPU or CUDA tensors)")
    if not gpu:
        return CPU
    from pykmr import _cuda

    _cuda.require_gpu()
    if not torch.cuda.is_available():
        raise RuntimeError("pykmr: backend='GPU' with CPU tensors copies them to the GPU with torch, but "
                           "this torch has no CUDA support; install a CUDA build of torch, or use "
                           "backend='CPU'")
    return Device("cuda_host", device_id if device_id >= 0 else torch.cuda.current_device())


def _expand(t, shape):
    """A broadcast view copied out contiguous (see pykmr.common.batch_layout)."""
    return t.expand(shape).contiguous()
