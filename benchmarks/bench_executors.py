"""Wall time of ``roar`` and ``mege-reco`` on the Ray executor with two one-thread workers against the local executor
(one process, trainings on one thread), and whether both give byte-identical result files.

Each run is a fresh process with one torch thread for the driver's own work; the Ray run starts a local Ray instance
of ``--workers`` CPUs in that process, and its time includes the start. On Ray the trainings and the explanation and
scoring shards run as tasks (one thread each, as the local run computes them), side by side. The goal: the Ray
runs take at most 1 / 1.7 of the local runs' time. Needs the ``ray`` extra and an otherwise idle machine.

Run: ``.venv/bin/python benchmarks/bench_executors.py [--profile quick] [--workers 2] [--config FILE]
[--protocols roar mege-reco] [--out FOLDER]`` (quick: about 40 minutes on 2 idle cores; ``--profile smoke`` checks
that the script works in a few minutes).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: Runs one protocol in a fresh process: argv = protocol, profile, run folder, Ray workers (0: local), config file.
RUN = """\
import sys, torch
torch.set_num_threads(1)
protocol, profile, out, workers, config = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
if workers:
    import ray
    ray.init(num_cpus=workers, include_dashboard=False, logging_level="error")
from xaitrust.protocols import run_protocol
run_protocol(protocol, profile=profile, config_file=config or None, out=out,
             overrides={"executor": "ray"} if workers else {})
"""
#: The files compared between the two executors' runs.
RESULT_FILES = ("results.csv", "summary.csv")


def timed_run(protocol: str, profile: str, out: Path, workers: int, config: str) -> float:
    """Seconds of one complete run in a fresh process (its log goes to ``out.log``)."""
    began = time.perf_counter()
    with open(out.with_suffix(".log"), "w") as log:
        done = subprocess.run([sys.executable, "-c", RUN, protocol, profile, str(out), str(workers), config],
                              stdout=log, stderr=subprocess.STDOUT, check=False)
    if done.returncode:
        sys.exit(f"{protocol} ({'ray' if workers else 'local'}) failed; see {out.with_suffix('.log')}")
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick", choices=("smoke", "quick", "paper"))
    parser.add_argument("--protocols", nargs="+", default=["roar", "mege-reco"])
    parser.add_argument("--workers", type=int, default=2, help="Ray workers (CPUs of the local Ray instance)")
    parser.add_argument("--config", default="", help="TOML overriding the profile (e.g. a cut quick profile)")
    parser.add_argument("--out", default="", help="folder for the run folders and bench_executors.json "
                                                  "(default: a temporary folder)")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="bench-executors-"))
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for protocol in args.protocols:
        seconds = {executor: timed_run(protocol, args.profile, out / f"{protocol}-{executor}", workers, args.config)
                   for executor, workers in (("local", 0), ("ray", args.workers))}
        identical = all((out / f"{protocol}-local" / name).read_bytes() == (out / f"{protocol}-ray" / name).read_bytes()
                        for name in RESULT_FILES)
        rows.append({"protocol": protocol, "profile": args.profile, "local_s": round(seconds["local"], 1),
                     "ray_s": round(seconds["ray"], 1), "workers": args.workers,
                     "speed_up": round(seconds["local"] / seconds["ray"], 2), "identical_results": identical})
        print(f"{protocol:<10} local {seconds['local']:7.1f} s   ray ({args.workers} workers) {seconds['ray']:7.1f} s   "
              f"speed-up {seconds['local'] / seconds['ray']:.2f}x (goal >= 1.7x)   identical results: {identical}",
              flush=True)
    (out / "bench_executors.json").write_text(json.dumps(rows, indent=2))
    print(f"run folders and bench_executors.json: {out}")


if __name__ == "__main__":
    main()
