"""Autograd for pykmr.torch.Genred: backward builds gradient formulas Grad(F, V, W) and runs them through
the same Genred, so its result is itself differentiable (create_graph=True, double backward, any order).

Let "own" be the category indexed like the output rows (Vi for axis=1, Vj for axis=0), "other" the
reduced one. For the formula F and an incoming gradient E (one row per output row), every reduction's
backward is a weighted sum of F's adjoints over the pairs (i, j):

    dL/dV = sum over the pairs of Grad(F, V, W_ij)

with W_ij a formula of F and own-variables (E, the forward output...). An own variable V gets it by a
Sum over the reduced index (same axis); an other variable by a Sum over the own index (axis flipped); a
parameter by a Sum over the reduced index, then summed over the rows.

    Sum                 W = E                                    (F verbatim: hits the precompiled set)
    LogSumExp           W = E * Exp(F - L)                       L: the forward output
    LogSumExp, weights  F = Concat(f, g), W = Concat((w|g), w),  w = E * Exp(f - L)
    SumSoftMaxWeight    F = Concat(f, g), W = Concat(p * ((E|g) - (E|O)), p * E),
                        p = Exp(f - LogSumExp_j f), O: the forward output

A formula f of dim D > 1 is reduced coordinate by coordinate (g, E, L, O of dim D too): the same W with
every product taken coordinate-wise, (w|g) -> w * g and p * ((E|g) - (E|O)) -> p * E * (g - O).

Min, Max, KMin and their _Arg versions carry a gradient on their values: value (i, r, d) is
F(i, j*)[d] with j* = the selected index, so its gradient is Grad(F, V, E_ird e_d) at the pair (i, j*).
The forward then also computes the indices (Min_ArgMin instead of Min...). The backward gathers the
selected pairs into rows (own variables repeated, other variables taken at j* by index_select),
evaluates Grad(F, V, E) on those rows with every variable declared Vi (a Sum over a single j), and sends
the rows back: summed per own row, index_add-ed into the other variable, summed for parameters. The
indices are constants (the gradient is the one of the selected branch: exact away from ties), and
gather, index_add and the Sum Genred are differentiable, so this too works at any order.

Batch dims: every gradient routine runs on the same batched arguments, so it returns full-batch gradients;
an argument broadcast along batch dims gets its gradient summed over them (sum_to_size). Ranges: each
gradient routine gets the call's 6-tuple; one that reduces over the same index uses its first triple, one
over the other index (axis flipped) the transposed triple, as in KeOps. The selected pairs of Min/Max/KMin
need no ranges (the forward only selected pairs inside them).
"""

from __future__ import annotations

import torch

from pykmr.common import CATS, to_all_i


class GenredFunction(torch.autograd.Function):
    """forward(routine, device, call, *args) -> (values [*batch, rows, out_dim], int64 indices
    [*batch, rows, out_idx_dim], M, S) (call: a TorchCall, the batch plan and the ranges); the indices are
    constants (not differentiable), and for Min/Max/KMin they are those of the values. M, S: the state of a
    LogSumExp forward that keeps it for the backward (_lse_with_state; [rows, d] each), otherwise two empty
    1-D tensors; both are constants.

    Written in torch's setup_context style (forward without ctx), so that torch.func transforms take it:
    grad / vjp / jacrev through the backward below, vmap through the vmap staticmethod, which maps the
    vmapped dim onto a leading batch dim of the engine (one launch for the whole vmap), and forward mode (jvp,
    jacfwd, hessian) through the jvp staticmethod (forward_mode.py)."""

    @staticmethod
    def forward(routine, device, call, *args):
        if _lse_state_applies(routine, device, call):
            vals, idx, (m, s) = _lse_with_state(routine, args, call)
        else:
            vals, idx = routine.forward_raw(args, call, device, indices=routine._core.red.kind == "select")
            m, s = vals.new_empty(0), vals.new_empty(0)  # no state: the backward uses L (the values)
        return vals, idx, m, s

    @staticmethod
    def setup_context(ctx, inputs, output):
        routine, _device, call, *args = inputs
        vals, idx, m, s = output
        ctx.routine = routine
        ctx.call = call
        if routine._core.red.kind == "index":  # ArgMin...: integer results, no gradient (as KeOps)
            ctx.mark_non_differentiable(vals, idx, m, s)
        else:
            ctx.mark_non_differentiable(idx, m, s)
        ctx.save_for_backward(*args, vals, idx, m, s)
        ctx.save_for_forward(*args, vals, idx)

    @staticmethod
    def backward(ctx, grad_out, _grad_idx, _grad_m, _grad_s):
        *args, out, idx, m, s = ctx.saved_tensors
        lse_state = (m, s) if m.dim() == 2 else None  # a real state is [rows, d]; no state: empty 1-D
        needs = ctx.needs_input_grad[3:]
        grads = input_grads(ctx.routine, args, out, idx, grad_out, needs, ctx.call, lse_state)
        return (None, None, None, *grads)

    @staticmethod
    def vmap(info, in_dims, routine, device, call, *args):
        return vmap_rule(info.batch_size, in_dims[3:], routine, device, call, args)

    @staticmethod
    def jvp(ctx, _routine_t, _device_t, _call_t, *tangents):
        from pykmr.torch.forward_mode import output_tangent

        *args, out, idx = ctx.saved_tensors
        return output_tangent(ctx.routine, args, tangents, out, idx, ctx.call), None, None, None


def vmap_rule(batch_size, in_dims, routine, device, call, args):
    """torch.func.vmap of GenredFunction: the vmapped dim becomes a new leading batch dim of the call (the
    engine's own batch dims), the call is planned again for the new shapes and run as ONE launch; arguments
    that are not vmapped (in_dim None) broadcast along it. Returns (outputs, out_dims).

    Each argument arrives as the call laid it out (batch_layout: a parameter without batch dims flat), its
    vmapped dim anywhere (in_dim); moved to the front, it is padded with size-1 dims up to the call's batch
    dims, so that the old batch dims line up behind the new one."""
    from pykmr.common import batch_layout
    from pykmr.torch.genred import TorchCall, _expand

    core = routine._core
    if call.ranges is not None:
        raise ValueError(
            "pykmr: torch.func.vmap over a reduction with ranges (block-sparse) is not supported: vmap maps "
            "onto the reduction's batch dims, and ranges cannot be combined with batch dims (as in KeOps); "
            "call the reduction in a loop over the vmapped dim, or drop ranges"
        )
    nbd = len(call.plan.batch)
    shaped = []
    for a, d, (cat, _dim) in zip(args, in_dims, core.args):
        if d is None:  # a variable gets size-1 batch dims (a view): the plan takes the batch rank from them
            shaped.append(a if cat == 2 else a.reshape((1,) * (nbd + 3 - a.dim()) + tuple(a.shape)))
            continue
        a = a.movedim(d, 0)
        tail = 1 if cat == 2 else 2  # (dim,) of a parameter, (rows, dim) of a variable
        pad = nbd - (a.dim() - 1 - tail)
        shaped.append(a.reshape((batch_size,) + (1,) * pad + tuple(a.shape[1:])))
    plan = core.plan_call([t.shape for t in shaped])
    tensors = [t.contiguous() for t in batch_layout(core, plan, shaped, _expand)]
    vals, idx, m, s = GenredFunction.apply(routine, device, TorchCall(plan, None), *tensors)
    return (vals, idx, m, s), (0, 0, None, None)  # a batched call keeps no LogSumExp state


def input_grads(routine, args, out, idx, grad_out, needs, call, lse_state=None):
    """dL/d(args) from dL/d(raw output); None where no gradient is needed. lse_state: (M, S) of a
    LogSumExp forward (_lse_with_state), or None."""
    core = routine._core
    if not any(needs):
        return [None] * len(args)
    kind, f, f2 = core.red.kind, core.formula, core.formula2
    rg = call.ranges
    if kind in ("select", "both"):
        return _selected_grads(routine, args, out, idx, grad_out, needs, call.plan)
    if kind == "sum":
        (e,) = core.fresh_names("E")
        return _pair_grads(routine, args, needs, kind, f, e, [(e, core.dim_f, grad_out)], rg)
    df = core.dim_f  # F of dim df > 1: coordinate by coordinate (E, L, O, F2 of dim df too)
    d = core.dim_g if f2 else df  # dim of the output, of E and of L
    if kind == "lse":
        e, lse = core.fresh_names("E", "L")
        w = f"{e}*Exp(({f})-{lse})"
        lg, flip = out, None  # the log-normaliser whose graph the backward carries
        if f2:
            lg, flip = _negative_sums(routine, args, out, rg)
        if lse_state is None:
            eg = grad_out if flip is None else torch.where(flip, -grad_out, grad_out)
            extras = [(e, d, eg), (lse, d, _no_mass(lg))]
        else:  # Exp(F - L) = Exp(F - M) / S, with L's graph kept for higher orders (see _lse_with_state)
            m, s = lse_state
            extras = [(e, d, _state_weights(lg, m, s, grad_out)), (lse, m.shape[-1], _no_mass(m))]
        if not f2:
            return _pair_grads(routine, args, needs, kind, f, w, extras, rg)
        wf = f"({w}|{f2})" if df == 1 else f"{w}*({f2})"
        return _pair_grads(routine, args, needs, kind, f"Concat({f},{f2})", f"Concat({wf},{w})", extras, rg)
    if kind == "ssmw":
        e, o, lse = core.fresh_names("E", "O", "L")
        p = f"Exp(({f})-{lse})"
        if df == 1:
            w = f"Concat({p}*(({e}|{f2})-({e}|{o})),{p}*{e})"
        else:
            w = f"Concat({p}*{e}*(({f2})-{o}),{p}*{e})"
        lse_f = _derived(routine, "lse", f, core.aliases, "LogSumExp", core.axis)(*args, ranges=rg)
        empty = torch.isneginf(lse_f)  # rows with no mass: their output (0/0) must not reach the weights
        out = torch.where(empty, torch.zeros_like(out), out)
        return _pair_grads(routine, args, needs, kind, f"Concat({f},{f2})", w,
                           [(e, d, grad_out), (o, d, out), (lse, df, _no_mass(lse_f))], rg)
    raise RuntimeError(f"pykmr: no gradient rule for {core.reduction_op}")  # index reductions: no grad


def _lse_state_applies(routine, device, call):
    """Whether a LogSumExp forward (with or without weights) keeps its state for the backward: on the CPU,
    without batch dims or ranges (what the partial-state entry takes)."""
    core = routine._core
    plan = call.plan
    return (core.red.kind == "lse" and device.type == "cpu" and plan.batch == () and plan.nbatch == 1
            and call.ranges is None)


def _lse_with_state(routine, args, call):
    """The LogSumExp forward through the kernel's state: (values, indices, (M, S)), with the running max
    M and the shifted sum S of each row (and coordinate), L = M + log S finalized by the kernel itself.

    Why: the backward's weights Exp(F - L) lose the rounding of L, half an ulp of |L| (6e-5 for float32 L
    near -1500: every weight of the row off by that much), while Exp(F - M) / S is exact for the leading
    term (M is one of the F values) and S is about 1. The graph of L is then carried by a factor
    Exp(L0 - L) of value 1 (input_grads), so that higher orders see W = E Exp(F - L) as before."""
    from pykmr.common import merge_partial, run_partial
    from pykmr.torch.genred import _OPS

    core, plan = routine._core, call.plan
    dtype = str(args[0].dtype).replace("torch.", "") if args else "float32"
    flat = [a.detach().reshape(-1) if cat == 2 else a.detach() for a, (cat, _) in zip(args, core.args)]
    state = run_partial(core, _OPS, dtype, [t.data_ptr() for t in flat], plan.nx, plan.ny, 0)
    vals, idx = merge_partial(core, _OPS, [state], finalize=True)
    acc = state.acc.to(vals.dtype)
    if core.formula2 and core.dim_f == 1:  # weighted, scalar F: (M, S_1 .. S_d), one max for every weight
        return vals, idx, (acc[:, :1], acc[:, 1:])
    return vals, idx, (acc[:, 0::2], acc[:, 1::2])  # (M_c, S_c) per coordinate


def _state_weights(lg, m, s, grad_out):
    """E / S, the backward's incoming gradient over the row's (weighted) shifted sum, times Exp(L0 - L) =
    1 that carries the graph of L = lg (the output, or log|S| + M where S < 0: _negative_sums). Rows with
    no mass (M = -inf) get 0; S = 0 with mass (weights summing to 0) gives +-inf, the derivative of log at
    0; S < 0 (negative weighted sum: the output is NaN) gives the finite dL = dS / S of Log's convention
    (docs/conventions.md) instead of NaN."""
    no_mass = torch.isneginf(m).expand_as(s)
    safe_s = torch.where(no_mass, torch.ones_like(s), s)  # no 1/0 in the graph of higher orders either
    es = torch.where(no_mass, torch.zeros_like(grad_out), grad_out / safe_s)
    finite = torch.where(torch.isfinite(lg), lg, torch.zeros_like(lg))
    return es * torch.exp(finite.detach() - finite)


def _negative_sums(routine, args, out, ranges):
    """(L', flip) for a LogSumExp with weights: where the weighted sum s is negative (out NaN), L' = log|s|,
    the LogSumExp of the same F with the weights negated (a differentiable reduction), and flip marks
    those entries; elsewhere L' = out and flip is False (flip None: no negative sum, nothing computed).
    Log's convention (docs/conventions.md) then gives d log s = ds / s = -E Exp(F - L') ds, finite at
    every order, instead of NaN."""
    bad = torch.isnan(out)
    if not bool(bad.any()):
        return out, None
    c = routine._core
    neg = _derived(routine, "lse_negated_weights", c.formula, c.aliases, "LogSumExp", c.axis,
                   formula2=f"-({c.formula2})")(*args, ranges=ranges)
    flip = bad & ~torch.isnan(neg)  # NaN data stays NaN
    return torch.where(flip, neg, out), flip


def _no_mass(lse):
    """The log-normaliser L as the backward's weights Exp(F - L) use it: -inf (a row with no mass: all
    F = -inf, or M = 0) becomes the lowest finite value, so that those weights are Exp(-inf) = 0 instead of
    Exp(-inf + inf) = NaN and the row contributes zero to every gradient. Where L = -inf but some F is
    finite (LogSumExp with weights summing to 0), Exp(F - L) stays +inf, the true derivative of log at 0."""
    return torch.clamp(lse, min=torch.finfo(lse.dtype).min)


def _derived(routine, key, formula, aliases, reduction, axis, formula2=None):
    """A Genred built from this one (same class, accumulation options), cached on it."""
    r = routine._derived.get(key)
    if r is None:
        c = routine._core
        r = type(routine)(formula, aliases, reduction, axis, formula2=formula2, dtype_acc=c.dtype_acc,
                          sum_scheme=c.sum_scheme)
        routine._derived[key] = r
    return r


def _pair_grads(routine, args, needs, kind, ftot, w, extras, ranges):
    """Sum over the pairs of Grad(ftot, V, w); extras: (alias name, dim, tensor) of own variables."""
    core = routine._core
    own = CATS[core.own_cat]
    ex_aliases = [f"{name} = {own}({core.nargs + k},{dim})" for k, (name, dim, _) in enumerate(extras)]
    ex_args = [t for _, _, t in extras]
    grads = []
    for p, need in enumerate(needs):
        if not need:
            grads.append(None)
            continue
        cat = core.args[p][0]
        axis = 1 - core.axis if cat == 1 - core.own_cat else core.axis
        r = _derived(routine, (kind, p), f"Grad({ftot},{core.names[p]},{w})", core.aliases + ex_aliases,
                     "Sum", axis)
        g = r(*args, *ex_args, ranges=ranges)
        if cat == 2:
            g = g.sum(-2)
        grads.append(g.sum_to_size(args[p].shape) if g.shape != args[p].shape else g)
    return grads


def _selected_grads(routine, args, out, idx, grad_out, needs, plan):
    """Gradients of Min/Max/KMin values through the selected indices (see the module's doc). Batches are
    folded into one batch dim nb: the selected rows of batch b are gathered from that batch."""
    core = routine._core
    d, kd = core.dim_f, core.k * core.dim_f
    grad_vals = grad_out  # the values' gradient; idx: their int64 indices, global row numbers
    batch, nb = plan.batch, plan.nbatch
    n = grad_vals.shape[-2]
    other = 1 - core.own_cat
    m = plan.ny if other == 1 else plan.nx
    if m == 0 or n == 0 or nb == 0:  # nothing selected (values are +-inf) or no output row
        return [torch.zeros_like(a) if need else None for a, need in zip(args, needs)]
    grad_vals = grad_vals.reshape(nb, n, kd)
    idx = idx.detach().reshape(nb, n, kd)
    valid = idx >= 0  # -1: no selected index (an empty row); unconditional: no data-dependent branch (vmap)
    grad_vals, idx = grad_vals * valid, idx.clamp(min=0)
    # index of the selected row among the nb * m rows of the other variables
    flat = (idx + torch.arange(nb, device=idx.device).reshape(nb, 1, 1) * m).reshape(-1)
    rows = []  # the selected pairs, one per (batch, own row, slot r*D + d)
    for a, (cat, dim) in zip(args, core.args):
        if cat == 2:
            rows.append(a.expand(batch + (dim,)).reshape(nb, dim))
            continue
        full = a.expand(batch + tuple(a.shape[-2:])).reshape(nb, a.shape[-2], dim)
        if cat == other:
            rows.append(full.reshape(nb * m, dim).index_select(0, flat).reshape(nb, n * kd, dim))
        else:
            rows.append(full.repeat_interleave(kd, dim=1) if kd > 1 else full)
    onehot = torch.eye(d, dtype=grad_vals.dtype, device=grad_vals.device).repeat(core.k, 1)
    e_rows = (grad_vals.reshape(nb, n, kd, 1) * onehot).reshape(nb, n * kd, d)
    (e,) = core.fresh_names("E")
    aliases = [to_all_i(a) for a in core.aliases] + [f"{e} = Vi({core.nargs},{d})"]
    f = to_all_i(core.formula)
    grads = []
    for p, need in enumerate(needs):
        if not need:
            grads.append(None)
            continue
        cat, dim = core.args[p]
        r = _derived(routine, ("select", p), f"Grad({f},{to_all_i(core.names[p])},{e})", aliases, "Sum", 1)
        g = r(*rows, e_rows)  # [nb, n * kd, dim]
        if cat == 2:
            g = g.sum(1).reshape(batch + (dim,))
        elif cat == other:
            g = torch.zeros((nb * m, dim), dtype=g.dtype, device=g.device).index_add(
                0, flat, g.reshape(-1, dim))
            g = g.reshape(batch + (m, dim))
        else:
            g = g.reshape(nb, n, kd, dim).sum(2).reshape(batch + (n, dim))
        grads.append(g.sum_to_size(args[p].shape) if g.shape != args[p].shape else g)
    return grads
