"""Run every speed benchmark of ``benchmarks/`` in turn (``make bench``); each prints its own ratios.

Pass ``--quick`` for smaller image counts (a few minutes in all); without it, the sizes the speed goals name.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent

#: script -> extra arguments of the quick run
BENCHMARKS = {
    "bench_gradient_explainers.py": ["--images", "64", "--captum-images", "32", "--repeats", "1"],
    "bench_perturbation_explainers.py": ["--images", "64", "--rise-images", "8", "--captum-images", "16"],
    "bench_metrics.py": ["--n-images", "64", "--quantus-images", "32"],
    "bench_stability.py": ["--samples", "16"],
    "bench_consistency.py": ["--samples", "2000"],
    "bench_evaluate.py": ["--images", "16", "--repeats", "2"],
    "bench_peer_metrics.py": ["--images", "8"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller image counts")
    args = parser.parse_args()
    failed = []
    for script, quick_args in BENCHMARKS.items():
        print(f"\n=== {script} ===", flush=True)
        command = [sys.executable, str(HERE / script), *(quick_args if args.quick else [])]
        if subprocess.run(command).returncode != 0:
            failed.append(script)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
