"""generic_sum & co on torch tensors (the seed's spelling): the output alias ("A = Vi(2)", or the older
"A = Vx(2)") gives the reduction axis and its dim is checked against the formula's."""

from pykmr.common import make_generics
from pykmr.torch.genred import Genred

generic_sum, generic_logsumexp, generic_argmin, generic_argkmin = make_generics(Genred)
