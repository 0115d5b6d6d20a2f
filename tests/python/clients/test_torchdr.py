"""TorchDR 0.5 on pykmr: an entropic (perplexity) affinity and a t-SNE embedding with backend="keops"
against backend=None (dense torch), float64, few iterations (t-SNE amplifies round-off by itself)."""

from __future__ import annotations

import pytest
import torch
from conftest import close

pytest.importorskip("torchdr", reason="TorchDR is a client library (CI installs torchdr==0.5)")
# TorchDR warns (ImportWarning) on first use when faiss, an optional dependency of its own that these tests do
# not use, is absent: not a fault of the code under test (pyproject turns warnings into errors).
pytestmark = pytest.mark.filterwarnings("ignore::ImportWarning")


def _data(seed, n=60, d=5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, dtype=torch.float64, generator=g)


@pytest.mark.parametrize("sparsity", [False, True])
def test_entropic_affinity(sparsity, keops_is_pykmr, seed):
    from torchdr import EntropicAffinity

    x = _data(seed)
    mats = []
    for backend in (None, "keops"):
        aff = EntropicAffinity(
            perplexity=10, backend=backend, sparsity=sparsity, verbose=False, max_iter=200, device="cpu"
        )
        out = aff(x)
        if isinstance(out, tuple):
            out = out[0]
        if not isinstance(out, torch.Tensor):  # a LazyTensor: densify through a reduction with identity
            out = out @ torch.eye(x.shape[0], dtype=x.dtype)
        mats.append(out)
    close(mats[1], mats[0], 1e-7, f"EntropicAffinity(sparsity={sparsity})")


def test_tsne_embedding(keops_is_pykmr, seed):
    from torchdr import TSNE

    x = _data(seed)
    embs = []
    for backend in (None, "keops"):
        tsne = TSNE(
            perplexity=10,
            max_iter=20,
            backend=backend,
            random_state=seed,
            verbose=False,
            device="cpu",
            early_exaggeration_iter=10,
            check_interval=1000,
        )
        embs.append(tsne.fit_transform(x))
    close(embs[1], embs[0], 1e-6, "TSNE embedding after 20 iterations")
