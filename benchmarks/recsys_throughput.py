"""Recommender meta-training throughput (users per second): vmap over the users of a meta-batch vs a per-user
loop, for MeLU and for meta-learned MF.

    python benchmarks/recsys_throughput.py [--json] [--repeats 5] [--batch 32] [--steps 1 5]

One meta-iteration is one ``meta_gradient`` call of MeLU (ANIL on the MeLU network, regression; ``--steps``
local updates) or of meta-learned MF (algorithm ridge on MetaMF: the closed-form fold-in, second order through
the solve) on a meta-batch of users drawn from the shipped config's training state (synthetic MovieLens-1M-format data,
no download). Each (steps, strategy) runs in a fresh worker process (one warm-up, then the median of
``--repeats`` iterations), with its peak RSS above the RSS before the warm-up. Run on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

import torch

from fastadapt.algorithms import meta_gradient
from fastadapt.training import build_experiment, resolve_config
from meta_throughput import reset_peak, run_worker, status_mb

STRATEGIES = ("loop", "vmap")


def worker(key: str, strategy: str, batch_size: int, repeats: int) -> dict[str, Any]:
    if key == "metamf":
        config = resolve_config("movielens/metamf", [f"training.meta_batch_size={batch_size}"])
    else:
        steps = int(key.removeprefix("melu_"))
        config = resolve_config(
            "movielens/melu", [f"algorithm.inner_steps={steps}", f"training.meta_batch_size={batch_size}"]
        )
    experiment = build_experiment(config)
    algorithm = experiment.train_algorithm
    params = {k: v.requires_grad_() for k, v in algorithm.init_params().items()}
    generator = torch.Generator().manual_seed(0)
    batches = [experiment.sources["train"].sample_batch(batch_size, generator) for _ in range(repeats + 1)]
    reset_peak()
    base = status_mb("VmRSS")
    times = []
    for batch in batches:
        start = time.perf_counter()
        meta_gradient(algorithm, params, batch, strategy)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times[1:])
    return {"users_per_s": batch_size / seconds, "s_per_iter": seconds, "peak_mb": status_mb("VmHWM") - base}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32, help="users per meta-batch")
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 5], help="local update steps")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--worker", nargs=2, metavar=("KEY", "STRATEGY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        key, strategy = args.worker
        print("RESULT " + json.dumps(worker(key, strategy, args.batch, args.repeats)))
        return
    report: dict[str, Any] = {}
    for key in [f"melu_{steps}" for steps in args.steps] + ["metamf"]:
        entry = {
            s: run_worker(__file__, [key, s, "--batch", str(args.batch), "--repeats", str(args.repeats)], args.timeout)
            for s in STRATEGIES
        }
        if all("users_per_s" in entry[s] for s in STRATEGIES):
            entry["vmap_speedup"] = entry["vmap"]["users_per_s"] / entry["loop"]["users_per_s"]
        report[key] = entry
        print(f"{key}: {entry}", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(report))
        return
    for key, entry in report.items():
        for s in STRATEGIES:
            row = entry[s]
            if "error" in row:
                print(f"{key:8s} {s:5s} error: {row['error']}")
            else:
                print(f"{key:8s} {s:5s} {row['users_per_s']:9.1f} users/s {row['peak_mb']:7.0f} MB")
        if "vmap_speedup" in entry:
            print(f"{key:8s} vmap / loop: {entry['vmap_speedup']:.2f}x")


if __name__ == "__main__":
    main()
