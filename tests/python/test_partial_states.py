"""Partial states (issue 14 §1, DESIGN decision 13): routine.partial on uneven chunks of the reduced axis,
routine.merge in any grouping and order, routine.finalize equal the direct call — every reduction, both
axes, float32/float64, numpy and torch front ends; Arg* exactly (ties to the smaller global index), sums
within float round-off. States pickle."""

import pickle

import numpy as np
import pykmr.numpy as pknp
import pykmr.torch as pk
import pytest
import torch
from pykmr.common import PartialState

# (reduction, formula, formula2, K): one formula per family, vector-valued (dim 2) where the reduction allows.
CASES = [
    ("Sum", "Exp(-SqDist(X,Y))*B", None, None),
    ("Min", "X*Y", None, None),
    ("Max", "X*Y", None, None),
    ("ArgMin", "SqDist(X,Y)", None, None),
    ("ArgMax", "X*Y", None, None),
    ("Min_ArgMin", "X*Y", None, None),
    ("Max_ArgMax", "SqDist(X,Y)", None, None),
    ("KMin", "X*Y", None, 3),
    ("ArgKMin", "SqDist(X,Y)", None, 4),
    ("KMin_ArgKMin", "X*Y", None, 3),
    ("LogSumExp", "-SqDist(X,Y)", None, None),
    ("LogSumExp", "-SqDist(X,Y)", "B", None),
    ("SumSoftMaxWeight", "-SqDist(X,Y)", "B", None),
]
EXACT = {"Min", "Max", "ArgMin", "ArgMax", "Min_ArgMin", "Max_ArgMax", "KMin", "ArgKMin", "KMin_ArgKMin"}
TOL = {"float32": 2e-5, "float64": 1e-12}  # relative to the scale of the output: chunked vs one-pass sums

N, M = 23, 613
CUTS = [0, 0, 5, 6, 200, 201, 613]  # uneven chunks of the reduced axis, one empty, two of one row


def make(front, red, formula, formula2, k, axis):
    aliases = (
        ["X = Vi(2)", "Y = Vj(2)", "B = Vj(2)"] if axis == 1 else ["X = Vj(2)", "Y = Vi(2)", "B = Vi(2)"]
    )
    return front.Genred(formula, aliases, reduction_op=red, axis=axis, opt_arg=k, formula2=formula2)


def data(seed, dtype):
    """Values on a grid of 1/4 so that Min/Max/KMin have many ties, within and across chunks."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-4, 5, size=(N, 2)) / 4
    y = rng.integers(-4, 5, size=(M, 2)) / 4
    b = rng.uniform(0.1, 1.5, size=(M, 2))  # positive: the weighted LogSumExp is well conditioned
    return [a.astype(dtype) for a in (x, y, b)]


def chunk_states(routine, x, y, b):
    return [routine.partial(x, y[c0:c1], b[c0:c1], offset=c0) for c0, c1 in zip(CUTS[:-1], CUTS[1:])]


def tree_merge(routine, states):
    """Pairs merged in reverse order, then the pairs' results, then the rest: another grouping and order."""
    states = states[::-1]
    while len(states) > 1:
        states = [routine.merge(states[i : i + 2]) for i in range(0, len(states), 2)]
    return states[0]


def as_numpy(r):
    if isinstance(r, tuple):
        return tuple(as_numpy(t) for t in r)
    return r.numpy() if isinstance(r, torch.Tensor) else r


def check_same(red, got, want, dtype):
    got, want = as_numpy(got), as_numpy(want)
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want)
        for g, w in zip(got, want):
            check_same(red, g, w, dtype)
        return
    assert got.shape == want.shape and got.dtype == want.dtype
    if red in EXACT or want.dtype == np.int64:
        np.testing.assert_array_equal(got, want)
    else:
        scale = np.nanmax(np.abs(want), initial=0.0) + 1
        np.testing.assert_allclose(got, want, rtol=0, atol=TOL[dtype] * scale)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("axis", [1, 0])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c[0] + ("_w" if c[2] else ""))
def test_partial_merge_finalize_equals_direct(case, axis, dtype, seed):
    red, formula, formula2, k = case
    x, y, b = data(seed, dtype)
    for front in (pknp, pk):
        routine = make(front, red, formula, formula2, k, axis)
        args = (x, y, b) if front is pknp else tuple(torch.from_numpy(a) for a in (x, y, b))
        want = routine(*args)
        states = chunk_states(routine, *args)
        assert all(isinstance(s, PartialState) for s in states)
        flat = routine.finalize(routine.merge(states))
        check_same(red, flat, want, dtype)
        tree = routine.finalize(tree_merge(routine, states))
        check_same(red, tree, want, dtype)
        if red in EXACT:  # the grouping changes nothing at all
            check_same(red, tree, flat, dtype)
        # A state of the whole axis finalizes to the direct call too.
        check_same(red, routine.finalize(routine.partial(*args)), want, dtype)


def test_arg_ties_go_to_smaller_global_index():
    """The same point in three chunks: whatever the merge order, the first global index wins."""
    x = np.zeros((1, 2))
    y = np.ones((30, 2))
    y[[4, 17, 25]] = 0.0
    b = np.zeros((30, 2))
    routine = make(pknp, "ArgKMin", "SqDist(X,Y)", None, 2, 1)
    s = [routine.partial(x, y[a:c], b[a:c], offset=a) for a, c in [(0, 10), (10, 20), (20, 30)]]
    for order in ([0, 1, 2], [2, 1, 0], [1, 2, 0]):
        st = routine.merge([s[i] for i in order])
        assert routine.finalize(st).tolist() == [[4, 17]]
    assert routine.finalize(routine.merge([routine.merge([s[2], s[1]]), s[0]])).tolist() == [[4, 17]]


@pytest.mark.parametrize("front", [pknp, pk], ids=["numpy", "torch"])
def test_state_layout_and_pickle(front):
    x, y, b = data(3, "float32")
    if front is pk:
        x, y, b = (torch.from_numpy(a) for a in (x, y, b))
    routine = make(front, "Min_ArgMin", "SqDist(X,Y)", None, None, 1)
    st = routine.partial(x, y[100:], b[100:], offset=100)
    assert st.rows == N and st.dtype == "float32"
    assert tuple(st.acc.shape) == (N, 1) and tuple(st.idx.shape) == (N, 1)
    assert int(st.idx.min()) >= 100  # global indices
    back = pickle.loads(pickle.dumps(st))
    assert isinstance(back, PartialState) and back.routine == st.routine
    rest = routine.partial(x, y[:100], b[:100])
    check_same("Min_ArgMin", routine.finalize(routine.merge([back, rest])), routine(x, y, b), "float32")
    # dtype_acc float64: the accumulators are float64, the result float32 as a direct call.
    r64 = front.Genred(
        "Exp(-SqDist(X,Y))*B",
        ["X = Vi(2)", "Y = Vj(2)", "B = Vj(2)"],
        reduction_op="Sum",
        axis=1,
        dtype_acc="float64",
    )
    st = r64.partial(x, y, b)
    assert str(st.acc.dtype).endswith("float64")
    out = r64.finalize(st)
    assert str(out.dtype).endswith("float32")


def test_errors():
    x, y, b = data(4, "float64")
    r = make(pknp, "ArgMin", "SqDist(X,Y)", None, None, 1)
    other = make(pknp, "ArgMax", "X*Y", None, None, 1)
    st = r.partial(x, y, b)
    with pytest.raises(ValueError, match="offset"):
        r.partial(x, y, b, offset=-1)
    with pytest.raises(ValueError, match="offset"):
        r.partial(x, y, b, offset=1.5)
    with pytest.raises(ValueError, match="another routine"):
        r.merge([st, other.partial(x, y, b)])
    with pytest.raises(ValueError, match="at least one"):
        r.merge([])
    with pytest.raises(TypeError, match="list of PartialState"):
        r.merge(st)
    with pytest.raises(TypeError, match="PartialState"):
        r.finalize("state")
    with pytest.raises(ValueError, match="state 1"):
        r.merge([st, r.partial(x[:3], y, b)])  # other number of rows
    bad = PartialState(st.routine, st.dtype, st.acc[:, :0], st.idx)
    with pytest.raises(ValueError, match="acc"):
        r.finalize(bad)
    with pytest.raises(TypeError, match="numpy arrays"):
        r.finalize(PartialState(st.routine, st.dtype, torch.from_numpy(st.acc), st.idx))
