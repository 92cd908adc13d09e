"""Time cross_fold_distances + MeGe + ReCo for k = 5 models and 10,000 samples of 28x28 maps (goal: < 10 s).

Wall time depends on what else runs on the machine; the CPU time printed beside it does much less.

Run: ``.venv/bin/python benchmarks/bench_consistency.py [--samples N] [--folds K] [--threads T]``.
"""

from __future__ import annotations

import argparse
import time

import torch

from xaitrust.metrics.consistency import cross_fold_distances, mege, reco, reco_auc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    k, n = args.folds, args.samples
    shared = torch.rand(n, args.size, args.size, generator=generator)
    maps = shared + 0.5 * torch.rand(k, n, args.size, args.size, generator=generator)
    labels = torch.randint(0, 10, (n,), generator=generator)
    wrong = torch.rand(k, n, generator=generator) < 0.1
    predictions = torch.where(wrong, (labels + 1) % 10, labels)
    folds = torch.arange(n) % k
    start, cpu_start = time.perf_counter(), time.process_time()
    sets = cross_fold_distances(maps, predictions, labels, folds, distance="spearman")
    middle = time.perf_counter()
    scores = mege(sets.s_eq), reco(sets.s_eq, sets.s_neq), reco_auc(sets.s_eq, sets.s_neq)
    end, cpu = time.perf_counter(), time.process_time() - cpu_start
    print(
        f"k={k} N={n} maps {args.size}x{args.size} threads={args.threads}: "
        f"cross_fold_distances {middle - start:.2f} s, MeGe+ReCo+ReCo_AUC {end - middle:.2f} s, total {end - start:.2f} s wall, {cpu:.2f} s CPU "
        f"(|S=|={len(sets.s_eq)}, |S!=|={len(sets.s_neq)}; MeGe={scores[0]:.3f} ReCo={scores[1]:.3f} ReCo_AUC={scores[2]:.3f})"
    )


if __name__ == "__main__":
    main()
