"""Tidy result tables: one row per observation (sample x method x model x metric), and their summaries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..statistics import ci95_half_width

RESULT_COLUMNS = ("metric", "method", "model", "sample", "value")


def tidy_rows(values: torch.Tensor, *, metric: str, method: str = "", model: str = "", **extra) -> pd.DataFrame:
    """Per-sample values ``(N,)`` as tidy rows with the given labels (extra keyword arguments become columns)."""
    values = torch.as_tensor(values).detach().cpu().double().reshape(-1).numpy()
    table = pd.DataFrame(
        {"metric": metric, "method": method, "model": model, "sample": np.arange(len(values)), "value": values}
    )
    for key, value in extra.items():
        table[key] = value
    return table


def summarize(table: pd.DataFrame, by=("metric", "method", "model")) -> pd.DataFrame:
    """Mean, sample standard deviation (``ddof=1``), count and 95% confidence half-width of ``value`` per group.

    NaN values are ignored (``n`` counts the others). ``ci95`` is the Student-t half-width
    ``t_{0.975, n-1} * std / sqrt(n)`` (see ``ci95_half_width``), which stays honest for the few observations of
    e.g. a handful of seeds; it is NaN, like ``std``, for groups of fewer than two observations.
    """
    by = [column for column in by if column in table.columns]
    grouped = table.groupby(by, sort=False, dropna=False)["value"]
    summary = grouped.agg(mean="mean", std="std", n="count").reset_index()
    summary["ci95"] = ci95_half_width(summary["std"].to_numpy(), summary["n"].to_numpy())
    return summary


def pivot_summary(summary: pd.DataFrame, index=("method",), columns=("metric", "model")) -> pd.DataFrame:
    """Means as a wide table (e.g. methods x (metric, model)) for the report and the screen."""
    index = [c for c in index if c in summary.columns]
    columns = [c for c in columns if c in summary.columns and summary[c].nunique() > 1 or c == "metric"]
    return summary.pivot_table(index=index, columns=columns, values="mean", sort=False)
