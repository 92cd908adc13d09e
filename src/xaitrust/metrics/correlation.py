"""Row-wise rank and linear correlation of batched maps (Spearman 1904; Pearson 1895).

Spearman's rho is Pearson's r between the ranks of the values. Ties get the average of the ranks they span, as
``scipy.stats.rankdata(method="average")`` and ``scipy.stats.spearmanr`` do, so ties in flat saliency backgrounds do
not bias the correlation. Everything works on ``(N, D)`` rows at once (one sort per row).
"""

from __future__ import annotations

import numpy as np
import torch


def _float(values: torch.Tensor) -> torch.Tensor:
    return values if values.dtype in (torch.float32, torch.float64) else values.float()


def average_ranks(values: torch.Tensor, chunk_rows: int = 2048) -> torch.Tensor:
    """Ranks ``1..D`` of each row of ``values (N, D)``; tied values share the mean of the ranks they occupy.

    Runs in NumPy on the CPU (its vectorised argsort is several times faster than ``torch.sort`` there) over
    ``chunk_rows`` rows at a time, which keeps the work in cache; the result comes back on ``values``' device, as
    float32 (float64 for float64 input). After one argsort per row, each run of equal sorted values is found from
    the positions where the value changes, and every member of a run starting at position ``f`` with ``s`` members
    gets the rank ``f + (s + 1) / 2``.
    """
    values = _float(values)
    array = values.detach().cpu().numpy()
    chunks = [_average_ranks_numpy(array[start : start + chunk_rows]) for start in range(0, len(array), chunk_rows)]
    return torch.from_numpy(np.concatenate(chunks) if chunks else array.copy()).to(values.device)


def _average_ranks_numpy(rows: np.ndarray) -> np.ndarray:
    n, d = rows.shape
    order = np.argsort(rows, axis=1)
    ordered = np.take_along_axis(rows, order, axis=1)
    starts = np.empty((n, d), dtype=bool)
    starts[:, 0] = True
    np.not_equal(ordered[:, 1:], ordered[:, :-1], out=starts[:, 1:])
    starts = starts.ravel()
    first = np.flatnonzero(starts)
    if len(first) == n * d:
        mean_rank = np.broadcast_to(np.arange(1, d + 1, dtype=rows.dtype), (n, d))
    else:
        # In flattened positions: the run of every element, then its first position plus (size + 1) / 2.
        centre = first + np.diff(first, append=n * d) * 0.5 + 0.5
        run = np.cumsum(starts, dtype=np.int64) - 1
        mean_rank = (centre[run].reshape(n, d) - (np.arange(n) * d)[:, None]).astype(rows.dtype)
    ranks = np.empty((n, d), dtype=rows.dtype)
    np.put_along_axis(ranks, order, mean_rank, axis=1)
    return ranks


def standardize_rows(values: torch.Tensor) -> torch.Tensor:
    """Centre each row and scale it to unit Euclidean norm, so that Pearson's r of two rows is their dot product.

    A constant row has no direction: it becomes NaN, and so does every correlation with it.
    """
    values = _float(values)
    centred = values - values.mean(dim=1, keepdim=True)
    norm = centred.norm(dim=1, keepdim=True)
    return centred / torch.where(norm > 0, norm, torch.nan)


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson's r of each pair of rows of ``a`` and ``b`` ``(N, D)`` -> ``(N,)``; NaN where a row is constant."""
    return (standardize_rows(a) * standardize_rows(b)).sum(dim=1)


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman's rho (Pearson's r of average ranks) of each pair of rows ``(N, D)`` -> ``(N,)``."""
    return pearson(average_ranks(a), average_ranks(b))
