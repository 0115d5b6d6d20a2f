"""KernelSolve (pykeops.torch.KernelSolve / pykeops.numpy.KernelSolve) and LazyTensor.solve: the solution a
of (alpha Id + K) a = b by conjugate gradient, with K_ij given by a formula (symmetric, positive) and the
product K a computed by a Sum Genred, never stored.

Gradient (torch): with a = (alpha Id + K)^-1 b and an incoming gradient g, let h = (alpha Id + K)^-1 g
(K symmetric). Then dL/db = h, dL/dalpha = -<h, a> and dL/dtheta = -<h, (dK/dtheta) a> for the other
arguments theta of K: that last one is the gradient of the Sum Genred at v = a with incoming gradient -h.
"""

from __future__ import annotations

from pykmr.common import HALF_DTYPES, parse_alias


def conjugate_gradient(matvec, b, alpha, eps, maxiter=None):
    """Solves (alpha Id + K) a = b column by column (K = matvec), |residual| <= eps |b| per column."""
    a = b * 0
    r = b - (alpha * a + matvec(a))
    p = r * 1
    rs = (r * r).sum(0)
    bnorm2 = (b * b).sum(0)
    tol = (eps**2) * bnorm2
    # exact arithmetic needs at most N steps; round-off makes CG slower, hence the margin
    n = 10 * b.shape[0] + 10 if maxiter is None else maxiter
    for _ in range(max(n, 1)):
        if bool((rs <= tol).all()):
            break
        kp = alpha * p + matvec(p)
        denom = (p * kp).sum(0)
        step = rs / (denom + (denom == 0) * 1)  # a column that converged exactly keeps denom 0: step 0
        a = a + step * p
        r = r - step * kp
        rs_new = (r * r).sum(0)
        p = r + (rs_new / (rs + (rs == 0) * 1)) * p
        rs = rs_new
    return a


class KernelSolveBase:
    """KernelSolve(formula, aliases, varinvalias, axis=0, dtype_acc="auto", sum_scheme="auto", ...):
    called as Kinv(*args, alpha=1e-10, backend="auto", device_id=-1, eps=1e-6, ranges=None) with the
    arguments in the aliases' order, the one named `varinvalias` holding b (N, D). Returns a (N, D).

    axis: 1 reduces over j (K a = sum_j K_ij a_j, the variable is a Vj), 0 over i. The system is square:
    the variable and the output rows have the same count.
    """

    _genred = None  # the front end's Genred class

    def __init__(
        self, formula, aliases, varinvalias, axis=0, dtype_acc="auto", sum_scheme="auto", **keops_options
    ):
        pos = None
        for k, text in enumerate(aliases):
            a = parse_alias(text)
            if a is not None and a.name == varinvalias:
                pos = k if a.pos is None else a.pos
                cat = a.cat
        if pos is None:
            raise ValueError(
                f"pykmr: KernelSolve: varinvalias '{varinvalias}' is not one of the aliases {list(aliases)}"
            )
        if cat != (1 if axis == 1 else 0):
            raise ValueError(
                f"pykmr: KernelSolve: '{varinvalias}' must be a {'Vj' if axis == 1 else 'Vi'} "
                f"variable for axis={axis} (the reduced index)"
            )
        self.varpos = pos
        self.routine = self._genred(
            formula,
            list(aliases),
            reduction_op="Sum",
            axis=axis,
            dtype_acc=dtype_acc,
            sum_scheme=sum_scheme,
            **keops_options,
        )
        if self.routine._core.out_dim != self.routine._core.args[pos][1]:
            raise ValueError(
                "pykmr: KernelSolve: the formula's dim must equal the variable's dim "
                f"({self.routine._core.out_dim} vs {self.routine._core.args[pos][1]})"
            )

    def _matvec(self, args, opts):
        def mv(v):
            full = list(args)
            full[self.varpos] = v
            return self.routine(*full, **opts)

        return mv

    def _check(self, args, alpha, eps):
        b = args[self.varpos]
        if str(b.dtype).replace("torch.", "") in HALF_DTYPES:
            raise TypeError(
                f"pykmr: KernelSolve: b has dtype {b.dtype}: conjugate gradient needs float32 or "
                "float64 (float16/bfloat16 cannot reach eps); convert the arguments first (.float())"
            )
        if len(b.shape) != 2:
            raise ValueError(f"pykmr: KernelSolve: b must be 2-D (N, D), got shape {tuple(b.shape)}")
        if alpha < 0 or eps <= 0:
            raise ValueError(f"pykmr: KernelSolve: need alpha >= 0 and eps > 0, got {alpha}, {eps}")
        return b


def solve(lt, other, var, call, alpha, eps, kwargs):
    """LazyTensor.solve: (alpha Id + K) a = b, b = other (i-indexed). var=None: K = lt (scalar or of b's
    dim) multiplies the unknown a_j; var = a symbolic j-variable (Vj(ind, dim)): lt is linear in it and
    sum_j lt_ij(a) = b_i is solved for a (KeOps's solve(var=))."""
    tools = lt._tools
    if var is not None:
        node = getattr(var, "_node", None)
        uvar = None if node is None else node.var
        if not isinstance(var, type(lt)) or uvar is None or uvar.data is not None:
            raise TypeError(
                "pykmr: solve(var=...): var must be a symbolic variable, e.g. Vj(0, D) or "
                "LazyTensor((0, D, 1)), that self is linear in"
            )
        if uvar.cat != 1:
            raise ValueError(
                "pykmr: solve(var=...): var must be indexed by j (Vj(ind, dim)): the system is "
                "sum_j self_ij(a_j) = b_i"
            )
    if isinstance(other, type(lt)):
        if other._node.var is None or other._node.var.cat != 0 or other._node.var.data is None:
            raise ValueError(
                "pykmr: solve(b): b must be a LazyTensor made from a tensor indexed by i (Vi(b))"
            )
        b = other._node.var.data
    elif tools.is_array(other):
        b = other
    else:
        raise TypeError(f"pykmr: solve(b) takes a LazyTensor Vi(b) or an array, got {type(other).__name__}")
    if lt.nbatchdims:
        raise NotImplementedError("pykmr: solve() with batch dims is not supported")
    unknown = set(kwargs) - {"backend", "device_id", "ranges", "dtype_acc", "sum_scheme", "maxiter"}
    if unknown:
        raise TypeError(f"pykmr: solve() got unexpected keyword arguments {sorted(unknown)}")
    if len(b.shape) != 2:
        raise ValueError(f"pykmr: solve(b): b must be (N, D), got shape {tuple(b.shape)}")
    if var is None:
        if lt.ndim not in (1, b.shape[1]):
            raise ValueError(f"pykmr: solve: K has dim {lt.ndim}, expected 1 or b's dim {b.shape[1]}")
        unknown_v = type(lt)(b, axis=1)  # placeholder j-variable for a
        f, is_unknown = lt * unknown_v, (lambda w: w is unknown_v._node.var)
    else:
        if uvar.dim != b.shape[1] or lt.ndim != b.shape[1]:
            raise ValueError(
                "pykmr: solve(var=...): var, self and b must have one dim, "
                f"got {uvar.dim}, {lt.ndim} and {b.shape[1]}"
            )
        f, is_unknown = lt, (lambda w: w.data is None and w.ind == uvar.ind)
    red = f._reduce(
        "Sum", 1, call=False, **{k: kwargs[k] for k in ("dtype_acc", "sum_scheme") if k in kwargs}
    )
    pos = next((k for k, w in enumerate(red.vars) if is_unknown(w)), None)
    if pos is None:
        raise ValueError("pykmr: solve(var=...): self does not contain var")
    others = [w for w in red.vars if w.data is None and not is_unknown(w)]
    if others:
        raise ValueError(
            f"pykmr: solve: self has {len(others)} symbolic variable(s) besides the unknown: give them data"
        )
    args = [tools.constant(w.data, b) if isinstance(w.data, tuple) else w.data for w in red.vars]
    solver = tools.KernelSolve(red.formula, red.aliases, f"V{pos}", axis=1)
    args[pos] = b
    opts = {k: kwargs[k] for k in ("backend", "device_id", "ranges") if k in kwargs}
    if not call:
        return lambda: solver(*args, alpha=alpha, eps=eps, **opts)
    return solver(*args, alpha=alpha, eps=eps, **opts)
