"""pykmr.torch.cluster: the block-sparse helpers of pykeops.torch.cluster (grid clustering, cluster ranges
and centroids, KeOps's 6-tuple `ranges` built from a boolean cluster-to-cluster mask).

ranges (KeOps's format): (ranges_i, slices_i, redranges_j, ranges_j, slices_j, redranges_i), int32:
ranges_i [Mc, 2] the [start, end) rows of each i-cluster, slices_i [Mc] the cumulative count of kept
j-clusters per i-cluster, redranges_j [Mcc, 2] the [start, end) rows of those j-clusters, and the same
with i and j swapped (used by reductions over i and by gradients).
"""

from __future__ import annotations

import torch

__all__ = [
    "grid_cluster",
    "cluster_ranges",
    "cluster_centroids",
    "cluster_ranges_centroids",
    "sort_clusters",
    "from_matrix",
    "swap_axes",
]


def grid_cluster(x, size):
    """Labels (N,) int64 of the cubic cells of side `size` (a number or a (D,) tensor) that hold the points
    x (N, D); labels run over 0..C-1 in the order of the cells' lexicographic coordinates."""
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        raise ValueError("pykmr: grid_cluster(x, size): x must be a 2D tensor (N, D)")
    with torch.no_grad():
        cells = ((x - x.min(0).values) / size).floor().long()  # (N, D) integer coordinates
        _, labels = torch.unique(cells, dim=0, return_inverse=True)  # sorted lexicographically
    return labels.reshape(-1)


def _counts(lab, Nlab):
    if Nlab is None:
        Nlab = torch.bincount(lab.long())
    return Nlab


def cluster_ranges(lab, Nlab=None):
    """[start, end) row ranges (C, 2) int32 of the clusters of sorted labels lab (N,)."""
    Nlab = _counts(lab, Nlab)
    end = torch.cumsum(Nlab, 0)
    return torch.stack((end - Nlab, end), dim=1).int()


def cluster_centroids(x, lab, Nlab=None, weights=None, weights_c=None):
    """Weighted centroids (C, D) of the points x (N, D) per label (empty clusters: 0)."""
    lab = lab.long()
    Nlab = _counts(lab, Nlab)
    C = len(Nlab)
    w = torch.ones(x.shape[0], dtype=x.dtype, device=x.device) if weights is None else weights.reshape(-1)
    if weights_c is None:
        weights_c = torch.zeros(C, dtype=x.dtype, device=x.device).index_add(0, lab, w)
    sums = torch.zeros((C, x.shape[1]), dtype=x.dtype, device=x.device).index_add(0, lab, w[:, None] * x)
    return sums / weights_c.clamp(min=torch.finfo(x.dtype).tiny)[:, None]


def cluster_ranges_centroids(x, lab, weights=None, min_weight=1e-9):
    """(ranges (C, 2) int32, centroids (C, D), cluster weights (C,)): the clusters' row ranges (for
    sorted labels), weighted centroids, and total weights (counts without weights)."""
    lab = lab.long()
    Nlab = torch.bincount(lab)
    w = torch.ones(x.shape[0], dtype=x.dtype, device=x.device) if weights is None else weights.reshape(-1)
    w_c = torch.zeros(len(Nlab), dtype=x.dtype, device=x.device).index_add(0, lab, w)
    ranges = cluster_ranges(lab, Nlab)
    centroids = cluster_centroids(x, lab, Nlab, w, w_c.clamp(min=min_weight))
    return ranges, centroids, w_c


def sort_clusters(x, lab):
    """Sorts the rows of x (a tensor or a tuple/list of tensors) by label: (sorted x, sorted labels)."""
    lab_sorted, perm = torch.sort(lab.reshape(-1))
    if isinstance(x, (tuple, list)):
        return type(x)(a[perm] for a in x), lab_sorted
    return x[perm], lab_sorted


def from_matrix(ranges_i, ranges_j, keep):
    """KeOps's 6-tuple ranges from a boolean (Mc, Nc) mask of the (i-cluster, j-cluster) blocks to keep."""
    keep = keep.bool()
    if keep.shape != (len(ranges_i), len(ranges_j)):
        raise ValueError(
            f"pykmr: from_matrix: keep has shape {tuple(keep.shape)}, expected "
            f"({len(ranges_i)}, {len(ranges_j)})"
        )
    _, jj = keep.nonzero(as_tuple=True)  # row-major: grouped by i-cluster
    _, jt = keep.t().nonzero(as_tuple=True)
    i32 = torch.int32
    return (
        ranges_i.to(i32),
        torch.cumsum(keep.sum(1), 0).to(i32),
        ranges_j[jj].to(i32),
        ranges_j.to(i32),
        torch.cumsum(keep.sum(0), 0).to(i32),
        ranges_i[jt].to(i32),
    )


def swap_axes(ranges):
    """The ranges of the transposed problem (i and j swapped)."""
    if ranges is None:
        return None
    return tuple(ranges[3:6]) + tuple(ranges[0:3])
