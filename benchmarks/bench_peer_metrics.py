"""Every registered metric Quantus 0.6 also has, timed on the same work: xaitrust against Quantus, and against the
bare model passes the metric's definition needs.

Both libraries get the same model (the "quick" Fashion-MNIST CNN, trained and cached on first use), the same 28x28
test images, classes (the model's predictions), saliency attributions and maps (abs-sum), masks (pixels above 0.1)
and explainer (xaitrust's saliency, which Quantus calls as its ``explain_func``), and matched settings: the same
number of perturbations, steps, neighbours or samples (``cases``). Quantus sees all images as one batch
(``batch_size`` = the number of images), as xaitrust's metrics do. xaitrust runs the registered metric
(``Metric.compute``) with 256 masked images per forward pass and 256 images per explainer call.

The bare passes are what the definition needs from the model and nothing else: ``forward`` no-grad passes and
``explained`` gradient passes (forward and backward of the explained score) per image, in chunks of 256 images
already in memory. The ratio xaitrust / bare is what xaitrust spends beyond them (building perturbed images, ranking,
statistics); a metric of the maps alone has no bare pass. Quantus / bare (``quantus_ratio``) bounds the speed-up where
the model passes dominate, since xaitrust cannot beat the bare passes. The ``passes`` column gives the images xaitrust
sent through the model (no-grad / gradient, counted by a hook) over those the definition needs.

Goals: never slower than Quantus, a median speed-up of at least 5x, and within 1.2x of the bare passes. Rows whose
work differs by definition (``same_work=False``: Quantus computes something cheaper) are shown but left out of the
summary. Each timing is the best of ``--repeats`` runs, the three kinds interleaved, after one warm-up of both
libraries on two images; a call under ``SHORT`` seconds is repeated and timed on average. Quantus's random draws come
from NumPy's generator seeded 0 before each call.

Writes ``peer_metrics.csv`` and ``peer_metrics.md`` to ``--out`` (default ``benchmarks/results``).

Run: ``.venv/bin/python benchmarks/bench_peer_metrics.py [--images 32] [--repeats 1] [--threads 1] [--clock wall|cpu]
[--only NAME ...]``
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import quantus
import torch

from xaitrust.chunks import chunk_slices
from xaitrust.data import load_dataset
from xaitrust.evaluation import MetricInputs, SharedWork, get_metric
from xaitrust.explainers import get_explainer
from xaitrust.explainers.reduce import reduce_attributions
from xaitrust.metrics.localisation_peers import make_mosaics
from xaitrust.perturb.segments import superpixel_segmentation
from xaitrust.training import get_trained_model
from xaitrust.training.degrade import parameterized_layers
from xaitrust.validation import outside_unit_range_allowed

#: Images per forward pass of the masked-image metrics, per explainer call, and per bare pass.
BATCH = 256
#: The score the explanations explain, and that the metrics measure.
OUTPUT = "probability"
SALIENCY = get_explainer("saliency")
GOALS = {"speed_up": 5.0, "ratio": 1.2}
#: Calls shorter than this are repeated to fill it and timed on average.
SHORT = 0.2
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
RESULTS = Path(__file__).parent / "results"


@dataclass
class Data:
    """What both libraries are given."""

    model: torch.nn.Module
    x: torch.Tensor
    target: torch.Tensor
    attributions: torch.Tensor
    maps: torch.Tensor
    masks: torch.Tensor
    mosaics: dict  # Focus: x, maps, masks, and which tiles show the target

    def subset(self, n: int) -> Data:
        mosaics = {key: value[:n] for key, value in self.mosaics.items()}
        return Data(self.model, self.x[:n], self.target[:n], self.attributions[:n], self.maps[:n], self.masks[:n],
                    mosaics)


@dataclass(frozen=True)
class Case:
    """One metric of both libraries with matched settings.

    Attributes:
        metric: the registered xaitrust name; ``params`` its ``metric_params``.
        peer: the Quantus class; ``peer_params`` its constructor's arguments (``disable_warnings`` added).
        forward, explained: the no-grad and gradient passes per image the definition needs, or a function of the data
            giving the total no-grad passes (``explained`` then 0).
        mosaics: run on the Focus mosaics instead of the images.
        same_work: False where Quantus computes something cheaper by definition (left out of the summary).
        note: how the two runs differ.
    """

    metric: str
    params: dict
    peer: str
    peer_params: dict
    forward: int | Callable[[Data], int] = 0
    explained: int = 0
    mosaics: bool = False
    same_work: bool = True
    note: str = ""


def superpixel_passes(data: Data) -> int:
    """IROF's passes: the clean image and one per SLIC superpixel (xaitrust's segmentation) of each image."""
    ids = superpixel_segmentation(data.x, 100).ids.flatten(1)
    return int((ids.amax(dim=1) + 2).sum())


def cases(pixels: int, width: int, layers: int) -> list[Case]:
    """The matched cases for images of ``pixels`` pixels, ``width`` columns, and a model of ``layers`` weight layers."""
    neighbours = 10
    half = pixels // 2
    shifts = tuple(-width + step * ((2 * width + 1) // 7) for step in range(1, 8))  # Quantus's nr_steps=7
    uncorrected = {"normalise": False, "abs": False}
    return [
        # faithfulness
        Case("faithfulness_correlation", {"n_runs": 100, "subset_size": 224, "baseline": "black"},
             "FaithfulnessCorrelation", {"nr_runs": 100, "subset_size": 224, "perturb_baseline": "black",
                                         "return_aggregate": False, **uncorrected}, forward=101),
        Case("mu_fidelity", {"n_subsets": 100, "subset_fraction": 224 / pixels, "baseline": 0.0},
             "FaithfulnessCorrelation", {"nr_runs": 100, "subset_size": 224, "perturb_baseline": "black",
                                         "return_aggregate": False, **uncorrected}, forward=101),
        Case("faithfulness_estimate", {"replacement": "black"},
             "FaithfulnessEstimate", {"features_in_step": 1, "perturb_baseline": "black", **uncorrected},
             forward=pixels + 1),
        Case("monotonicity", {"features_in_step": 8, "replacement": "black"},
             "Monotonicity", {"features_in_step": 8, "perturb_baseline": "black", **uncorrected},
             forward=-(-pixels // 8), note="Quantus never puts the pixels back (same passes)"),
        Case("monotonicity_correlation", {"n_samples": 2, "replacement": "uniform"},
             "MonotonicityCorrelation", {"nr_samples": 2, "features_in_step": 1, "perturb_baseline": "uniform",
                                         **uncorrected}, forward=1 + 2 * pixels),
        Case("infidelity", {"n_squares": 4 * (width // 4) ** 2, "max_side": 4},
             "Infidelity", {"n_perturb_samples": 4, "perturb_patch_sizes": [4], "perturb_baseline": "black",
                            **uncorrected}, forward=1 + 4 * (width // 4) ** 2,
             note="random squares vs Quantus's cumulative 4x4 patches"),
        Case("sensitivity_n", {"n_subsets": half // 7},
             "SensitivityN", {"n_max_percentage": 0.5, "features_in_step": 1, "return_aggregate": False,
                              **uncorrected}, forward=1 + 7 * (half // 7),
             note="7 subset sizes x subsets vs Quantus's cumulative removal (same passes)"),
        Case("region_perturbation", {"patch_size": 4, "steps": (width // 4) ** 2, "replacement": "uniform"},
             "RegionPerturbation", {"patch_size": 4, "regions_evaluation": (width // 4) ** 2,
                                    "perturb_baseline": "uniform", **uncorrected}, forward=1 + (width // 4) ** 2),
        Case("selectivity", {"patch_size": 4, "replacement": "black"},
             "Selectivity", {"patch_size": 4, "perturb_baseline": "black", **uncorrected},
             forward=1 + (width // 4) ** 2),
        Case("irof", {"n_segments": 100}, "IROF", {"perturb_baseline": "mean", "return_aggregate": False,
                                                   **uncorrected},
             forward=superpixel_passes, note="SLIC settings differ (segment counts)"),
        Case("road_morf", {"noise": 0.01}, "ROAD", {"noise": 0.01, **uncorrected}, forward=50),
        Case("deletion_area", {"steps": 98, "replacement": "zero"},
             "PixelFlipping", {"features_in_step": 8, "perturb_baseline": "black", **uncorrected}, forward=99),
        # axiomatic and complexity
        Case("completeness_axiom", {"baseline": "zero"},
             "Completeness", {"perturb_baseline": "black", **uncorrected}, forward=2),
        Case("non_sensitivity", {"n_samples": 1},
             "NonSensitivity", {"features_in_step": 1, "perturb_baseline": "black"}, forward=1 + pixels),
        Case("input_invariance", {"shift": -1.0}, "InputInvariance", {"input_shift": -1}, explained=2,
             note="Quantus shifts the bias of the model's first child, which must be a convolution"),
        Case("sparseness", {}, "Sparseness", {}),
        Case("complexity", {}, "Complexity", {}),
        Case("effective_complexity", {"steps": 100, "n_samples": 4}, "EffectiveComplexity", {}, forward=401,
             same_work=False, note="Quantus counts non-zero map values (no model pass)"),
        # localisation
        Case("top_k_intersection", {"k": round(0.02 * pixels)}, "TopKIntersection", {"k": round(0.02 * pixels)}),
        Case("relevance_rank_accuracy", {}, "RelevanceRankAccuracy", {}),
        Case("relevance_mass_accuracy", {}, "RelevanceMassAccuracy", {}),
        Case("roc_auc", {}, "AUC", {}),
        Case("localization", {}, "AttributionLocalisation", {"abs": False, "positive_attributions": True}),
        Case("pointing_game", {}, "PointingGame", {}),
        Case("focus", {}, "Focus", {}, mosaics=True),
        # robustness
        Case("local_lipschitz", {"n_neighbours": neighbours, "radius": 0.05},
             "LocalLipschitzEstimate", {"nr_samples": neighbours, "perturb_std": 0.05}, explained=1 + neighbours),
        Case("max_sensitivity", {"n_neighbours": neighbours, "radius": 0.2},
             "MaxSensitivity", {"nr_samples": neighbours, "lower_bound": 0.2}, explained=1 + neighbours),
        Case("avg_sensitivity", {"n_neighbours": neighbours, "radius": 0.2},
             "AvgSensitivity", {"nr_samples": neighbours, "lower_bound": 0.2}, explained=1 + neighbours),
        Case("continuity", {"shifts": shifts}, "Continuity", {"nr_steps": 7}, explained=1 + len(shifts)),
        *(Case(f"relative_{kind}_stability", {"n_neighbours": neighbours},
               f"Relative{kind.title()}Stability", {"nr_samples": neighbours, **options},
               forward=1 + neighbours, explained=1 + neighbours)
          for kind, options in (("input", {}), ("output", {}), ("representation", {"layer_names": ["body.dropout"]}))),
        Case("prediction_consistency", {}, "Consistency", {}, forward=1,
             note="Quantus discretises by the signs of 5 values"),
        Case("sufficiency", {"rule": "map-distance"}, "Sufficiency", {"threshold": 0.6}, forward=1),
        # randomisation
        Case("mprt_cascading", {}, "MPRT", {"layer_order": "top_down"}, explained=1 + layers),
        Case("mprt_independent", {}, "MPRT", {"layer_order": "independent"}, explained=1 + layers),
        Case("smooth_mprt", {"n_samples": neighbours, "noise": 0.1},
             "SmoothMPRT", {"nr_samples": neighbours, "noise_magnitude": 0.1, "skip_layers": True,
                            "return_last_correlation": True}, explained=2 * neighbours,
             note="Quantus explains with captum's Saliency (quantus.explain)"),
        Case("efficient_mprt", {"n_bins": 100}, "EfficientMPRT", {}, explained=2),
        Case("random_logit", {}, "RandomLogit", {"num_classes": 10}, explained=2,
             note="xaitrust explains the target again; Quantus reuses the given maps"),
    ]


def quantus_explain(model, inputs, targets, **kwargs):
    """Quantus's ``explain_func``: xaitrust's saliency of the explained score, ``(B, 1, H, W)``."""
    with outside_unit_range_allowed():  # neighbours leave [0, 1]
        return SALIENCY(model, torch.as_tensor(inputs), torch.as_tensor(targets), OUTPUT).numpy()


def run_xaitrust(case: Case, data: Data) -> torch.Tensor:
    """The registered metric on fresh shared work (nothing remembered from an earlier run)."""
    if case.mosaics:  # Focus reads the maps and masks only
        mosaics = data.mosaics
        inputs = MetricInputs(data.model, mosaics["x"], torch.zeros(len(mosaics["x"]), dtype=torch.long),
                              maps=mosaics["maps"], masks=mosaics["masks"], work=SharedWork())
    else:
        inputs = MetricInputs(data.model, data.x, data.target, output=OUTPUT, batch_size=BATCH, maps=data.maps,
                              attributions=data.attributions, explainer=SALIENCY, masks=data.masks,
                              work=SharedWork())
    return get_metric(case.metric).compute(inputs, case.params)


def run_quantus(case: Case, data: Data):
    reads = get_metric(case.metric).needs
    attributions = data.attributions if "attributions" in reads else data.maps[:, None]
    call = {"model": data.model, "x_batch": data.x.numpy(), "y_batch": data.target.numpy(),
            "a_batch": attributions.numpy(), "device": "cpu", "batch_size": len(data.x),
            "softmax": OUTPUT == "probability"}
    if "masks" in reads:
        call["s_batch"] = data.masks[:, None].numpy().astype(float)
    if case.mosaics:
        call.update(x_batch=data.mosaics["x"].numpy(), y_batch=np.zeros(len(data.mosaics["x"]), dtype=int),
                    a_batch=data.mosaics["maps"][:, None].numpy(), custom_batch=data.mosaics["tiles"],
                    s_batch=None)
    if case.peer == "SmoothMPRT":
        call.update(explain_func=quantus.explain, explain_func_kwargs={"method": "Saliency"})
    elif "explainer" in reads:
        call["explain_func"] = quantus_explain
    np.random.seed(0)
    with contextlib.redirect_stdout(io.StringIO()):  # some Quantus metrics print warnings whatever disable_warnings
        return getattr(quantus, case.peer)(disable_warnings=True, **case.peer_params)(**call)


def run_bare(data: Data, n_forward: int, n_explained: int) -> None:
    """``n_forward`` no-grad passes and ``n_explained`` gradient passes of the explained score, ``BATCH`` at a time."""
    repeats = -(-BATCH // len(data.x))
    pool, classes = data.x.repeat(repeats, 1, 1, 1)[:BATCH], data.target.repeat(repeats)[:BATCH]
    with torch.no_grad():
        for part in chunk_slices(n_forward, BATCH):
            data.model(pool[: part.stop - part.start])
    for part in chunk_slices(n_explained, BATCH):
        size = part.stop - part.start
        inputs = pool[:size].clone().requires_grad_(True)
        scores = torch.softmax(data.model(inputs), dim=1).gather(1, classes[:size, None])
        torch.autograd.grad(scores.sum(), inputs)


class PassCounter:
    """Counts the images sent through a model (and its copies): no-grad and with gradients."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.counts = {"forward": 0, "explained": 0}
        counts = self.counts

        def count(module, args, output):  # a plain function: copies of the model (MPRT) share it
            counts["explained" if torch.is_grad_enabled() else "forward"] += len(args[0])

        self.handle = model.register_forward_hook(count)

    def remove(self) -> dict:
        self.handle.remove()
        return self.counts


def timed(clock, function, *args) -> tuple[float, int]:
    """Seconds per call of ``function(*args)`` on ``clock`` and the number of calls made: one, or, for a call under
    ``SHORT`` seconds, one more than fill ``SHORT``, timed on average (a few milliseconds are at the mercy of the
    scheduler)."""
    start = clock()
    function(*args)
    seconds = clock() - start
    if seconds >= SHORT:
        return seconds, 1
    calls = int(SHORT / max(seconds, 1e-6)) + 1
    start = clock()
    for _ in range(calls):
        function(*args)
    return (clock() - start) / calls, calls + 1


def quantus_seconds(case: Case, data: Data, clock) -> tuple[float, str]:
    """Seconds of one Quantus run, or infinity and why it failed (reported in the table: Quantus 0.6 fails on some
    inputs)."""
    try:
        return timed(clock, run_quantus, case, data)[0], ""
    except Exception as failure:  # noqa: BLE001  (Quantus's own error is the finding)
        return np.inf, f"Quantus failed: {type(failure).__name__}: {failure}"[:160]


def needed_passes(case: Case, data: Data) -> tuple[int, int]:
    if callable(case.forward):
        return case.forward(data), 0
    return case.forward * len(data.x), case.explained * len(data.x)


def measure(case: Case, data: Data, repeats: int, clock) -> dict:
    """One row: the best of ``repeats`` interleaved timings of xaitrust, Quantus and the bare passes."""
    warm = data.subset(2)
    run_xaitrust(case, warm)
    error = quantus_seconds(case, warm, clock)[1]
    n_forward, n_explained = needed_passes(case, data)
    best = {"xaitrust": np.inf, "quantus": np.inf, "bare": np.inf}
    counted = None
    for _ in range(repeats):
        counter = PassCounter(data.model)
        seconds, calls = timed(clock, run_xaitrust, case, data)
        counted = counted or {kind: count // calls for kind, count in counter.remove().items()}
        best["xaitrust"] = min(best["xaitrust"], seconds)
        if not error:
            seconds, error = quantus_seconds(case, data, clock)
            best["quantus"] = min(best["quantus"], seconds)
        if n_forward or n_explained:
            best["bare"] = min(best["bare"], timed(clock, run_bare, data, n_forward, n_explained)[0])
    quantus_s = best["quantus"] if np.isfinite(best["quantus"]) else np.nan
    bare_s = best["bare"] if np.isfinite(best["bare"]) else np.nan
    return {
        "metric": case.metric, "quantus": case.peer, "xaitrust_s": best["xaitrust"], "quantus_s": quantus_s,
        "speed_up": quantus_s / best["xaitrust"], "bare_s": bare_s, "ratio": best["xaitrust"] / bare_s,
        "quantus_ratio": quantus_s / bare_s,
        "passes": f"{counted['forward']}/{n_forward} + {counted['explained']}/{n_explained}",
        "same_work": case.same_work, "note": "; ".join(filter(None, [case.note, error])),
    }


def summary(table: pd.DataFrame) -> list[str]:
    compared = table[table["same_work"] & table["quantus_s"].notna()]
    if compared.empty:
        return ["no metric compared with Quantus"]
    slower = compared.loc[compared["speed_up"] < 1, "metric"].tolist()
    with_bare = table[table["bare_s"].notna()]
    slowest = with_bare.loc[with_bare["ratio"].idxmax()] if len(with_bare) else None
    over = with_bare.loc[with_bare["ratio"] > GOALS["ratio"], "metric"].tolist()
    weakest = compared.loc[compared["speed_up"].idxmin()]
    lines = [
        (f"median speed-up over Quantus {statistics.median(compared['speed_up']):.1f}x on {len(compared)} metrics "
         f"(goal >= {GOALS['speed_up']:g}x); lowest: {weakest['metric']} {weakest['speed_up']:.2f}x"),
        f"slower than Quantus: {', '.join(slower) or 'none'}",
    ]
    if slowest is not None:
        lines.append(f"slowest xaitrust / bare-pass ratio: {slowest['metric']} {slowest['ratio']:.2f} "
                     f"(goal <= {GOALS['ratio']:g}); above the goal: {', '.join(over) or 'none'}")
    return lines


def markdown(table: pd.DataFrame, header: list[str], lines: list[str]) -> str:
    shown = table.assign(
        xaitrust_s=table["xaitrust_s"].map("{:.3g}".format), quantus_s=table["quantus_s"].map("{:.3g}".format),
        speed_up=table["speed_up"].map("{:.1f}x".format), bare_s=table["bare_s"].map("{:.3g}".format),
        ratio=table["ratio"].map("{:.2f}".format), quantus_ratio=table["quantus_ratio"].map("{:.2f}".format),
    ).replace({"nan": "—", "nanx": "—"})
    columns = list(shown.columns)
    rows = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    rows += ["| " + " | ".join(str(value) for value in record) + " |" for record in shown.itertuples(index=False)]
    return "\n".join([*header, "", *rows, "", *(f"- {line}" for line in lines), ""])


def load(n_images: int) -> Data:
    model = get_trained_model("fashion-mnist", "cnn", profile="quick", progress=False).model.eval()
    test = load_dataset("fashion-mnist", split="test")
    x = test.x[:n_images]
    with torch.no_grad():
        target = model(x).argmax(dim=1)
    attributions = SALIENCY(model, x, target, OUTPUT)
    mosaics = make_mosaics(test.subset(torch.arange(2000)), per_class=-(-n_images // 10), seed=0)
    chosen = torch.arange(min(n_images, len(mosaics)))
    mosaic_maps = torch.rand(len(chosen), *mosaics.x.shape[2:], generator=torch.Generator().manual_seed(0))
    tiles = (mosaics.info["tile_labels"] == mosaics.y[:, None]).int()[chosen]
    return Data(model, x, target, attributions, reduce_attributions(attributions, "abs-sum"), x[:, 0] > 0.1,
                {"x": mosaics.x[chosen], "maps": mosaic_maps, "masks": mosaics.masks[chosen],
                 "tiles": [tuple(row) for row in tiles.tolist()]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=CLOCKS, default="wall",
                        help="wall time, or the process's CPU time (steadier on a machine other work loads)")
    parser.add_argument("--only", nargs="+", default=None, help="registered metric names to run (default: all)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of peer_metrics.csv and peer_metrics.md")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # Quantus's and the metrics' warnings about NaN values and parameters
    if not hasattr(np, "trapz"):
        np.trapz = np.trapezoid  # Quantus 0.6's IROF calls np.trapz, which NumPy 2 removed
    torch.set_num_threads(args.threads)
    data = load(args.images)
    selected = [case for case in cases(data.x[0, 0].numel(), data.x.shape[-1], len(parameterized_layers(data.model)))
                if args.only is None or case.metric in args.only]
    header = [
        f"# xaitrust against Quantus {quantus.__version__} and the bare passes",
        "",
        (f"{args.images} Fashion-MNIST test images (28x28), {args.threads} torch thread(s), {args.clock} clock, "
         f"best of {args.repeats}, "
         f"torch {torch.__version__}; load average at the start {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs."),
        f"Command: `{' '.join([Path(sys.executable).name, *sys.argv])}`",
    ]
    print("\n".join(header[2:]), flush=True)
    print(f"{'metric':34s} {'xaitrust s':>10s} {'Quantus s':>10s} {'speed-up':>9s} {'bare s':>8s} {'ratio':>6s} "
          f"{'Q ratio':>7s}  passes (no-grad + gradient: xaitrust/needed)", flush=True)
    rows = []
    for case in selected:
        row = measure(case, data, args.repeats, CLOCKS[args.clock])
        rows.append(row)
        print(f"{row['metric']:34s} {row['xaitrust_s']:10.3g} {row['quantus_s']:10.3g} {row['speed_up']:8.1f}x "
              f"{row['bare_s']:8.3g} {row['ratio']:6.2f} {row['quantus_ratio']:7.2f}  {row['passes']}  {row['note']}",
              flush=True)
    table = pd.DataFrame(rows)
    lines = summary(table)
    print("\n".join(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "peer_metrics.csv", index=False)
    (args.out / "peer_metrics.md").write_text(markdown(table, header, lines))
    print(f"written: {args.out / 'peer_metrics.csv'}, {args.out / 'peer_metrics.md'}")


if __name__ == "__main__":
    main()
