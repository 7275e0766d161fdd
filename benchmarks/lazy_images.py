"""Episodes from a mini-ImageNet-format folder decoded on demand: peak memory and episodes/s with 0 and 2 workers.

    python benchmarks/lazy_images.py [--images 20000] [--side 84] [--episodes 60] [--folder DIR] [--json]

Generates (once, into ``--folder`` or a temporary folder) ``--images`` random ``--side`` x ``--side`` JPEGs in
Ravi & Larochelle's flat layout with ``train/val/test.csv`` over 100 classes (64 / 16 / 20). Then, in a fresh
process per setting, it builds the shipped ``miniimagenet_protonet_5w1s`` config on them (``data.split``: the
generated CSVs; 5-way 1-shot, 15 queries: 80 images an episode, resized to 84x84, crop + flip) and times:

- ``load``: ``--episodes`` training episodes drawn and decoded, nothing else;
- ``train``: as many ProtoNet meta-iterations on a Conv4 (32 filters, 1 torch thread), loading overlapping the
  step when there are workers.

Peak memory is the maximum resident set size of the process (``ru_maxrss``) and, with workers, of the largest
worker; the decoded images would take ``images x 3 x 84 x 84 x 4`` bytes as float32. The ratios are to 0 workers
in the same run. Run it on an otherwise idle machine: the workers need the second core.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def generate(folder: Path, images: int, side: int, classes: int = 100) -> None:
    import numpy as np
    from PIL import Image

    if (folder / "test.csv").is_file():
        return
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    per_class = images // classes
    names = [f"n{c:08d}" for c in range(classes)]
    parts = {"train": names[:64], "val": names[64:80], "test": names[80:]}
    for part, members in parts.items():
        with (folder / f"{part}.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["filename", "label"])
            for name in members:
                base = rng.integers(0, 256, 3)
                for i in range(per_class):
                    filename = f"{name}{i + 1:08d}.jpg"
                    pixels = np.clip(base + rng.normal(0, 40, (side, side, 3)), 0, 255).astype(np.uint8)
                    Image.fromarray(pixels).save(folder / "images" / filename, quality=90)
                    writer.writerow([filename, name])


def measure(folder: str, workers: int, episodes: int, mode: str) -> dict[str, Any]:
    import torch

    from fastadapt.training import Trainer, build_experiment, resolve_config

    overrides = [
        f"data.root={folder}/images",
        f"data.split={folder}",
        f"data.workers={workers}",
        "model.name=conv4",
        "model.channels=32",
        "training.threads=1",
    ]
    experiment = build_experiment(resolve_config("miniimagenet_protonet_5w1s", overrides))
    source = experiment.sources["train"]
    generator = torch.Generator().manual_seed(0)
    trainer = Trainer(experiment, "/nonexistent", progress=False) if mode == "train" else None
    if trainer is not None:
        trainer.generator = generator
    start = time.perf_counter()
    for _ in range(episodes):
        if trainer is not None:
            trainer.meta_step()  # samples its meta-batch (one episode) from the same generator
        else:
            source.sample(generator)
    seconds = time.perf_counter() - start
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    source.close()  # type: ignore[attr-defined]
    del source, experiment, trainer
    import gc

    gc.collect()
    time.sleep(0.5)
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"episodes_per_s": episodes / seconds, "peak_mb": own, "worker_peak_mb": children if workers else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--episodes", type=int, default=60)
    parser.add_argument("--folder", type=Path, default=None)
    parser.add_argument(
        "--side", type=int, default=84, help="side of the generated JPEGs (400: ImageNet-sized, resized on load)"
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", nargs=3, metavar=("FOLDER", "WORKERS", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        folder, workers, mode = args.worker
        print(json.dumps(measure(folder, int(workers), args.episodes, mode)))
        return
    folder = args.folder or Path(tempfile.mkdtemp(prefix="fastadapt-lazy-"))
    start = time.perf_counter()
    generate(folder, args.images, args.side)
    generated = time.perf_counter() - start
    decoded_mb = args.images * 3 * 84 * 84 * 4 / 2**20
    rows = []
    for mode in ("load", "train"):
        for workers in (0, 2):
            command = [sys.executable, __file__, "--episodes", str(args.episodes), "--worker", str(folder)]
            out = subprocess.run([*command, str(workers), mode], check=True, capture_output=True, text=True)
            rows.append({"mode": mode, "workers": workers} | json.loads(out.stdout.strip().splitlines()[-1]))
    for mode in ("load", "train"):
        base = next(r["episodes_per_s"] for r in rows if r["mode"] == mode and r["workers"] == 0)
        for r in rows:
            if r["mode"] == mode:
                r["ratio_to_0_workers"] = r["episodes_per_s"] / base
    if args.json:
        print(json.dumps({"images": args.images, "decoded_float32_mb": decoded_mb, "rows": rows}, indent=2))
        return
    print(f"{args.images:,} {args.side}x{args.side} images in {folder} (generated in {generated:.0f} s)")
    print(f"decoded as float32 they would take {decoded_mb:,.0f} MB")
    print(f"{'mode':6s} {'workers':>7s} {'episodes/s':>11s} {'ratio':>6s} {'peak MB':>8s} {'worker peak MB':>15s}")
    for r in rows:
        worker = f"{r['worker_peak_mb']:.0f}" if r["worker_peak_mb"] is not None else "-"
        print(
            f"{r['mode']:6s} {r['workers']:7d} {r['episodes_per_s']:11.2f} {r['ratio_to_0_workers']:5.2f}x "
            f"{r['peak_mb']:8.0f} {worker:>15s}"
        )


if __name__ == "__main__":
    main()
