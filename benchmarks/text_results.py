"""Runs the HWU64 and cross-dataset rows of docs/text.md through `fastadapt text fit` / `text meta-train` (their
Python functions, the same code as the CLI), one JSON file per job in RUNS; jobs already there are skipped, so an
interrupted run continues. ``--markdown`` prints the tables.

Jobs (every method's settings chosen per run, on the run's own data; 3 seeds):

* ``hwu64-5``, ``hwu64-10``: HWU64's fixed ``train_5`` / ``train_10`` sets, scored on its test set; all methods.
* ``clinc150-5``, ``clinc150-10``: CLINC150 all intents, K drawn from train, with its validation split (which
  chooses settings and the out-of-scope threshold) and the out-of-scope utterances; all methods.
* ``meta-clinc150`` / ``meta-hwu64``: the encoder meta-trained on one dataset's training utterances
  (ProtoNet, top 2 layers, held-out source intents choose the step);
  ``clinc150-to-hwu64-K`` / ``hwu64-to-clinc150-K``: logistic and nearest mean on the other dataset, on the
  pretrained and on the meta-trained encoder (rows ``@init``), same K-shot draws, paired over seeds.
* ``hwu64-K-setfit``, ``clinc150-K-setfit``: SetFit fine-tuning of the encoder on each K-shot draw (at most 4,000
  pairs), then logistic and nearest mean on it (rows ``+setfit``) beside the same methods on the frozen encoder;
  ``hwu64-5-protonet``: the same with ProtoNet fine-tuning of the top 2 layers on each draw (100 episodes, 20% of
  the intents choose the step).

    OMP_NUM_THREADS=1 python benchmarks/text_results.py --data ../shared/data --runs runs/text [--jobs a,b]
    python benchmarks/text_results.py --runs runs/text --markdown
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastadapt.text import load_clinc150
from fastadapt.text._finetune import protonet_encoder
from fastadapt.text._report import markdown
from fastadapt.text_cli import METHODS, read_examples, run_fit

BASELINES = ["logistic", "nearest-mean"]


def clinc150_csv(root: Path, out: Path) -> Path:
    """CLINC150 (with its out-of-scope utterances, label ``oos``) as one CSV with a split column."""
    if out.exists():
        return out
    dataset = load_clinc150(root, out_of_scope=True)
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label", "split"])
        for text, label, split in zip(dataset.texts, dataset.labels.tolist(), dataset.splits, strict=True):
            writer.writerow([text, dataset.class_names[label], split])
    return out


def jobs(data: Path, runs: Path) -> dict[str, Callable[[], dict[str, Any]]]:
    hwu, clinc = data / "hwu64", clinc150_csv(data / "clinc150", runs / "clinc150.csv")
    common = {"val": None, "val_fraction": 0.0, "text_column": "text", "label_column": "label", "seeds": 3}
    common |= {"folds": 2, "iterations": 300, "encoder": None, "save_dir": None, "log": print}

    def hwu64(shots: int, methods: list[str], **extra: Any) -> Callable[[], dict[str, Any]]:
        train, test = hwu / f"train_{shots}", hwu / "test"
        options = {**common, "oos_label": None, **extra}
        return lambda: run_fit(train, test, shots_list=[shots], methods=methods, **options)

    def clinc150(shots: int, methods: list[str], **extra: Any) -> Callable[[], dict[str, Any]]:
        options = {**common, "oos_label": "oos", **extra}  # the out-of-scope rows are never a class
        return lambda: run_fit(clinc, None, shots_list=[shots], methods=methods, **options)

    def meta(source: str) -> Callable[[], dict[str, Any]]:
        def run() -> dict[str, Any]:
            if source == "clinc150":
                rows = [(t, y, s) for t, y, s in read_examples(clinc, "text", "label") if s == "train" and y != "oos"]
            else:
                rows = read_examples(hwu / "train", "text", "label")
            names = sorted({y for _, y, _ in rows})
            ids = {n: i for i, n in enumerate(names)}
            import numpy as np

            labels = np.array([ids[y] for _, y, _ in rows], dtype=np.int64)
            return protonet_encoder(
                "all-MiniLM-L6-v2", [t for t, _, _ in rows], labels, runs / f"meta-{source}" / "encoder", log=print
            )

        return run

    return {
        "hwu64-5": hwu64(5, list(METHODS)),
        "meta-clinc150": meta("clinc150"),
        "clinc150-to-hwu64-5": hwu64(5, BASELINES, init=runs / "meta-clinc150"),
        "clinc150-to-hwu64-10": hwu64(10, BASELINES, init=runs / "meta-clinc150"),
        "hwu64-10": hwu64(10, list(METHODS)),
        "hwu64-5-setfit": hwu64(5, BASELINES, finetune="setfit"),
        "clinc150-5": clinc150(5, list(METHODS)),
        "clinc150-10": clinc150(10, list(METHODS)),
        "meta-hwu64": meta("hwu64"),
        "hwu64-to-clinc150-5": clinc150(5, BASELINES, init=runs / "meta-hwu64"),
        "hwu64-to-clinc150-10": clinc150(10, BASELINES, init=runs / "meta-hwu64"),
        "hwu64-10-setfit": hwu64(10, BASELINES, finetune="setfit"),
        "hwu64-5-protonet": hwu64(5, BASELINES, finetune="protonet"),
        "clinc150-5-setfit": clinc150(5, BASELINES, finetune="setfit"),
        "clinc150-10-setfit": clinc150(10, BASELINES, finetune="setfit"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--runs", type=Path, default=Path("runs/text"))
    parser.add_argument("--jobs", help="Comma-separated job names (default: all, in order).")
    parser.add_argument("--markdown", action="store_true", help="Print the tables of the finished jobs.")
    args = parser.parse_args()
    if args.markdown:
        for path in sorted(args.runs.glob("*.json")):
            result = json.loads(path.read_text())
            if "results" in result:
                print(f"### {path.stem} ({result['labels']} labels, {result['validation']}, {result['seeds']} seeds)\n")
                print(markdown(result["results"]))
            else:
                print(
                    f"### {path.stem}: best step {result['best_step']}, held-out source intents "
                    f"{result['pretrained_val_accuracy']:.4f} -> {result['best_val_accuracy']:.4f}, "
                    f"{result['seconds']} s\n"
                )
        return
    args.runs.mkdir(parents=True, exist_ok=True)
    table = jobs(args.data, args.runs)
    for name in args.jobs.split(",") if args.jobs else table:
        out = args.runs / f"{name}.json"
        if out.exists():
            continue
        start = time.perf_counter()
        result = table[name]()
        result["wall_s"] = round(time.perf_counter() - start, 1)
        out.write_text(json.dumps(result, indent=1))
        print(f"{name}: {result['wall_s']} s", flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
