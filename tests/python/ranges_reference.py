"""Block-sparse ranges for the tests, built independently of pykmr: clusters, KeOps's 6-tuple from a boolean
matrix of kept cluster pairs, the dense mask it stands for, and dense float64 reductions under a mask."""

from __future__ import annotations

import torch


def cluster_ranges(labels, nclusters):
    """[start, end) of each cluster in points sorted by label: (nclusters, 2) int64."""
    counts = torch.bincount(labels, minlength=nclusters)
    ends = counts.cumsum(0)
    return torch.stack([ends - counts, ends], dim=1)


def from_matrix(ranges_x, ranges_y, keep):
    """KeOps's (ranges_i, slices_i, redranges_j, ranges_j, slices_j, redranges_i) for a boolean matrix of kept
    (x cluster, y cluster) pairs: blocks of x reduce over the kept y clusters, and the transpose."""
    rows, cols = keep.nonzero(as_tuple=True)
    cols_t, rows_t = keep.t().nonzero(as_tuple=True)
    slices_i = keep.sum(1).cumsum(0)
    slices_j = keep.sum(0).cumsum(0)
    return (ranges_x, slices_i, ranges_y[cols], ranges_y, slices_j, ranges_x[rows_t])


def mask_of(ranges_rows, slices, redranges, nrows, nred):
    """[nrows, nred] boolean: True where row i reduces over j."""
    mask = torch.zeros(nrows, nred, dtype=torch.bool)
    start = 0
    for k in range(ranges_rows.shape[0]):
        a, b = int(ranges_rows[k, 0]), int(ranges_rows[k, 1])
        for s in range(start, int(slices[k])):
            mask[a:b, int(redranges[s, 0]) : int(redranges[s, 1])] = True
        start = int(slices[k])
    return mask


def masked_reduce(red, f, mask, g=None, k=None):
    """Dense reference of a reduction over the last axis of f [n, m, d] restricted to mask [n, m] (float64).
    Rows with nothing to reduce get the reduction of nothing: Sum 0, Min +inf, Max -inf, LogSumExp -inf,
    Arg* -1, SumSoftMaxWeight NaN."""
    m3 = mask.unsqueeze(-1)
    if red == "Sum":
        return (f * m3).sum(1)
    if red == "LogSumExp":
        return torch.logsumexp(f.masked_fill(~m3, -float("inf")), dim=1)
    if red == "SumSoftMaxWeight":
        lse = torch.logsumexp(f.masked_fill(~m3, -float("inf")), dim=1, keepdim=True)
        w = torch.exp(f - lse).masked_fill(~m3, 0.0)
        out = (w * g).sum(1)
        return out.masked_fill(~mask.any(1, keepdim=True), float("nan"))
    big = float("inf")
    if red in ("Min", "ArgMin", "Min_ArgMin", "Max", "ArgMax", "Max_ArgMax"):
        is_max = red.startswith("Max") or red == "ArgMax"
        filled = f.masked_fill(~m3, -big if is_max else big)
        vals, idx = filled.max(1) if is_max else filled.min(1)
        idx = idx.masked_fill(~mask.any(1, keepdim=True), -1)
        return {"Min": vals, "Max": vals, "ArgMin": idx, "ArgMax": idx}.get(red, (vals, idx))
    if red in ("KMin", "ArgKMin", "KMin_ArgKMin"):
        filled = f.masked_fill(~m3, big)  # [n, m, d]
        vals, idx = torch.sort(filled, dim=1, stable=True)
        vals, idx = vals[:, :k], idx[:, :k]  # [n, k, d]
        idx = idx.masked_fill(torch.isinf(vals), -1)
        if f.shape[-1] == 1:
            vals, idx = vals[..., 0], idx[..., 0]
        return {"KMin": vals, "ArgKMin": idx}.get(red, (vals, idx))
    raise ValueError(red)
