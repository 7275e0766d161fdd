"""Torch threads on an idle and on a busy machine: the measurements behind ``training.threads``' default.

    python benchmarks/threads.py [--seconds 20] [--workloads digits_maml,sinusoid_maml] [--json]
    python benchmarks/threads.py --workloads omniglot_protonet_5w1s --idle-only data.root=../shared/data/omniglot

Each cell runs a fresh worker process (this script with ``--worker``) that builds a shipped config's experiment
and times its meta-iterations (``Trainer.meta_step``: sample a meta-batch, meta-gradient, Adam step) for
``--seconds`` after two warm-up iterations. Settings:

- threads: 1, or every core (``os.cpu_count()``, torch's default);
- OpenMP wait policy: torch's default (``OMP_WAIT_POLICY`` unset: threads spin at barriers for a while) or
  ``PASSIVE`` (threads sleep at once), set in the worker's environment before torch loads;
- machine: idle, or busy with one more process doing the same training with torch's default threads (what a
  second run, or a test suite, beside the first one looks like).

It prints meta-iterations per second of each cell and the ratio to one thread on the idle machine; all cells
are measured in one run, one at a time. Run it on a machine with nothing else running.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

WORKLOADS = ("digits_maml", "sinusoid_maml", "digits_protonet", "omniglot_protonet_5w1s")


def worker(config: str, seconds: float, overrides: list[str]) -> None:
    from fastadapt.training import Trainer, build_experiment, resolve_config

    experiment = build_experiment(resolve_config(config, overrides))
    trainer = Trainer(experiment, "/nonexistent", progress=False)  # meta_step writes nothing
    for _ in range(2):
        trainer.meta_step()
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        trainer.meta_step()
        steps += 1
    import torch

    print(json.dumps({"steps_per_s": steps / (time.perf_counter() - start), "threads": torch.get_num_threads()}))


def run_cell(
    config: str, threads: int, policy: str | None, busy: bool, seconds: float, overrides: list[str]
) -> dict[str, Any]:
    env = os.environ.copy()
    env.pop("OMP_WAIT_POLICY", None)
    env.pop("FASTADAPT_THREADS", None)
    load = None
    if busy:  # the other process: the same training, torch's default threads and wait policy
        load = subprocess.Popen(
            [sys.executable, __file__, "--worker", config, "--seconds", str(seconds * 10), *overrides],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        time.sleep(5.0)  # past its start-up, into its training loop
    cell_env = env | {"FASTADAPT_THREADS": str(threads)} | ({"OMP_WAIT_POLICY": policy} if policy else {})
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--worker", config, "--seconds", str(seconds), *overrides],
            env=cell_env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        if load is not None:
            load.kill()
            load.wait()
    row = json.loads(out.strip().splitlines()[-1])
    cell = {"config": config, "threads": threads, "policy": policy or "default", "busy": busy}
    return cell | row | {"load": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=20.0, help="timed seconds per cell")
    parser.add_argument("--workloads", default=",".join(WORKLOADS[:2]), help=f"shipped configs, from {WORKLOADS}")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--idle-only", action="store_true", help="skip the busy-machine cells")
    parser.add_argument("overrides", nargs="*", help="section.key=value overrides for every workload")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.seconds, args.overrides)
        return
    cores = os.cpu_count() or 1
    rows = []
    for config in args.workloads.split(","):
        for busy in (False,) if args.idle_only else (False, True):
            for threads in sorted({1, cores}):
                for policy in (None, "PASSIVE"):
                    rows.append(run_cell(config, threads, policy, busy, args.seconds, args.overrides))
                    print(f"  measured {rows[-1]}", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"meta-iterations per second ({cores} cores, {args.seconds:g} s per cell; ratio to 1 thread, idle)")
    print(f"{'config':16s} {'machine':7s} {'threads':>7s} {'OMP wait':>8s} {'it/s':>8s} {'ratio':>6s} {'load':>5s}")
    for row in rows:
        base = next(
            r["steps_per_s"]
            for r in rows
            if r["config"] == row["config"] and r["threads"] == 1 and r["policy"] == "default" and not r["busy"]
        )
        machine = "busy" if row["busy"] else "idle"
        print(
            f"{row['config']:16s} {machine:7s} {row['threads']:7d} {row['policy']:>8s} "
            f"{row['steps_per_s']:8.2f} {row['steps_per_s'] / base:6.2f} {row['load']:5.2f}"
        )


if __name__ == "__main__":
    main()
