"""Bad input: each gives a clear exception that names the argument or the position, never a crash and
never a silent wrong answer. One table row per case: what is called, the exception, the message."""

from __future__ import annotations

import numpy as np
import pykmr.numpy as kn
import pytest
import torch
from pykmr.torch import Genred, generic_argkmin, generic_logsumexp, generic_sum

F64 = torch.float64
GXYB = ["G = Pm(1)", "X = Vi(3)", "Y = Vj(3)", "B = Vj(2)"]
GAUSS = "Exp(-G*SqDist(X,Y))*B"
N, M = 4, 3


def args(**change):
    """Good arguments (g, x, y, b) of the Gaussian convolution, some replaced."""
    a = {
        "g": torch.tensor([0.5], dtype=F64),
        "x": torch.rand(N, 3, dtype=F64),
        "y": torch.rand(M, 3, dtype=F64),
        "b": torch.rand(M, 2, dtype=F64),
    }
    a.update(change)
    return a["g"], a["x"], a["y"], a["b"]


def conv(*a, **kw):
    return Genred(GAUSS, GXYB, "Sum", axis=1)(*a, **kw)


def case(id_, fn, exc, match):
    return pytest.param(fn, exc, match, id=id_)


CASES = [
    # formulas and aliases (libkmr's parser: the position, with a caret)
    case(
        "malformed_formula",
        lambda: Genred("Exp(-G*SqDist(X,Y)", GXYB),
        ValueError,
        r"expected '\)'.* position 18[\s\S]*\^",
    ),
    case("non_ascii_formula", lambda: Genred("Exp(-G*SqDist(X,Y))*B\u00e9", GXYB), ValueError, "non-ASCII"),
    case(
        "unknown_op", lambda: Genred("Expp(-G*SqDist(X,Y))*B", GXYB), ValueError, "unknown operation 'Expp'"
    ),
    case("unknown_reduction", lambda: Genred(GAUSS, GXYB, "Mean"), ValueError, "unknown reduction 'Mean'"),
    case(
        "undeclared_variable",
        lambda: Genred("Exp(-G*SqDist(X,W))*B", GXYB),
        ValueError,
        "undeclared variable 'W' at position 16",
    ),
    case("alias_twice", lambda: Genred(GAUSS, GXYB + ["X = Vi(3)"]), ValueError, "'X' is declared twice"),
    case(
        "alias_unknown_category",
        lambda: Genred(GAUSS, GXYB[:3] + ["B = Vk(2)"]),
        ValueError,
        "unknown variable category 'Vk'",
    ),
    case("formula_dims", lambda: Genred("SqDist(X,B)", GXYB), ValueError, "dims 3 and 2"),
    case("axis", lambda: Genred(GAUSS, GXYB, axis=2), ValueError, "axis must be 0 .* or 1 .*, got 2"),
    case("aliases_not_a_list", lambda: Genred(GAUSS, "X = Vi(3)"), TypeError, "aliases must be a list"),
    case("kmin_without_k", lambda: Genred("SqDist(X,Y)", GXYB, "KMin"), ValueError, "needs opt_arg K >= 1"),
    case("k_not_int", lambda: Genred("SqDist(X,Y)", GXYB, "KMin", opt_arg=2.5), TypeError, "opt_arg"),
    case(
        "lse_vector_formula_weights_dim",
        lambda: Genred("X", GXYB, "LogSumExp", formula2="B"),
        ValueError,
        r"coordinate by coordinate .*'X' has dim 3, formula2 'B' has dim 2",
    ),
    case(
        "ssmw_without_formula2",
        lambda: Genred("SqDist(X,Y)", GXYB, "SumSoftMaxWeight"),
        ValueError,
        "needs formula2",
    ),
    case("unknown_keyword", lambda: Genred(GAUSS, GXYB, colour="red"), TypeError, "unexpected keyword"),
    # the call's arguments (pykmr: the argument's position and alias)
    case("wrong_count", lambda: conv(*args()[:3]), TypeError, r"takes 4 arguments .*got 3"),
    case(
        "dims_vs_alias",
        lambda: conv(*args(x=torch.rand(N, 2, dtype=F64))),
        ValueError,
        r"argument 1 \('X = Vi\(3\)'\) has 2 columns but its alias declares dim 3",
    ),
    case(
        "j_lengths",
        lambda: conv(*args(b=torch.rand(M + 1, 2, dtype=F64))),
        ValueError,
        r"j-variables must have the same number of rows: argument 2 \('Y = Vj\(3\)'\) has 3, "
        r"argument 3 \('B = Vj\(2\)'\) has 4",
    ),
    case(
        "i_lengths",
        lambda: Genred("X*U", ["X = Vi(1)", "U = Vi(1)"], axis=1)(torch.rand(3, 1), torch.rand(4, 1)),
        ValueError,
        r"i-variables must have the same number of rows: argument 0 .* has 3, argument 1 .* has 4",
    ),
    case(
        "mixed_dtypes",
        lambda: conv(*args(y=torch.rand(M, 3, dtype=torch.float32))),
        TypeError,
        r"mixed dtypes: argument 0 \('G = Pm\(1\)'\) is float64 but argument 2 \('Y = Vj\(3\)'\) is float32",
    ),
    case(
        "integer_tensor",
        lambda: conv(*args(x=torch.ones(N, 3, dtype=torch.int64))),
        TypeError,
        r"argument 1 \('X = Vi\(3\)'\) has integer dtype int64",
    ),
    case(
        "float16_with_float64",  # float16 alone runs on the CPU in float32 (test_half.py)
        lambda: conv(*args(x=torch.ones(N, 3, dtype=torch.float16))),
        TypeError,
        r"mixed dtypes: argument 0 .* is float64 but argument 1 \('X = Vi\(3\)'\) is float16",
    ),
    case(
        "numpy_to_torch",
        lambda: conv(*args(b=np.random.rand(M, 2))),
        TypeError,
        r"argument 3 \('B = Vj\(2\)'\) is a numpy array",
    ),
    case(
        "not_an_array",
        lambda: conv(*args(y="points")),
        TypeError,
        r"argument 2 .* must be a torch.Tensor, got str",
    ),
    case(
        "batch_dims_mismatch",
        lambda: conv(*args(x=torch.rand(2, N, 3, dtype=F64), y=torch.rand(3, M, 3, dtype=F64))),
        ValueError,
        r"batch dims of the arguments do not broadcast \(dim 0 has sizes \[2, 3\]",
    ),
    case(
        "one_d_variable",
        lambda: conv(*args(x=torch.rand(3, dtype=F64))),
        ValueError,
        r"argument 1 .* must be 2-D \[nx, 3\], got shape \(3,\)",
    ),
    case(
        "parameter_size",
        lambda: conv(*args(g=torch.tensor([0.5, 1.0], dtype=F64))),
        ValueError,
        r"argument 0 \('G = Pm\(1\)'\) is a parameter of dim 1: expected shape \(1,\), got shape \(2,\)",
    ),
    case(
        "parameter_number_for_variable",
        lambda: conv(*args(x=1.0)),
        TypeError,
        r"argument 1 .* must be a torch.Tensor, got float",
    ),
    case(
        "k_larger_than_m",
        lambda: Genred("SqDist(X,Y)", ["X = Vi(3)", "Y = Vj(3)"], "KMin", axis=1, opt_arg=5)(
            torch.rand(N, 3), torch.rand(M, 3)
        ),
        ValueError,
        "K = 5 is larger than the number of reduced points",
    ),
    # backend="GPU" without a GPU (with one, tests/python/test_cuda.py runs it)
    *([] if torch.cuda.is_available() else [
        case("backend_gpu", lambda: conv(*args(), backend="GPU"), RuntimeError, "needs a CUDA GPU")]),
    case("backend_unknown", lambda: conv(*args(), backend="TPU"), ValueError, "backend must be"),
    case("ranges", lambda: conv(*args(), ranges=(1, 2)), TypeError, "ranges must be KeOps's 6-tuple"),
    case("out_shape", lambda: conv(*args(), out=torch.empty(N, 1, dtype=F64)), ValueError, "out= has shape"),
    # generic_*: the output alias
    case(
        "output_dim",
        lambda: generic_sum(GAUSS, "A = Vi(3)", *GXYB),
        ValueError,
        r"output alias 'A = Vi\(3\)' declares dim 3 but Sum of .* has dim 2",
    ),
    case(
        "output_lse_dim",
        lambda: generic_logsumexp("-SqDist(X,Y)", "A = Vi(2)", *GXYB),
        ValueError,
        "declares dim 2 but LogSumExp",
    ),
    case(
        "output_malformed",
        lambda: generic_sum(GAUSS, "A = Vi[2]", *GXYB),
        ValueError,
        "malformed output alias",
    ),
    case("output_parameter", lambda: generic_sum(GAUSS, "A = Pm(2)", *GXYB), ValueError, "must be Vi/Vx"),
    case(
        "output_and_axis",
        lambda: generic_sum(GAUSS, "A = Vi(2)", *GXYB, axis=0),
        TypeError,
        "take axis from the output alias",
    ),
    case(
        "argkmin_k_larger_than_m",
        lambda: generic_argkmin("SqDist(X,Y)", "A = Vi(4)", "X = Vi(3)", "Y = Vj(3)")(
            torch.rand(N, 3), torch.rand(M, 3)
        ),
        ValueError,
        "K = 4 is larger",
    ),
    # the numpy front end checks the same way
    case(
        "numpy_integer",
        lambda: kn.Genred("SqDist(X,Y)", ["X = Vi(3)", "Y = Vj(3)"], axis=1)(
            np.ones((N, 3), dtype=np.int32), np.ones((M, 3))
        ),
        TypeError,
        r"argument 0 .* integer dtype int32",
    ),
    case(
        "numpy_dims",
        lambda: kn.Genred("SqDist(X,Y)", ["X = Vi(3)", "Y = Vj(3)"], axis=1)(
            np.ones((N, 3)), np.ones((M, 4))
        ),
        ValueError,
        r"argument 1 \('Y = Vj\(3\)'\) has 4 columns",
    ),
]


@pytest.mark.parametrize("fn, exc, match", CASES)
def test_bad_input(fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()

