"""One process with every core against one process per core (torchrun, gloo): meta-training throughput.

    python benchmarks/distributed.py [--workloads digits_maml,sinusoid_maml] [--steps 40] [--json]
    python benchmarks/distributed.py --workloads omniglot_maml_5w1s data.root=../shared/data/omniglot

Each cell is a fresh launch: ``1x2`` is one process with two torch threads; ``2x1`` is ``torchrun --standalone
--nproc-per-node 2`` with one thread per process, each rank computing half of every meta-batch and the halves
all-reduced (``fastadapt.training.Trainer`` under torchrun). Both time ``--steps`` meta-iterations
(``Trainer.meta_step``: sample, meta-gradient, all-reduce, Adam step) after two warm-up iterations and report
tasks per second (meta-batch size x iterations / seconds). Before timing, each cell computes the meta-gradient
of one fixed meta-batch from the same initial weights; the script prints the largest difference between the
cells' gradients, so the two settings are seen to compute the same thing. Run it on an idle machine: the cells
run one at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

WORKLOADS = ("digits_maml", "sinusoid_maml", "digits_protonet")


def worker(config: str, steps: int, out: Path, overrides: list[str]) -> None:
    import torch
    from safetensors.torch import save_file

    from fastadapt.algorithms import meta_gradient
    from fastadapt.training import Trainer, build_experiment, resolve_config

    experiment = build_experiment(resolve_config(config, overrides))
    trainer = Trainer(experiment, "/nonexistent", progress=False)  # meta_step writes nothing
    group, size = trainer.group, experiment.config.training.meta_batch_size
    source, generator = experiment.sources["train"], torch.Generator().manual_seed(99)
    share = range(size) if group is None else group.share(size)
    batch = source.sample_shard(size, generator, share).to(experiment.device, experiment.dtype)
    grads, _ = meta_gradient(experiment.train_algorithm, trainer.params, batch, experiment.strategy, scale=size)
    if group is not None:
        group.all_sum(list(grads.values()))
    for _ in range(2):
        trainer.meta_step()
    if group is not None:
        group.barrier()
    start = time.perf_counter()
    for _ in range(steps):
        trainer.meta_step()
    elapsed = time.perf_counter() - start
    if group is None or group.is_main:
        save_file({k: v.contiguous() for k, v in grads.items()}, str(out / "grads.safetensors"))
        row = {"tasks_per_s": steps * size / elapsed, "seconds": elapsed, "threads": torch.get_num_threads()}
        (out / "result.json").write_text(json.dumps(row))
    if group is not None:
        group.close()


def run_cell(config: str, processes: int, steps: int, overrides: list[str]) -> dict[str, Any]:
    env = os.environ.copy()
    env.pop("OMP_NUM_THREADS", None)
    cores = os.cpu_count() or 1
    env["FASTADAPT_THREADS"] = str(max(1, cores // processes))
    with tempfile.TemporaryDirectory() as folder:
        args = [__file__, "--worker", config, "--steps", str(steps), "--out", folder, *overrides]
        if processes == 1:
            command = [sys.executable, *args]
        else:
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
            command += args
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{config} with {processes} process(es) failed:\n{done.stderr[-3000:]}")
        from safetensors.torch import load_file

        row = json.loads(Path(folder, "result.json").read_text())
        row["grads"] = load_file(str(Path(folder, "grads.safetensors")))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--steps", type=int, default=40, help="timed meta-iterations per cell")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args, overrides = parser.parse_known_args()
    if args.worker:
        worker(args.worker, args.steps, args.out, overrides)
        return
    cores = os.cpu_count() or 1
    results = []
    for config in args.workloads.split(","):
        one = run_cell(config, 1, args.steps, overrides)
        many = run_cell(config, cores, args.steps, overrides)
        difference = max(float((one["grads"][k] - many["grads"][k]).abs().max()) for k in one["grads"])
        scale = max(float(v.abs().max()) for v in one["grads"].values())
        results.append(
            {
                "config": config,
                f"1x{cores}_tasks_per_s": one["tasks_per_s"],
                f"{cores}x1_tasks_per_s": many["tasks_per_s"],
                "ratio": many["tasks_per_s"] / one["tasks_per_s"],
                "max_grad_difference": difference,
                "max_grad": scale,
            }
        )
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(
        f"{'config':28s} {'1x' + str(cores):>10s} {str(cores) + 'x1':>10s} {'ratio':>7s}  max |grad diff| / max |grad|"
    )
    for r in results:
        print(
            f"{r['config']:28s} {r[f'1x{cores}_tasks_per_s']:10.1f} {r[f'{cores}x1_tasks_per_s']:10.1f} "
            f"{r['ratio']:7.2f}  {r['max_grad_difference']:.2e} / {r['max_grad']:.2e}"
        )


if __name__ == "__main__":
    main()
