"""Seconds per meta-iteration of the shipped mini-ImageNet and CIFAR-FS configs, as they are (ResNet-12, Conv4),
on a mini-ImageNet-format folder of generated images (``benchmarks/lazy_images.py --folder DIR`` makes one).

    python benchmarks/image_configs.py --folder DIR [--steps 3] [--threads 1] [--device cpu] [--json]

The CIFAR-FS row runs ``cifarfs_protonet_5w1s``'s model and episodes on the same images resized to 32x32 (the
compute is the same as on CIFAR-100's 32x32 images). Each row: one warm-up iteration, then the mean of
``--steps`` timed ``Trainer.meta_step`` calls (sample, meta-gradient, optimiser step). The pretraining row times
``training.pretrain_steps`` (a batch of 64 training images, cross-entropy, SGD step) as the difference between a
run of ``1 + --steps`` and a run of 1 pretraining step (each validating on one episode, ``training.iterations=0``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

ROWS = (
    ("miniimagenet_protonet_5w1s", []),
    ("miniimagenet_maml_5w1s", []),
    ("cifarfs_protonet_5w1s", ["data.dataset=miniimagenet", "data.image_size=32"]),
)


def seconds_per_iteration(config: str, extra: list[str], folder: Path, steps: int, threads: int, device: str) -> float:
    from fastadapt.training import Trainer, build_experiment, resolve_config

    overrides = [
        f"data.root={folder}/images",
        f"data.split={folder}",
        "data.workers=0",
        f"training.threads={threads}",
        f"training.device={device}",
        *extra,
    ]
    trainer = Trainer(build_experiment(resolve_config(config, overrides)), "/nonexistent", progress=False)
    trainer.meta_step()
    start = time.perf_counter()
    for _ in range(steps):
        trainer.meta_step()
    return (time.perf_counter() - start) / steps


def seconds_per_pretraining_step(folder: Path, steps: int, threads: int, device: str) -> float:
    import tempfile

    from fastadapt.training import Trainer, build_experiment, resolve_config

    def run(pretrain_steps: int) -> float:
        overrides = [
            f"data.root={folder}/images",
            f"data.split={folder}",
            f"training.threads={threads}",
            f"training.device={device}",
            "training.iterations=0",
            f"training.pretrain_steps={pretrain_steps}",
            "training.val_episodes=1",
            "training.val_every=0",
        ]
        experiment = build_experiment(resolve_config("miniimagenet_protonet_5w1s", overrides))
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as run_dir:
            Trainer(experiment, run_dir, progress=False).run()
        return time.perf_counter() - start

    return (run(1 + steps) - run(1)) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    for config, extra in ROWS:
        seconds = seconds_per_iteration(config, extra, args.folder, args.steps, args.threads, args.device)
        rows.append({"config": config, "seconds_per_iteration": seconds})
        if not args.json:
            print(f"{config:28s} {seconds:8.2f} s / iteration ({args.device}, {args.threads} thread(s))", flush=True)
    seconds = seconds_per_pretraining_step(args.folder, args.steps, args.threads, args.device)
    rows.append({"config": "miniimagenet_protonet_5w1s pretraining", "seconds_per_iteration": seconds})
    if not args.json:
        print(f"{'  pretraining (batch of 64)':28s} {seconds:8.2f} s / step ({args.device}, {args.threads} thread(s))")
    if args.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
