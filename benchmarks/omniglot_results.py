"""Runs the Omniglot rows of docs/results.md under a wall-clock budget per row.

For each row: time a few meta-iterations of the row's configuration in this process, choose the number of
iterations that fits the row's training budget, then run the exact CLI commands (``fastadapt train`` and
``fastadapt eval --json``) in fresh processes and append one JSON line per result to RESULTS. Rows already
in RESULTS are skipped, so an interrupted run continues where it stopped. ``--markdown`` prints the table.
``--seeds N`` trains each row with ``training.seed`` 0..N-1 (run directories ``ROW-seedS``); the table then gives
the mean and Student-t 95% interval over the seeds beside the mean per-episode interval.

    FASTADAPT_DATA=... python benchmarks/omniglot_results.py --root ../shared/data/omniglot --runs runs/omniglot
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from fastadapt.algorithms import meta_gradient
from fastadapt.evaluation import mean_ci95_t
from fastadapt.training import build_experiment, resolve_config

SETTINGS = {  # name -> (overrides shared by every algorithm, extra overrides of the 20-way rows)
    "5w1s": ["training.meta_batch_size=8"],
    "5w5s": ["task.shots=5", "training.meta_batch_size=8"],
    "20w1s": ["task.ways=20", "task.queries=5", "training.meta_batch_size=8"],
    "20w5s": ["task.ways=20", "task.shots=5", "task.queries=5", "training.meta_batch_size=8"],
}
PAPER = {
    ("protonet", "5w1s"): "98.8",
    ("protonet", "5w5s"): "99.7",
    ("protonet", "20w1s"): "96.0",
    ("protonet", "20w5s"): "98.9",
    ("maml", "5w1s"): "98.7 ± 0.4",
    ("maml", "5w5s"): "99.9 ± 0.1",
    ("maml", "20w1s"): "95.8 ± 0.3",
    ("maml", "20w5s"): "98.9 ± 0.2",
    ("metasgd", "5w1s"): "99.53",
    ("metasgd", "5w5s"): "99.93",
    ("metasgd", "20w1s"): "95.93",
    ("metasgd", "20w5s"): "98.97",
    ("anil", "5w1s"): "(MAML's, within its CI)",
    ("reptile", "5w1s"): "97.68",
    ("reptile", "5w5s"): "99.48",
    ("reptile", "20w1s"): "89.43",
    ("reptile", "20w5s"): "97.12",
}
NAMES = {
    "protonet": "ProtoNet",
    "maml": "MAML (2nd order)",
    "metasgd": "Meta-SGD",
    "anil": "ANIL",
    "reptile": "Reptile (transductive)",
}


@dataclass(frozen=True)
class Row:
    algorithm: str
    setting: str
    budget_s: float  # training wall-clock budget

    @property
    def key(self) -> str:
        return f"{self.algorithm}_{self.setting}"

    def overrides(self) -> list[str]:
        out = list(SETTINGS[self.setting])
        shots = 5 if "5s" in self.setting[-2:] else 1
        if self.algorithm == "reptile":
            out = [o for o in out if not o.startswith("training.meta_batch_size")]
            if self.setting == "20w1s":
                out.append("algorithm.test_steps=5")
        if self.setting == "20w5s":
            out.append("algorithm.test_steps=1")  # adaptation on 100 support images dominates evaluation
        elif shots == 5:
            out.append("task.train_queries=5")  # MAML's reference code: K queries per class in training
        return out


ROWS = [
    Row(algorithm, setting, budget)
    for setting, budget in (("5w1s", 120.0), ("5w5s", 120.0), ("20w1s", 90.0), ("20w5s", 90.0))
    for algorithm in ("maml", "metasgd", "anil", "reptile")
]


def seconds_per_iteration(config_name: str, overrides: list[str], repeats: int = 2) -> tuple[float, int, str]:
    """Wall time of one meta-gradient of the row's configuration (best of ``repeats`` after a warm-up) with
    the faster of the loop and vmap strategies; returns it, the meta-batch size and the strategy."""
    config = resolve_config(config_name, overrides)
    experiment = build_experiment(config)
    params = {k: v.requires_grad_() for k, v in experiment.train_algorithm.init_params().items()}
    batch_size = config.training.meta_batch_size
    best: tuple[float, int, str] | None = None
    for strategy in ("loop", "vmap"):
        generator = torch.Generator().manual_seed(0)
        times = []
        for _ in range(repeats + 1):
            batch = experiment.sources["train"].sample_batch(batch_size, generator)  # type: ignore[attr-defined]
            start = time.perf_counter()
            meta_gradient(experiment.train_algorithm, params, batch, strategy, config.training.chunk_size)
            times.append(time.perf_counter() - start)
        if best is None or min(times[1:]) < best[0]:
            best = (min(times[1:]), batch_size, strategy)
    assert best is not None
    return best


def run(command: list[str]) -> tuple[str, float]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed:\n{done.stderr[-3000:]}")
    return done.stdout, time.perf_counter() - start


def run_row(row: Row, root: str, runs: Path, results: Path, seed: int = 0, first: dict | None = None) -> None:
    """Train and evaluate one row at one training seed. ``first`` is the row's seed-0 record: the other seeds
    reuse its iteration count and strategy, so that the seeds differ in nothing but the seed."""
    config = f"omniglot_{row.algorithm}_5w1s"
    overrides = [f"data.root={root}", *row.overrides(), *([f"training.seed={seed}"] if seed else [])]
    if first is None:
        per_iteration, tasks, strategy = seconds_per_iteration(config, overrides)
        iterations = max(20, int(row.budget_s / per_iteration) // 10 * 10)
    else:
        per_iteration, tasks = first["seconds_per_iteration"], first["tasks_per_iteration"]
        iterations = first["iterations"]
        strategy = re.search(r"training\.strategy=(\w+)", first["train_command"]).group(1)  # type: ignore[union-attr]
    overrides.append(f"training.strategy={strategy}")
    run_dir = runs / (row.key if seed == 0 else f"{row.key}-seed{seed}")
    train = [
        "fastadapt", "train", config, *overrides, f"training.iterations={iterations}", "training.val_every=0",
        f"training.checkpoint_every={iterations}", "--run-dir", str(run_dir), "--no-progress",
    ]  # fmt: skip
    _, train_s = run(train)
    evaluation = ["fastadapt", "eval", str(run_dir), "--json"]
    out, eval_s = run(evaluation)
    record = {
        "algorithm": row.algorithm,
        "setting": row.setting,
        "seed": seed,
        "iterations": iterations,
        "tasks_per_iteration": tasks,
        "seconds_per_iteration": per_iteration,
        "train_s": train_s,
        "eval_s": eval_s,
        "train_command": shlex.join(train),
        "eval_command": shlex.join(evaluation),
        "result": json.loads(out),
    }
    with results.open("a") as f:
        f.write(json.dumps(record) + "\n")
    r = record["result"]
    print(f"{row.key}: {100 * r['mean']:.2f} ± {100 * r['ci95']:.2f} ({iterations} it, {train_s:.0f} s)", flush=True)


def _short(command: str) -> str:
    """The command with the data folder as PATH and the run directory as R."""
    command = re.sub(r"data\.root=\S+", "data.root=PATH", command)
    command = re.sub(r"--run-dir \S+", "--run-dir R", command)
    command = re.sub(r"(fastadapt eval) \S+", r"\1 R", command)
    return command.replace(" --no-progress", "")


def markdown(results: Path) -> str:
    every = list(map(json.loads, results.read_text().splitlines()))
    records = {(r["algorithm"], r["setting"]): r for r in every if r.get("seed", 0) == 0}
    seeds: dict[tuple[str, str], list[float]] = {}
    for r in every:
        seeds.setdefault((r["algorithm"], r["setting"]), []).append(r["result"]["mean"])
    lines = ["| algorithm | setting | paper | ours | budget | command |", "|---|---|---|---|---|---|"]
    for algorithm in NAMES:
        for setting in SETTINGS:
            r = records.get((algorithm, setting))
            ways, shots = setting[:-2].split("w")[0], setting[-2]
            label = f"{ways}-way {shots}-shot"
            paper = PAPER.get((algorithm, setting), "")
            if r is None:
                lines.append(f"| {NAMES[algorithm]} | {label} | {paper} | — | | |")
                continue
            res = r["result"]
            tasks = r.get("tasks_per_iteration", "")
            budget = f"{r['iterations']:,} it × {tasks}, {r['train_s'] / 60:.0f} min"
            command = f"`{_short(r['train_command'])}` then `{_short(r['eval_command'])}`"
            ours = f"{100 * res['mean']:.2f} ± {100 * res['ci95']:.2f}"
            means = seeds[(algorithm, setting)]
            if len(means) > 1:  # over training seeds (Student t), then the first seed's per-episode interval
                mean, ci = mean_ci95_t(means)
                ours = f"{100 * mean:.2f} ± {100 * ci:.2f} over {len(means)} seeds (seed 0: {ours})"
            lines.append(f"| {NAMES[algorithm]} | {label} | {paper} | {ours} | {budget} | {command} |")
    return "\n".join(lines)


def seed_differences(results: Path) -> str:
    """For each setting trained on several seeds: every algorithm against the best one, as the mean over seeds of
    the per-seed difference (seed s against seed s: the same initial weights and the same test episodes) with
    its Student-t 95% interval, and on how many seeds the best one was ahead."""
    every = list(map(json.loads, results.read_text().splitlines()))
    by: dict[tuple[str, str], dict[int, float]] = {}
    for r in every:
        by.setdefault((r["setting"], r["algorithm"]), {})[r.get("seed", 0)] = r["result"]["mean"]
    lines = []
    for setting in SETTINGS:
        rows = {a: v for (s, a), v in by.items() if s == setting and len(v) > 1}
        if len(rows) < 2:
            continue
        best = max(rows, key=lambda a: sum(rows[a].values()) / len(rows[a]))
        for algorithm, values in rows.items():
            if algorithm == best:
                continue
            seeds = sorted(set(values) & set(rows[best]))
            differences = [100 * (rows[best][s] - values[s]) for s in seeds]
            mean, ci = mean_ci95_t(differences)
            ahead = sum(d > 0 for d in differences)
            lines.append(
                f"{setting}: {NAMES[best]} minus {NAMES[algorithm]}: {mean:+.2f} ± {ci:.2f} points over "
                f"{len(seeds)} seeds, ahead on {ahead}/{len(seeds)}"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="../shared/data/omniglot", help="folder with the two Omniglot zips")
    parser.add_argument("--runs", type=Path, default=Path("runs/omniglot"), help="run directories and results")
    parser.add_argument("--only", nargs="*", help="row keys to run, e.g. maml_5w1s (default: all)")
    parser.add_argument("--markdown", action="store_true", help="print the results table and exit")
    parser.add_argument("--seeds", type=int, default=1, help="training seeds per row (0..N-1)")
    args = parser.parse_args()
    results = args.runs / "results.jsonl"
    if args.markdown:
        print(markdown(results))
        print("\n" + seed_differences(results))
        return
    args.runs.mkdir(parents=True, exist_ok=True)
    for row in ROWS:
        for seed in range(args.seeds):
            done = {
                (f"{r['algorithm']}_{r['setting']}", r.get("seed", 0)): r
                for r in map(json.loads, results.read_text().splitlines() if results.exists() else [])
            }
            if (row.key, seed) in done or (args.only and row.key not in args.only):
                continue
            if seed and (row.key, 0) not in done:
                continue  # seed 0 failed: it sets the iteration count of the others
            try:
                run_row(row, args.root, args.runs, results, seed, done.get((row.key, 0)) if seed else None)
            except RuntimeError as error:
                print(error, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
