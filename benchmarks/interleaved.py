"""fastadapt against learn2learn in one process, interleaved, and each side with the other's pooling.

    python benchmarks/interleaved.py --learn2learn-source DIR [--configs maml_so_1 maml_so_5] [--tasks 16]
                                     [--repeats 5] [--json]

peers.py times each library in a fresh process, minutes apart, and on a 2-core CPU whose speed drifts by ±15 %
between runs that is more than the libraries differ. This script runs four meta-gradients of peers.py's cell
(its first ``--tasks`` tasks) in turn, ``--repeats`` times, in one process, and keeps each one's best time:

- ``fastadapt``: fastadapt's MAML on its Conv4 (``max_pool_2x2``, the default);
- ``fastadapt-torch-pool``: the same with torch's ``F.max_pool2d`` (the pool's own share of the speed-up);
- ``learn2learn``: learn2learn's MAML on the stock Conv4 its users build (``peers.StockConv4``);
- ``learn2learn-fastadapt-model``: learn2learn's MAML on fastadapt's Conv4 (the loop's share, with the model
  held equal).

It prints tasks/s and the ratios of fastadapt to each of the others.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch

import peers
from fastadapt.algorithms import meta_gradient


def variants(config: str, tasks: int) -> dict[str, Callable[[], object]]:
    algo, model, batch = peers.setup(config)
    _, steps, first_order = peers.CONFIGS[config]
    batch = next(batch.chunks(tasks))
    params = {name: value.requires_grad_() for name, value in algo.init_params().items()}
    stock = peers.StockConv4(model)

    def torch_pool() -> object:
        with peers.torch_pooling():
            return meta_gradient(algo, params, batch, "loop")

    return {
        "fastadapt": lambda: meta_gradient(algo, params, batch, "loop"),
        "fastadapt-torch-pool": torch_pool,
        "learn2learn": lambda: peers._peer_gradient("learn2learn", stock, batch, peers.LR, steps, first_order, False),
        "learn2learn-fastadapt-model": lambda: peers._peer_gradient(
            "learn2learn", model, batch, peers.LR, steps, first_order, False
        ),
    }


def measure(config: str, tasks: int, repeats: int) -> dict[str, object]:
    runs = variants(config, tasks)
    for run in runs.values():  # warm-up
        run()
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    speed = {name: tasks / seconds for name, seconds in best.items()}
    ratios = {f"fastadapt / {name}": speed["fastadapt"] / speed[name] for name in speed if name != "fastadapt"}
    return {"tasks_per_s": speed, "ratios": ratios}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--learn2learn-source", type=Path, help="an unpacked learn2learn sdist (see peers.py)")
    parser.add_argument("--configs", nargs="*", default=["maml_so_1", "maml_so_5"], choices=list(peers.CONFIGS))
    parser.add_argument("--tasks", type=int, default=16, help="tasks of peers.py's meta-batch of 32 (default 16)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.learn2learn_source:
        os.environ[peers.SOURCE_ENV] = str(args.learn2learn_source)
    if any(peers.CONFIGS[config][0] != "maml" for config in args.configs):
        parser.error("--configs: MAML cells only (learn2learn has no ANIL or iMAML here)")
    torch.set_num_threads(args.threads)
    report = {config: measure(config, args.tasks, args.repeats) for config in args.configs}
    if args.json:
        print(json.dumps(report))
        return
    for config, entry in report.items():
        for name, value in entry["tasks_per_s"].items():  # type: ignore[attr-defined]
            print(f"{config:10s} {name:28s} {value:6.2f} tasks/s")
        for name, value in entry["ratios"].items():  # type: ignore[attr-defined]
            print(f"{config:10s} {name:42s} {value:5.2f}x")


if __name__ == "__main__":
    main()
