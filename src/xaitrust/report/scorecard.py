"""The scorecard one looks at: methods x metrics as a coloured grid, one per model.

Each cell shows a method's mean on a metric and its significance rank (``xaitrust.statistics.significance_ranks``:
one plus the number of methods significantly better on the same images, paired tests Holm-corrected over all pairs of
the metric), written ``=3`` when methods share it (the sample does not tell them apart). Its background colour follows
the rank within the metric, direction-aware: green for rank 1, red for the worst rank of the column, shades between
(hue ``120 * (1 - (rank - 1) / (worst - 1))``); a column whose methods all share rank 1 is yellow (nothing resolved).
Hovering a cell shows the mean, its 95% Student-t interval (``mean_interval``) and n. Control rows (maps independent
of the model) are set apart in grey italics.
"""

from __future__ import annotations

import html

import pandas as pd

from ..evaluation import available_metrics, get_metric
from ..protocols.scoring import CONTROLS, SCORECARD_METRICS
from ..statistics import mean_interval
from .text import interval_text
from .verdict import WRAP, method_ranks, per_image, rank_label

#: Background of a column in which no method is told apart from another.
UNRESOLVED = "#fff2cc"
#: Background of a control row's name.
CONTROL_BACKGROUND = "#e8e8e8"


def metric_header(metric) -> str:
    """A column title that wraps: the metric's name with spaces, and an arrow to its better direction."""
    return f"{metric.name.replace('_', ' ')} {'↑' if metric.higher_is_better else '↓'}"


def scorecard_metrics(results: pd.DataFrame, model: str, metrics=None) -> list:
    """``metrics`` (registry names, ``path/to/file.py:Name`` or ``Metric``) as ``Metric``; by default every
    registered metric with rows on ``model``, the scorecard's first, in the order of ``SCORECARD_METRICS``."""
    if metrics is not None:
        return [get_metric(metric) for metric in metrics]
    present = set(results.loc[results["model"] == model, "metric"])
    registered = [metric.name for metric in available_metrics() if metric.name in present]
    ordered = [*(name for name in SCORECARD_METRICS if name in registered),
               *(name for name in registered if name not in SCORECARD_METRICS)]
    return [get_metric(name) for name in ordered]


def scorecard_table(results: pd.DataFrame, model: str, metrics=None, *, alpha: float = 0.05, test: str = "t"
                    ) -> pd.DataFrame:
    """One row per (metric, method) of ``model`` with values: the metric (of ``scorecard_metrics``, in that
    order), ``higher_is_better``, the method, its ``mean`` with the 95% interval ``low``-``high`` over ``n``
    images, and its significance ``rank`` within the metric (``label``: ``"=3"`` when shared; none without a finite
    value). Methods in the order of the results."""
    rows = []
    for metric in scorecard_metrics(results, model, metrics):
        table = per_image(results, model, metric.name)
        if table.empty:
            continue
        ranks = method_ranks(table, metric.higher_is_better, alpha=alpha, test=test)
        for method in table.columns:
            interval = mean_interval(table[method])
            rows.append({"model": model, "metric": metric.name, "higher_is_better": metric.higher_is_better,
                         "method": method, "mean": interval.mean, "low": interval.low, "high": interval.high,
                         "n": interval.n, "rank": ranks.get(method), "label": rank_label(ranks.get(method), ranks)})
    columns = ["model", "metric", "higher_is_better", "method", "mean", "low", "high", "n", "rank", "label"]
    return pd.DataFrame(rows, columns=columns).astype({"rank": "Int64"})


def rank_colour(rank, worst: int) -> str:
    """The CSS background of a cell of significance ``rank`` in a column whose worst rank is ``worst`` (module
    docstring)."""
    if worst <= 1:
        return UNRESOLVED
    return f"hsl({120 * (1 - (rank - 1) / (worst - 1)):.0f}, 60%, 80%)"


def _cell(row, worst) -> str:
    if row is None or pd.isna(row["rank"]):
        return "<td class='muted'>–</td>"
    mean = interval_text(row["mean"], row["low"], row["high"], 4, significant=True)
    direction = "higher" if row["higher_is_better"] else "lower"
    title = (f"{row['method']}, {row['metric']}: mean [95% CI] {mean}, n = {row['n']}; rank {row['label']} "
             f"({direction} is better)")
    return (f"<td style='background:{rank_colour(row['rank'], int(worst))}' title='{html.escape(title)}'>"
            f"{row['mean']:.3g}<br><small>{html.escape(row['label'])}</small></td>")


def scorecard_html(results: pd.DataFrame, model: str, metrics=None, *, alpha: float = 0.05, test: str = "t") -> str:
    """The grid of ``model``: one row per method (controls last, marked), one column per metric of
    ``scorecard_metrics`` that has values on it, cells coloured by significance rank (module docstring)."""
    metrics = {metric.name: metric for metric in scorecard_metrics(results, model, metrics)}
    table = scorecard_table(results, model, list(metrics.values()), alpha=alpha, test=test)
    if table.empty:
        return f"<p class='muted'>No scorecard metric has values on the {html.escape(model)} model.</p>"
    shown = [metrics[name] for name in pd.unique(table["metric"])]
    worst = table.groupby("metric")["rank"].max()
    cells = {(row["method"], row["metric"]): row for _, row in table.iterrows()}
    head = "".join(f"<th title='{html.escape(metric.description)}'>{html.escape(metric_header(metric))}</th>"
                   for metric in shown)
    body = []
    for method in sorted(pd.unique(table["method"]), key=lambda m: m in CONTROLS):
        name = (f"<td style='{WRAP}; background:{CONTROL_BACKGROUND}; font-style:italic'>{html.escape(method)} "
                "<small>(control)</small></td>" if method in CONTROLS
                else f"<td style='{WRAP}'>{html.escape(method)}</td>")
        row = "".join(_cell(cells.get((method, metric.name)), worst[metric.name]) for metric in shown)
        body.append(f"<tr>{name}{row}</tr>")
    return (f"<div class='table'><table style='width:100%; table-layout:fixed; font-size:0.75em'>"
            f"<colgroup><col style='width:13%'></colgroup><thead><tr><th>method</th>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>")
