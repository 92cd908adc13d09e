"""Runs side by side (``xaitrust compare``): the same verdict and scorecard per run, and the differences between
runs with paired statistics where the images are the same.

A run is the folder of a ``benchmark`` or ``calibrate-to-interpret`` run (its ``config.toml`` and the tidy per-image
``results.csv``); one of its models is compared (``model``, default the uncalibrated one), so two runs can hold two
models, two calibrations or two data sets. The first run is the reference. Two runs explain the same images when
their data keys (``DATA_KEYS``) are equal; their rows are then paired by metric, method and image (``sample``, the
dataset index) and, per metric and method, ``d_i = other_i - reference_i`` is tested (``paired_test``, two-sided),
with Holm's correction over every (metric, method) comparison of the pair of runs (``holm``). A difference is
"better" or "worse" (direction-aware, ``Metric.higher_is_better``) when its adjusted p-value is below ``alpha``, else
"not resolved". Runs on different images are only shown side by side: pairing them by index would compare unrelated
images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..errors import XaitrustError
from ..evaluation import available_metrics
from ..protocols.config import read_toml
from ..statistics import holm, paired_test
from .html import Headline, Section, write_report
from .summary import write_summary
from .text import interval_text

#: Protocols whose run folders hold per-image scores of explanation methods (``results.csv``).
COMPARABLE = ("benchmark", "calibrate-to-interpret")
#: Config keys that decide which images a run explains: equal keys, same images.
DATA_KEYS = ("dataset", "data_root", "dataset_options", "test_size", "calibration_size", "n_images", "seed")


@dataclass(frozen=True)
class ComparedRun:
    """One run of a comparison: its ``label``, folder, resolved ``config``, all its per-image ``results`` and the
    ``model`` compared."""

    label: str
    path: Path
    config: dict
    results: pd.DataFrame
    model: str

    @property
    def rows(self) -> pd.DataFrame:
        """The per-image rows of the compared model."""
        return self.results[self.results["model"] == self.model]


def read_run(path: str | Path, model: str, label: str | None = None) -> ComparedRun:
    """The run in folder ``path``, checked: a finished run of a ``COMPARABLE`` protocol holding ``model``."""
    path = Path(path)
    config_file, results_file = path / "config.toml", path / "results.csv"
    if not config_file.is_file():
        raise XaitrustError(f"{path} is not a run folder (no config.toml): give folders written by xaitrust run")
    config = read_toml(config_file)
    protocol = config.get("protocol", "")
    if protocol not in COMPARABLE:
        raise XaitrustError(f"{path} is a {protocol or 'unknown'} run; compare takes runs of "
                            f"{' or '.join(COMPARABLE)}, which score explanation methods image by image")
    if not results_file.is_file():
        raise XaitrustError(f"{path} has no results.csv: the run has not finished; rerun it to complete it")
    results = pd.read_csv(results_file)
    models = list(dict.fromkeys(results["model"]))
    if model not in models:
        raise XaitrustError(f"{path} has no model {model!r}; its models: {', '.join(models)} (choose with --model)")
    return ComparedRun(label or path.name, path, config, results, model)


def same_images(first: ComparedRun, second: ComparedRun) -> bool:
    """Whether the two runs explain the same images (equal ``DATA_KEYS``)."""
    return all(first.config.get(key) == second.config.get(key) for key in DATA_KEYS)


def paired_differences(reference: ComparedRun, other: ComparedRun, *, alpha: float = 0.05,
                       test: str = "t") -> pd.DataFrame:
    """Per registered metric and method present in both runs: the means of both, the mean paired difference
    ``other - reference`` over the images both scored, its 95% interval, p-value, Holm-adjusted p-value and outcome
    (module docstring). Empty when the runs explain different images."""
    columns = ["metric", "method", "reference", "other", "difference", "low", "high", "n", "p_value", "p_adjusted",
               "outcome"]
    if not same_images(reference, other):
        return pd.DataFrame(columns=columns)
    directions = {metric.name: metric.higher_is_better for metric in available_metrics()}
    keys = ["metric", "method", "sample"]
    first = reference.rows[keys + ["value"]]
    second = other.rows[keys + ["value"]]
    joined = first.merge(second, on=keys, suffixes=("_reference", "_other"))
    joined = joined[joined["metric"].isin(directions)]
    rows = []
    for (metric, method), group in joined.groupby(["metric", "method"], sort=True):
        result = paired_test(group["value_other"], group["value_reference"], test=test)
        rows.append({"metric": metric, "method": method, "reference": group["value_reference"].mean(),
                     "other": group["value_other"].mean(), "difference": result.difference, "low": result.low,
                     "high": result.high, "n": result.n, "p_value": result.p_value})
    table = pd.DataFrame(rows, columns=columns[:-2])
    table["p_adjusted"] = holm(table["p_value"].to_numpy()) if len(table) else []
    resolved = table["p_adjusted"] < alpha
    improved = (table["difference"] > 0) == table["metric"].map(directions)
    table["outcome"] = "not resolved"
    table.loc[resolved & improved, "outcome"] = "better"
    table.loc[resolved & ~improved, "outcome"] = "worse"
    return table


def difference_lines(reference: ComparedRun, other: ComparedRun, table: pd.DataFrame, alpha: float) -> list[str]:
    """Plain sentences on one pair of runs: how many method x metric scores moved, and the largest moves."""
    if not same_images(reference, other):
        keys = [key for key in DATA_KEYS if reference.config.get(key) != other.config.get(key)]
        return [f"{other.label} and {reference.label} explain different images ({', '.join(keys)} differ): they are "
                "shown side by side, without paired tests."]
    counts = table["outcome"].value_counts()
    line = (f"{other.label} against {reference.label} ({other.model} model of each, {int(table['n'].max() or 0)} "
            f"shared images): {counts.get('better', 0)} of {len(table)} method x metric scores better, "
            f"{counts.get('worse', 0)} worse, the rest not resolved (paired tests, Holm-corrected at {alpha}).")
    lines = [line]
    for outcome in ("better", "worse"):
        moved = table[table["outcome"] == outcome]
        if len(moved):
            biggest = moved.loc[moved["p_adjusted"].idxmin()]
            difference = interval_text(biggest["difference"], biggest["low"], biggest["high"], 4, signed=True,
                                       significant=True)
            lines.append(f"Clearest {outcome}: {biggest['method']} on {biggest['metric']}, {biggest['reference']:.4g} "
                         f"-> {biggest['other']:.4g} (difference {difference}).")
    return lines


def write_comparison(runs: list[ComparedRun], out: str | Path, *, alpha: float = 0.05, test: str = "t") -> Path:
    """Write ``out/report.html``, ``out/differences.csv`` and ``out/summary.json`` for ``runs`` (the first is the
    reference); return the report's path."""
    from .scorecard import scorecard_html
    from .verdict import benchmark_verdict, verdict_html

    if len(runs) < 2:
        raise XaitrustError("compare needs at least two run folders")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    reference, verdicts, tables, answer, sections = runs[0], {}, [], [], []
    for other in runs[1:]:
        table = paired_differences(reference, other, alpha=alpha, test=test)
        tables.append(table.assign(reference_run=reference.label, other_run=other.label))
        lines = difference_lines(reference, other, table, alpha)
        answer.append(lines[0])
        sections.append(Section(f"{other.label} against {reference.label}", lines[1:] or lines, tables={
            "Paired differences, other - reference (95% t interval; p Holm-adjusted)": table} if len(table) else {}))
    for run in runs:
        verdict = benchmark_verdict(run.results, run.model, alpha=alpha, test=test)
        verdicts[run.label] = verdict
        sections.append(Section(f"Run {run.label}", [f"{run.path}, {run.config['protocol']} run, {run.model} model."],
                                blocks=[verdict_html(verdict), scorecard_html(run.results, run.model)]))
    differences = pd.concat(tables, ignore_index=True)
    differences.to_csv(out / "differences.csv", index=False)
    headline = Headline(f"How do the explanations of {', '.join(run.label for run in runs[1:])} differ from those "
                        f"of {reference.label}?", answer)
    write_summary(out / "summary.json", headline, runs={run.label: str(run.path) for run in runs},
                  verdicts=verdicts, differences=differences)
    config_text = "\n".join(f"{run.label}: {run.path} (model {run.model})" for run in runs)
    return write_report(out / "report.html", "xaitrust comparison", [], sections, config_text, headline=headline)
