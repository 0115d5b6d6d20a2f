"""Forward mode for pykmr.torch.Genred (torch.func.jvp, jacfwd, hessian; torch.autograd.forward_ad): the
tangent of a reduction's output, built like the backward (autograd.py) as formulas run through the same
Genred, so that it is itself differentiable (reverse mode, vmap, forward mode again).

For tangents dV of the arguments V, the derivative of the formula F along them is

    D = Grad(sum_V (Grad(F, V, U) | dV), U, IntCst(1))

(Grad(F, V, U) = J_V^T U is linear in U, so its U-gradient against dV is J_V dV, the directional derivative,
for any U: U is a fresh own variable fed with zeros). Each dV is a new variable of V's category and dim.
Then, per reduction (L the forward output, O the SumSoftMaxWeight output, f and g = formula and formula2):

    Sum                 dA = Sum D
    LogSumExp           dL = Sum Exp(F - L) * D                  (coordinate by coordinate)
    LogSumExp, weights  dL = Sum Exp(f - L) * (g * Df + Dg)       (f scalar: broadcast; else coordinate-wise)
    SumSoftMaxWeight    dO = Sum Exp(f - Lf) * (Df * (g - O) + Dg),  Lf = LogSumExp f
    Min, Max, KMin      d value (i, r, d) = D(i, j*)[d] at the selected pair (gathered rows, as the backward)

Rows with no mass get a zero tangent (L clamped as in the backward, _no_mass)."""

from __future__ import annotations

import torch

from pykmr.common import CATS, to_all_i


def output_tangent(routine, args, tangents, out, idx, call):
    """The tangent of the values output [*batch, rows, out_dim] of routine(*args) along `tangents` (one per
    argument, None: zero); None when every tangent is None."""
    from pykmr.torch.autograd import _derived, _no_mass

    core = routine._core
    kind = core.red.kind
    live = [p for p, t in enumerate(tangents) if t is not None]
    if not live or kind == "index":
        return None
    rg = call.ranges
    f, f2 = core.formula, core.formula2
    if kind in ("select", "both"):
        return _selected_tangent(routine, args, [tangents[p] for p in live], live, out, idx, call.plan)
    names = core.fresh_names(*["T"] * len(live), "U", "U", "L", "O")
    t_names, spare = names[: len(live)], names[len(live) :]
    aliases = core.aliases + [
        f"{n} = {CATS[core.args[p][0]]}({core.nargs + k},{core.args[p][1]})"
        for k, (n, p) in enumerate(zip(t_names, live))
    ]
    tensors = [*args, *(tangents[p] for p in live)]  # then the extra own variables
    own = CATS[core.own_cat]
    rows, batch = out.shape[-2], tuple(out.shape[:-2])

    def own_var(dim, tensor):
        name = spare.pop(0)
        aliases.append(f"{name} = {own}({len(tensors)},{dim})")
        tensors.append(tensor)
        return name

    def directional(formula, dim):
        u = own_var(dim, out.new_zeros(batch + (rows, dim)))  # any value: the derivative is linear in U
        inner = "+".join(f"(Grad({formula},{core.names[p]},{u})|{n})" for n, p in zip(t_names, live))
        return f"Grad({inner},{u},IntCst(1))"

    df = core.dim_f
    if kind == "sum":
        w = directional(f, df)
    elif kind == "lse" and not f2:
        dfx = directional(f, df)
        spare.pop(0)
        w = f"Exp(({f})-{own_var(df, _no_mass(out))})*{dfx}"
    elif kind == "lse":
        dfx, dg = directional(f, df), directional(f2, core.dim_g)
        lse = own_var(core.dim_g, _no_mass(out))
        w = f"Exp(({f})-{lse})*(({f2})*{dfx}+{dg})"
    elif kind == "ssmw":
        lse_f = _derived(routine, "lse", f, core.aliases, "LogSumExp", core.axis)(*args, ranges=rg)
        empty = torch.isneginf(lse_f)
        o_val = torch.where(empty, torch.zeros_like(out), out)
        dfx, dg = directional(f, df), directional(f2, core.dim_g)
        lse, o = own_var(df, _no_mass(lse_f)), own_var(core.dim_g, o_val)
        w = f"Exp(({f})-{lse})*({dfx}*(({f2})-{o})+{dg})"
    else:
        raise RuntimeError(f"pykmr: no forward-mode rule for {core.reduction_op}")
    r = _derived(routine, ("jvp", kind, tuple(live)), w, aliases, "Sum", core.axis)
    return r(*tensors, ranges=rg)


def _selected_tangent(routine, args, t_args, live, out, idx, plan):
    """Min/Max/KMin: the directional derivative D at the selected pairs, rows gathered as in the backward
    (autograd._selected_grads), every variable declared Vi and reduced by a Sum over a single j."""
    from pykmr.torch.autograd import _derived

    core = routine._core
    d, kd = core.dim_f, core.k * core.dim_f
    batch, nb = plan.batch, plan.nbatch
    n = out.shape[-2]
    other = 1 - core.own_cat
    m = plan.ny if other == 1 else plan.nx
    if m == 0 or n == 0 or nb == 0:
        return torch.zeros_like(out)
    idx = idx.detach().reshape(nb, n, kd)
    valid = idx >= 0
    flat = (idx.clamp(min=0) + torch.arange(nb, device=idx.device).reshape(nb, 1, 1) * m).reshape(-1)

    def gather(a, cat, dim):
        if cat == 2:
            return a.expand(batch + (dim,)).reshape(nb, dim)
        full = a.expand(batch + tuple(a.shape[-2:])).reshape(nb, a.shape[-2], dim)
        if cat == other:
            return full.reshape(nb * m, dim).index_select(0, flat).reshape(nb, n * kd, dim)
        return full.repeat_interleave(kd, dim=1) if kd > 1 else full

    rows = [gather(a, cat, dim) for a, (cat, dim) in zip(args, core.args)]
    t_rows = [gather(t, *core.args[p]) for t, p in zip(t_args, live)]
    *t_names, u = core.fresh_names(*["T"] * len(live), "U")
    f = to_all_i(core.formula)
    aliases = [to_all_i(a) for a in core.aliases]
    aliases += [
        f"{nm} = {'Pm' if core.args[p][0] == 2 else 'Vi'}({core.nargs + k},{core.args[p][1]})"
        for k, (nm, p) in enumerate(zip(t_names, live))
    ]
    aliases.append(f"{u} = Vi({core.nargs + len(live)},{d})")
    inner = "+".join(f"(Grad({f},{to_all_i(core.names[p])},{u})|{nm})" for nm, p in zip(t_names, live))
    r = _derived(routine, ("jvp", "select", tuple(live)), f"Grad({inner},{u},IntCst(1))", aliases, "Sum", 1)
    dvals = r(*rows, *t_rows, out.new_zeros((nb, n * kd, d)))  # [nb, n * kd, d]
    onehot = torch.eye(d, dtype=out.dtype, device=out.device).repeat(core.k, 1)  # slot r*D+e takes coord e
    dvals = (dvals.reshape(nb, n, kd, d) * onehot).sum(-1) * valid
    return dvals.reshape(out.shape)
