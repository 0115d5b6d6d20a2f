"""Float literals (issue 10, section 3): every literal Python's repr(float) or str(int) writes parses and
means the nearest double (float64 kernels) or the nearest float (float32 kernels, rounded from the decimal
itself, not through the double); the canonical key keeps the exact value. The references round with exact
rational arithmetic (fractions), independently of pykmr's parser."""

from __future__ import annotations

import random
from fractions import Fraction

import numpy as np
import pytest
import torch
from pykmr.torch import Genred

ISSUE = ["2.220446049250313e-16", "1e+308", "5e-324", "1.7976931348623157e+308", str(2**70)]
MORE = [
    "0.1",
    repr(1 / 3),
    "1e-320",
    "123456789.12345679",
    str(2**64 + 1),
    "1e+22",
    "1e+23",
    "4.9406564584124654e-324",
    "2.2250738585072014e-308",
    "1.0000000596046448",  # a float midpoint's neighbour: float(d) rounds differently
    "3.4028235677973366e+38",
    "1e-50",
    "9007199254740993",
    str(10**40),
    "0.30000000000000004",
    "1e-05",
]


def _random_literals(n, seed=1234):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        e = rng.randint(-320, 308)
        out.append(repr(rng.random() * 10.0**e))
    return out


LITERALS = ISSUE + MORE + _random_literals(40)


def nearest(fr: Fraction, dtype) -> float:
    """The nearest value of `dtype` to the rational fr (ties to even), by exact comparison."""
    with np.errstate(all="ignore"):  # overflows to inf are expected here
        return _nearest(fr, np.float32 if dtype == torch.float32 else np.float64)


def _nearest(fr, np_t):
    guess = np_t(float(fr)) if abs(fr) < Fraction(2) ** 1024 else np_t(np.inf)
    cands = {guess, np.nextafter(guess, np_t(np.inf)), np.nextafter(guess, np_t(-np.inf))}
    finite = [c for c in cands if np.isfinite(c)]
    if not finite:
        return float(guess)
    best = min(
        finite,
        key=lambda c: (
            abs(Fraction(float(c)) - fr),
            int(c.view(np.int32 if np_t is np.float32 else np.int64)) & 1,
        ),
    )
    big = np.finfo(np_t).max
    # beyond the largest finite value by half an ulp or more: infinity, as IEEE rounding gives
    half_ulp = (Fraction(float(big)) - Fraction(float(np.nextafter(big, np_t(0))))) / 2
    if abs(fr) >= Fraction(float(big)) + half_ulp:
        return float("inf") if fr > 0 else float("-inf")
    return float(best)


CHUNK = 10  # literals per formula: one JIT compile per chunk and dtype


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("start", range(0, len(LITERALS), CHUNK))
def test_literal_values(start, dtype):
    lits = LITERALS[start : start + CHUNK]
    formula = "X*" + lits[0]
    for lit in lits[1:]:
        formula = f"Concat({formula},X*{lit})"
    routine = Genred(formula, ["X = Vi(1)", "Y = Vj(1)"], reduction_op="Sum", axis=1)
    x = torch.ones(3, 1, dtype=dtype)
    y = torch.zeros(1, 1, dtype=dtype)
    got = routine(x, y)[0].tolist()
    for lit, g in zip(lits, got):
        want = nearest(Fraction(lit), dtype)
        assert g == want, f"{lit} in {dtype}: got {g!r}, want {want!r}"


def test_issue_instance():
    x = torch.ones(2, 1, dtype=torch.float64)
    out = Genred("X*2.220446049250313e-16", ["X = Vi(1)", "Y = Vj(1)"], reduction_op="Sum", axis=1)(
        x, torch.ones(1, 1, dtype=torch.float64)
    )
    assert out.tolist() == [[2.220446049250313e-16]] * 2


def key(formula):
    return Genred(formula, ["X = Vi(1)", "Y = Vj(1)"], reduction_op="Sum", axis=1)._core.kernel.key


def test_key_keeps_the_exact_value():
    # the same value written two ways: one key; neighbouring doubles: different keys
    assert key("X*2.220446049250313e-16") == key("X*2.2204460492503130e-16")
    assert key("X*0.1") == key("X*1e-1") and "RatCst(1,10)" in key("X*0.1")
    eps_next = repr(float(np.nextafter(2.220446049250313e-16, 1.0)))
    assert key("X*2.220446049250313e-16") != key(f"X*{eps_next}")
    assert key("X*0.30000000000000004") != key("X*0.3")
    assert key(f"X*{2**70}") == key("X*1.1805916207174113e+21")


@pytest.mark.parametrize(
    "text, why",
    [("X*1e309", "beyond the range of a double"), ("X*1" + "0" * 400, "beyond the range of a double")],
)
def test_out_of_range_is_a_clear_error(text, why):
    with pytest.raises(ValueError, match=why):
        Genred(text, ["X = Vi(1)"], reduction_op="Sum", axis=1)


def test_underflow_is_zero():
    out = Genred("X*1e-400+Y", ["X = Vi(1)", "Y = Vj(1)"], reduction_op="Sum", axis=1)(
        torch.ones(1, 1, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64)
    )
    assert out.item() == 0.0
