"""Calibration at a glance: the reliability diagrams of the models side by side, their calibration errors with
bootstrap intervals, and how each method's faithfulness scores moved under calibration beyond the random maps' move.

- **Reliability** (``reliability_figure``): the reliability diagram (``xaitrust.calibration.plots.draw_reliability``)
  of each model on the held-out images, the uncalibrated model first, side by side in one figure.
- **Calibration errors** (``calibration_errors``): the measures of ``xaitrust.calibration.summary.calibration_summary``
  as the calibration table reports them, with 95% percentile bootstrap intervals over the held-out images
  (``xaitrust.statistics.bootstrap_interval``) for those in ``RESAMPLED``: accuracy, the binned top-label ECE
  (15 equal-width bins; Naeini et al., 2015; Guo et al., 2017) and the NLL, each recomputed by its own estimator on
  every resample. The density ECE (Posocco & Bonnefoy, 2021) and the KL calibration error (Popordanoska et al.,
  2024) keep their estimate alone: resampling with replacement repeats images, and a repeated image is its own
  nearest neighbour, which breaks the KL estimator's leave-one-out bandwidth choice (on 2000 predictions of a
  calibrated 10-class source, three resamples gave 0.038, 0.065 and 0.043 against 0.004 on the sample itself);
  and on 2000 images one estimate takes about half a second (density) and seven seconds (KL) on one CPU thread,
  too slow to repeat a thousand times.
- **Moves beyond random** (``calibration_moves``): Calibrate to Interpret (Scafarto, Posocco & Bonnefoy, section
  4.4) scores the same random maps on the calibrated and the uncalibrated model as a control: random maps carry no
  information, so whatever their scores move by is calibration's change of the scale of the score every curve
  reads, and what a method's move shares with it is that change of scale, not a better map. So, per image ``i``
  scored by both,

      d_i = (s_method,cal(i) - s_method,uncal(i)) - (s_random,cal(i) - s_random,uncal(i))

  and the mean of ``d`` with its 95% Student-t interval (``xaitrust.statistics.mean_interval``); the move is
  resolved when the interval excludes 0. The random maps' own move ``s_random,cal(i) - s_random,uncal(i)`` is given
  alike.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from ..calibration.binned import ece
from ..calibration.plots import draw_reliability
from ..calibration.scores import accuracy, nll
from ..errors import XaitrustError
from ..evaluation import get_metric
from ..protocols.results import RESULT_COLUMNS
from ..statistics import bootstrap_interval, mean_interval
from .figures import plt, save_figure
from .html import Section
from .text import MISSING, interval_text

#: The measures of the calibration table bootstrapped over the images, with the estimator ``calibration_summary``
#: reports them by (its defaults: 15 equal-width bins for the ECE).
RESAMPLED = {"accuracy": accuracy, "ece": ece, "nll": nll}
#: Column headers of the calibration errors: each measure in words and whether higher is better.
MEASURES = {
    "accuracy": ("accuracy", True),
    "ece": ("binned ECE", False),
    "density_ece": ("density ECE", False),
    "kl_calibration_error": ("KL calibration error", False),
    "nll": ("NLL", False),
}
#: The faithfulness metrics whose moves under calibration are compared with the random maps' move.
FAITHFULNESS = ("deletion_area", "insertion_area", "mif_lif_area", "mu_fidelity", "better_than_random")
#: The method name of the random control.
CONTROL = "random"
#: Tolerance between the calibration table's estimates and the same estimates recomputed from the probabilities.
TOLERANCE = 1e-6


def reliability_figure(path, probabilities: dict[str, torch.Tensor], labels: torch.Tensor) -> Path:
    """The reliability diagram (``xaitrust.calibration.plots.draw_reliability``) of each model's
    ``probabilities[model]`` ``(N, K)`` against ``labels``, titled with the model's name, side by side in one figure
    (in the order given, the accuracy axes shared), written as a PNG to ``path``."""
    fig, axes = plt.subplots(2, len(probabilities), figsize=(4.5 * len(probabilities), 5.5), squeeze=False,
                             sharex=True, sharey="row", gridspec_kw={"height_ratios": [3, 1]})
    for (model, probs), (top, bottom) in zip(probabilities.items(), axes.T):
        draw_reliability(top, bottom, probs, labels, title=model)
    return save_figure(fig, path)


def _check_table(probabilities: dict, calibration_table: pd.DataFrame) -> pd.DataFrame:
    """The calibration table indexed by model, with one row per model of ``probabilities``."""
    if not probabilities:
        raise XaitrustError("give the held-out probabilities of at least one model (model -> (N, K))")
    if "model" not in calibration_table.columns or calibration_table["model"].duplicated().any():
        raise XaitrustError("calibration_table must have a 'model' column with one row per model, as "
                            "xaitrust.protocols.common.calibration_table writes it")
    table = calibration_table.set_index("model")
    if set(table.index) != set(probabilities):
        raise XaitrustError(f"calibration_table holds the models {sorted(table.index)} but probabilities hold "
                            f"{sorted(probabilities)}; give both for the same models")
    return table.loc[list(probabilities)]


def _bootstrap(estimator, probs: torch.Tensor, labels: torch.Tensor, n_bootstrap: int, seed: int):
    """The 95% percentile bootstrap interval of ``estimator(probs, labels)`` over resamples of the images."""
    def statistic(index) -> float:
        index = torch.from_numpy(index)
        return estimator(probs[index], labels[index])

    return bootstrap_interval(statistic, len(probs), n_resamples=n_bootstrap, seed=seed)


def calibration_errors(probabilities: dict[str, torch.Tensor], labels: torch.Tensor, calibration_table: pd.DataFrame,
                       *, seed: int = 0, n_bootstrap: int = 1000) -> pd.DataFrame:
    """One row per model and measure of ``calibration_table`` (``model``, ``measure``, ``estimate``, ``low``,
    ``high``, ``n``): the table's estimate and, for the measures of ``RESAMPLED``, the 95% percentile bootstrap
    interval over the ``n`` held-out images (``n_bootstrap`` resamples drawn from ``seed``, the same resamples for
    every model), else NaN bounds (see the module docstring). ``probabilities[model]`` ``(N, K)`` must be the
    predictions the table was computed from: the estimates of ``RESAMPLED`` are recomputed from them and must agree
    within ``TOLERANCE``."""
    table = _check_table(probabilities, calibration_table)
    labels = torch.as_tensor(labels).cpu()
    rows = []
    for model, probs in probabilities.items():
        probs = torch.as_tensor(probs).detach().cpu().double()
        for measure in table.columns:
            estimate = float(table.loc[model, measure])
            low = high = float("nan")
            if measure in RESAMPLED:
                estimator = RESAMPLED[measure]
                recomputed = estimator(probs, labels)
                if not abs(recomputed - estimate) <= TOLERANCE * max(1.0, abs(estimate)):
                    raise XaitrustError(
                        f"calibration_table gives {model}'s {measure} as {estimate:.6g} but its probabilities give "
                        f"{recomputed:.6g}; give the probabilities the table was computed from (float64 softmax of "
                        "the held-out logits)")
                low, high = _bootstrap(estimator, probs, labels, n_bootstrap, seed)
            rows.append({"model": model, "measure": measure, "estimate": estimate, "low": low, "high": high,
                         "n": len(probs)})
    return pd.DataFrame(rows)


def _check_results(results: pd.DataFrame) -> None:
    if not isinstance(results, pd.DataFrame) or not set(RESULT_COLUMNS) <= set(results.columns):
        raise XaitrustError(f"results must be the tidy per-image table with the columns {', '.join(RESULT_COLUMNS)}")


def _move(wide: pd.DataFrame, method: str, reference: str, model: str) -> pd.Series | None:
    """Per image, ``method``'s score on ``model`` minus on ``reference`` (None when either is missing)."""
    if (method, model) not in wide.columns or (method, reference) not in wide.columns:
        return None
    return wide[(method, model)] - wide[(method, reference)]


def calibration_moves(results: pd.DataFrame, reference: str, model: str, *, control: str = CONTROL,
                      metrics=FAITHFULNESS) -> pd.DataFrame:
    """How the scores of each method moved from model ``reference`` to ``model`` beyond the ``control`` method's
    move, on the same images (module docstring): one row per metric of ``metrics`` present in ``results`` and
    method (``metric``, ``method``, ``mean``, ``low``, ``high``, ``n``, ``resolved``), the control first with its own
    move, then the methods in the order they first appear in ``results``; nothing for a metric the control lacks on
    either model. ``results`` is the tidy per-image table (``RESULT_COLUMNS``); images are joined on ``sample``, and an
    image without a finite score in one of the four is left out of that mean."""
    _check_results(results)
    rows = results[results["metric"].isin(metrics) & results["model"].isin([reference, model])]
    if rows.duplicated(["metric", "method", "model", "sample"]).any():
        raise XaitrustError("results hold more than one value for a metric, method, model and sample; give the "
                            "per-image table with one row each")
    methods = [control] + [method for method in dict.fromkeys(rows["method"]) if method != control]
    table = []
    for metric in [name for name in metrics if name in set(rows["metric"])]:
        wide = rows[rows["metric"] == metric].pivot(index="sample", columns=["method", "model"], values="value")
        wide = wide.astype(float)
        random_move = _move(wide, control, reference, model)
        if random_move is None:
            continue
        for method in methods:
            own = _move(wide, method, reference, model)
            if own is None:
                continue
            interval = mean_interval(own if method == control else own - random_move)
            table.append({"metric": metric, "method": method, "mean": interval.mean, "low": interval.low,
                          "high": interval.high, "n": interval.n,
                          "resolved": bool(interval.low > 0 or interval.high < 0)})
    return pd.DataFrame(table, columns=["metric", "method", "mean", "low", "high", "n", "resolved"])


def errors_table(errors: pd.DataFrame) -> pd.DataFrame:
    """The calibration errors of ``calibration_errors`` as measures x models of ``estimate [low, high]`` text, each
    measure saying which direction is better."""
    def label(measure: str) -> str:
        words, higher = MEASURES.get(measure, (measure, None))
        return words if higher is None else f"{words} ({'higher' if higher else 'lower'} is better)"

    cells = errors.assign(text=[interval_text(r.estimate, r.low, r.high, 3, significant=True)
                                for r in errors.itertuples()],
                          measure=errors["measure"].map(label))
    table = cells.pivot(index="measure", columns="model", values="text")
    return table.loc[list(dict.fromkeys(cells["measure"])), list(dict.fromkeys(cells["model"]))].rename_axis(
        index=None, columns=None)


def moves_tables(moves: pd.DataFrame, control: str = CONTROL) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The moves of ``calibration_moves`` as two methods x metrics tables: whether each move is resolved, in the
    metric's ``better`` or ``worse`` direction, or ``no`` (``MISSING`` below two images); and the mean move with its
    interval as text. The control's row, first, is its own move."""
    def resolved(row) -> str:
        if row.n < 2:
            return MISSING
        if not row.resolved:
            return "no"
        return "better" if (row.mean > 0) == get_metric(row.metric).higher_is_better else "worse"

    def header(metric: str) -> str:
        return f"{metric} ({'higher' if get_metric(metric).higher_is_better else 'lower'} is better)"

    cells = moves.assign(
        method=moves["method"].where(moves["method"] != control, f"{control} (its own move)"),
        metric=moves["metric"].map(header), resolved=[resolved(r) for r in moves.itertuples()],
        move=[interval_text(r.mean, r.low, r.high, 2, signed=True, significant=True) for r in moves.itertuples()])
    rows, columns = list(dict.fromkeys(cells["method"])), list(dict.fromkeys(cells["metric"]))
    return tuple(cells.pivot(index="method", columns="metric", values=values).reindex(index=rows, columns=columns)
                 .fillna(MISSING).rename_axis(index=None, columns=None) for values in ("resolved", "move"))


def calibration_section(figures_dir: Path, probabilities: dict[str, torch.Tensor], labels: torch.Tensor,
                        calibration_table: pd.DataFrame, results: pd.DataFrame, seed: int = 0,
                        n_bootstrap: int = 1000) -> Section:
    """The "Calibration at a glance" section: the reliability diagrams of the models of ``probabilities`` (held-out
    predictions ``(N, K)``, the uncalibrated model first) against ``labels`` (``calibration-reliability.png`` in
    ``figures_dir``), their calibration errors with bootstrap intervals (``calibration_errors``, ``n_bootstrap``
    resamples from ``seed``), and per further model the moves of the faithfulness scores of ``results`` beyond the
    random maps' (``calibration_moves``)."""
    _check_results(results)
    reference, *calibrated = probabilities
    missing = [model for model in probabilities if model not in set(results["model"])]
    if missing:
        raise XaitrustError(f"results hold no rows of the models {missing}; name the models as the results do "
                            f"({sorted(set(results['model']))})")
    figure = reliability_figure(Path(figures_dir) / "calibration-reliability.png", probabilities, labels)
    errors = calibration_errors(probabilities, labels, calibration_table, seed=seed, n_bootstrap=n_bootstrap)
    n = len(torch.as_tensor(labels))
    measures = list(dict.fromkeys(errors["measure"]))
    resampled = [MEASURES[m][0] for m in RESAMPLED if m in measures]
    alone = [MEASURES.get(m, (m,))[0] for m in measures if m not in RESAMPLED]
    paragraphs = [
        f"Calibration errors on the {n} held-out images (lower is better, except accuracy), with 95% percentile "
        f"bootstrap intervals over the images ({n_bootstrap} resamples, seed {seed}) for "
        f"{', '.join(resampled) or 'none of them'} (the binned ECE groups the images in 15 equal-width bins of "
        "confidence)."
        + (f" No interval for {' and '.join(alone)}: resampling repeats images, which biases the KL estimator's "
           "leave-one-out choice of bandwidth, and the kernel estimators take too long to repeat a thousand times."
           if alone else "")]
    tables = {"Calibration errors on the held-out images (estimate [95% bootstrap interval])": errors_table(errors)}
    if CONTROL not in set(results["method"]):
        paragraphs.append(f"The scores' moves under calibration are not compared with the random maps' move: the "
                          f"results hold no method {CONTROL!r}; add it to the explainers to get the comparison.")
    for model in calibrated:
        moves = calibration_moves(results, reference, model)
        if not moves.empty:
            resolved, numbers = moves_tables(moves)
            tables[f"{reference} -> {model}: is the move beyond the random maps' resolved?"] = resolved
            tables[f"{reference} -> {model}: move beyond the random maps' move (mean [95% t interval])"] = numbers
    if len(tables) > 1:
        paragraphs.append(
            "How each method's faithfulness scores moved under calibration, beyond the move of the random maps: per "
            "image, (the method's score on the calibrated model minus on the uncalibrated one) minus (the same "
            "difference for the random maps), averaged over the images with its 95% Student-t interval; the first "
            "row is the random maps' own move. Random maps carry no information, so their move is the change of "
            "scale calibration gives every score; a method only became more (or less) faithful under calibration "
            "where its move beyond random's is resolved (the interval excludes 0) in the better (worse) direction "
            "(Calibrate to Interpret, section 4.4). The first table gives that verdict, the second the numbers.")
    paragraphs.append(
        "Reliability diagrams of the held-out images, the uncalibrated model first: per bin of confidence, the bar "
        "reaches the accuracy of its images and the gap to their mean confidence is coloured, light red above the bar "
        "where the confidence is higher (over-confident), yellow at the bar's top where it is lower "
        "(under-confident); the panel below gives the share of images per bin. The better calibrated a model, the "
        "closer its bars follow the diagonal.")
    return Section("Calibration at a glance", paragraphs, tables=tables, figures={
        f"Reliability diagrams on the held-out images: {', '.join(probabilities)}": figure})
