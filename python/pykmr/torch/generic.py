"""generic_sum & co on torch tensors (the seed's spelling): the output alias ("A = Vi(2)", or the older
"A = Vx(2)") gives the reduction axis and its dim is checked against the formula's."""

from pykmr.common import make_generic
from pykmr.torch.genred import Genred


def generic_sum(formula, output, *aliases, **kwargs):
    """Sum reduction: generic_sum("Exp(-G*SqDist(X,Y)) * B", "A = Vi(2)", "G = Pm(1)", ...)."""
    return make_generic(Genred, "Sum", formula, output, aliases, kwargs)


def generic_logsumexp(formula, output, *aliases, **kwargs):
    """LogSumExp reduction of a scalar formula (output "A = Vi(1)")."""
    return make_generic(Genred, "LogSumExp", formula, output, aliases, kwargs)


def generic_argmin(formula, output, *aliases, **kwargs):
    """ArgMin reduction (int64 indices, as pykeops)."""
    return make_generic(Genred, "ArgMin", formula, output, aliases, kwargs)


def generic_argkmin(formula, output, *aliases, **kwargs):
    """ArgKMin reduction: the output alias "A = Vi(K)" gives K; [n, K] int64 indices."""
    return make_generic(Genred, "ArgKMin", formula, output, aliases, kwargs)
