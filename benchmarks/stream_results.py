"""Online meta-learning on task streams (docs/results.md, "Online adaptation"): ``fastadapt stream`` commands, each
one run, reading each run's ``summary.json`` and per-round ``metrics.jsonl``.

Rows (a frozen run is a meta-trained run directory of the same config; pass yours or let the script train it):

* sinusoid K=10, MAML and the hypernetwork, online learner from fresh meta-parameters (``stream.start=init``);
  with ``--seeds N`` once per training seed S against the frozen run ``RUN-seedS`` with ``stream.seed=S``;
* Omniglot 5-way 1-shot from the test alphabets, every image used once (``stream.fresh``), ProtoNet, online
  learner from the frozen meta-trained run (``start=frozen``) and from fresh parameters (``start=init``);
* MovieLens-format synthetic ratings, MeLU, new users in the order of their first rating, ``start=frozen``, with
  the per-user continual report.

    python benchmarks/stream_results.py --runs runs/stream --sinusoid-maml RUN --sinusoid-hypernet RUN \\
        --omniglot-protonet RUN --omniglot-root ../shared/data/omniglot --melu RUN
    python benchmarks/stream_results.py --runs runs/stream --markdown
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from fastadapt.evaluation import mean_ci95_t, paired_comparison


def rows(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """(name, the `fastadapt stream` arguments) of every row."""
    out = []
    for name, config, frozen in (
        ("sinusoid K=10, MAML", "sinusoid_maml", args.sinusoid_maml),
        ("sinusoid K=10, hypernet k=0", "sinusoid_hypernet", args.sinusoid_hypernet),
    ):
        for seed in range(args.seeds if frozen else 0):  # seed S: the frozen run FROZEN-seedS and stream.seed=S
            run = frozen if seed == 0 else f"{frozen}-seed{seed}"
            arguments = [config, f"stream.frozen={run}", "stream.rounds=2000", "stream.last=500"]
            out.append(
                (name + (f", seed {seed}" if seed else ""), arguments + ([f"stream.seed={seed}"] if seed else []))
            )
    if args.omniglot_protonet:
        config = str(Path(args.omniglot_protonet) / "config.yaml")
        common = [
            config,
            f"data.root={args.omniglot_root}",
            "task.queries=5",
            f"stream.frozen={args.omniglot_protonet}",
        ]
        common += ["stream.rounds=5000", "stream.last=100", "stream.scratch_steps=50", "stream.scratch_lr=0.001"]
        out.append(("Omniglot 5w1s test alphabets, ProtoNet, start=frozen", [*common, "stream.start=frozen"]))
        out.append(("Omniglot 5w1s test alphabets, ProtoNet, start=init", [*common, "stream.start=init"]))
        out.append(
            (
                "Omniglot 5w1s test alphabets, ProtoNet, start=frozen, online lr 1e-4",
                [*common, "stream.start=frozen", "stream.outer_lr=0.0001"],
            )
        )
    if args.melu:
        config = str(Path(args.melu) / "config.yaml")
        # Time-ordered split: a new user's ratings stream in time order; the new users are unseen either way.
        melu = [config, "recsys.time_ordered=true", f"stream.frozen={args.melu}", "stream.start=frozen"]
        melu += ["stream.rounds=1000", "stream.last=50"]
        out.append(("synthetic MovieLens, MeLU, new users, start=frozen", [*melu, "stream.scratch_steps=20"]))
    return out


def run(args: argparse.Namespace) -> None:
    args.runs.mkdir(parents=True, exist_ok=True)
    results = args.runs / "results.jsonl"
    done = {json.loads(line)["name"] for line in results.read_text().splitlines()} if results.exists() else set()
    env = os.environ | {"OMP_NUM_THREADS": str(args.threads)}
    for name, arguments in rows(args):
        if name in done:
            continue
        run_dir = args.runs / re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        command = ["fastadapt", "stream", *arguments, "--run-dir", str(run_dir), "--json"]
        start = time.perf_counter()
        finished = subprocess.run(
            [sys.executable, "-m", "fastadapt.cli", *command[1:]], env=env, capture_output=True, text=True
        )
        if finished.returncode != 0:
            raise SystemExit(f"{name}: {' '.join(command)} failed:\n{finished.stderr[-3000:]}")
        summary = json.loads(finished.stdout.strip().splitlines()[-1])
        row = {"name": name, "command": " ".join(command), "seconds": time.perf_counter() - start, **summary}
        with results.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps({k: row[k] for k in ("name", "rounds", "last_mean", "seconds")}), flush=True)


def _rows(run_dir: Path) -> list[dict[str, Any]]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [row for row in map(json.loads, lines) if row["split"] == "stream"]


def _blocks(run_dir: Path, learners: list[str], blocks: int) -> list[dict[str, Any]]:
    """Each learner's mean over consecutive equal blocks of rounds (the curve, as a table)."""
    rows_ = _rows(run_dir)
    edges = np.linspace(0, len(rows_), blocks + 1).astype(int)
    out = []
    for a, b in itertools.pairwise(edges):
        out.append({"rounds": f"{a + 1}-{b}"} | {k: float(np.mean([r[k] for r in rows_[a:b]])) for k in learners})
    return out


def _online_minus_frozen(row: dict[str, Any]) -> float:
    """The last window's mean online score minus frozen, positive when online is better."""
    sign = 1.0 if row["metric"] == "accuracy" else -1.0
    return sign * (row["last_mean"]["online"] - row["last_mean"]["frozen"])


def seed_summary(runs: Path) -> str:
    """Rows streamed with several seeds (``--seeds``): online minus frozen over the last window, per seed, and its
    mean with the Student-t 95% interval over the seeds."""
    groups: dict[str, list[float]] = {}
    for row in (json.loads(line) for line in (runs / "results.jsonl").read_text().splitlines()):
        if "frozen" in row["last_mean"]:
            groups.setdefault(re.sub(r", seed \d+$", "", row["name"]), []).append(_online_minus_frozen(row))
    lines = []
    for name, values in groups.items():
        if len(values) > 1:
            mean, ci = mean_ci95_t(values)
            per_seed = ", ".join(f"{v:+.3f}" for v in values)
            lines.append(f"- {name}: online minus frozen {mean:+.3f} ± {ci:.3f} over {len(values)} seeds ({per_seed})")
    return "\n".join(lines)


def markdown(runs: Path, blocks: int = 5) -> str:
    out = []
    for row in (json.loads(line) for line in (runs / "results.jsonl").read_text().splitlines()):
        scale, unit = (100.0, "accuracy %") if row["metric"] == "accuracy" else (1.0, "MSE")
        learners = list(row["last_mean"])
        out.append(f"**{row['name']}** ({unit}; {row['rounds']} rounds, {row['seconds']:.0f} s): `{row['command']}`\n")
        out.append("| rounds | " + " | ".join(learners) + " |")
        out.append("|---|" + "---|" * len(learners))
        run_dir = Path(row["command"].split("--run-dir ")[1].split()[0])
        for block in _blocks(run_dir, learners, blocks):
            out.append(f"| {block['rounds']} | " + " | ".join(f"{block[k] * scale:.3f}" for k in learners) + " |")
        last = " | ".join(f"{row['last_mean'][k] * scale:.3f} ± {row['last_ci95'][k] * scale:.3f}" for k in learners)
        out.append(f"| last {row['last']} (95% CI) | {last} |")
        if "frozen" in learners:
            stream = [r for r in _rows(run_dir)][-row["last"] :]
            sign = 1.0 if row["metric"] == "accuracy" else -1.0  # positive: online is better
            paired = paired_comparison(
                sign * np.array([r["online"] for r in stream]), sign * np.array([r["frozen"] for r in stream])
            )
            out.append(
                f"\nOnline minus frozen over the last {row['last']} rounds (paired, positive = online better): "
                f"{paired.difference * scale:+.3f} [{paired.ci_low * scale:+.3f}, {paired.ci_high * scale:+.3f}], "
                f"sign-flip p = {paired.p_value:.3f}"
            )
        if "continual" in row:
            c = row["continual"]
            parts = [
                f"{k} {v:.3f} ± {c['ci95'][k]:.3f} ({c['seconds'][k]:.1f} s of updates)" for k, v in c["mean"].items()
            ]
            out.append(f"\nPer-user continual mode, {c['users']} new users, {c['metric']}: " + ", ".join(parts))
        out.append("")
    summary = seed_summary(runs)
    if summary:
        out.append("**Over training seeds** (positive = online better):\n\n" + summary + "\n")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=Path("runs/stream"))
    parser.add_argument("--sinusoid-maml", help="meta-trained sinusoid_maml run (K=10)")
    parser.add_argument("--sinusoid-hypernet", help="meta-trained sinusoid_hypernet run (K=10, k=0)")
    parser.add_argument("--omniglot-protonet", help="meta-trained omniglot_protonet_5w1s run")
    parser.add_argument("--omniglot-root", default="../shared/data/omniglot")
    parser.add_argument("--melu", help="meta-trained movielens/melu run (synthetic data)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="sinusoid rows: streams 0..N-1 against frozen runs RUN, RUN-seed1, ... (hypernet_results.py --seeds)",
    )
    args = parser.parse_args()
    if not args.markdown:
        run(args)
    print(markdown(args.runs))


if __name__ == "__main__":
    main()
