"""gudhi 3.13 on pykmr: its KeOps k-NN (gudhi.point_cloud.knn.KNearestNeighbors, implementation="keops")
and distance to measure against its own dense implementations (gudhi runs KeOps in float32: 1e-5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import close

pytest.importorskip("gudhi", reason="gudhi is an optional client library (pip install gudhi)")


@pytest.mark.parametrize("p", [2, 1, np.inf])
def test_knn_keops_vs_ckdtree(p, keops_is_pykmr, seed):
    from gudhi.point_cloud.knn import KNearestNeighbors

    rng = np.random.default_rng(seed)
    x = rng.random((200, 3))
    q = rng.random((30, 3))
    got = (
        KNearestNeighbors(
            k=5, return_index=True, return_distance=True, implementation="keops", p=p, enable_autodiff=False
        )
        .fit(x)
        .transform(q)
    )
    ref = (
        KNearestNeighbors(k=5, return_index=True, return_distance=True, implementation="ckdtree", p=p)
        .fit(x)
        .transform(q)
    )
    np.testing.assert_array_equal(np.asarray(got[0]), np.asarray(ref[0]))
    np.testing.assert_allclose(np.asarray(got[1]), np.asarray(ref[1]), rtol=1e-5)


def test_knn_keops_torch_autodiff(keops_is_pykmr, seed):
    pytest.importorskip("eagerpy", reason="gudhi's autodiff k-NN needs eagerpy")
    from gudhi.point_cloud.knn import KNearestNeighbors

    g = torch.Generator().manual_seed(seed)
    x = torch.rand(100, 2, dtype=torch.float64, generator=g).requires_grad_()
    got = KNearestNeighbors(
        k=4, return_index=False, return_distance=True, implementation="keops", enable_autodiff=True
    ).fit_transform(x)
    ref = KNearestNeighbors(
        k=4, return_index=False, return_distance=True, implementation="torch", enable_autodiff=True
    ).fit_transform(x)
    close(got, ref, 1e-5, "k-NN distances")
    close(torch.autograd.grad(got.sum(), x)[0], torch.autograd.grad(ref.sum(), x)[0], 1e-4, "gradient")


def test_distance_to_measure(keops_is_pykmr, seed):
    from gudhi.point_cloud.dtm import DistanceToMeasure

    rng = np.random.default_rng(seed)
    x = rng.random((150, 2))
    got = DistanceToMeasure(5, implementation="keops").fit_transform(x)
    ref = DistanceToMeasure(5, implementation="ckdtree").fit_transform(x)
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=1e-5)
