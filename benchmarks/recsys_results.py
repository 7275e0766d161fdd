"""Trains MeLU-1 and MeLU-5 on one MovieLens source and prints the cold-start results table.

    python benchmarks/recsys_results.py --source synthetic --runs runs/recsys [--extra KEY=VALUE ...]
    python benchmarks/recsys_results.py --source ml-1m --runs runs/recsys-ml1m      # needs ml-1m.zip

Each model is trained with ``fastadapt train movielens/melu1`` / ``movielens/melu`` and evaluated with
``fastadapt eval RUN --json`` (every state, every metric, the baselines in the same evaluation); the
table has the four states x {MeLU-1, MeLU-5, the baselines} x {MAE, nDCG@3, P@20, R@20, F1@20}, mean and
95% CI over users. The baselines come from the MeLU-5 run's evaluation.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any

COLUMNS = (
    ("mae", "MAE"),
    ("ndcg@3", "nDCG@3"),
    ("top_precision@20", "P@20"),
    ("top_recall@20", "R@20"),
    ("top_f1@20", "F1@20"),
)
PAPER_MAE = {"warm": 0.7567, "user_cold": 0.7854, "item_cold": 0.9275, "user_item_cold": 0.9235}  # MeLU-5, ML-1M
PAPER_NDCG3 = {"warm": 0.8919, "user_cold": 0.8812, "item_cold": 0.8005, "user_item_cold": 0.8008}
LABELS = {
    "melu1": "MeLU-1",
    "melu1-0": "MeLU-1, no local update",
    "melu": "MeLU-5",
    "melu-0": "MeLU-5, no local update",
}


def run(command: list[str]) -> tuple[str, float]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{shlex.join(command)} failed:\n{done.stderr[-3000:]}")
    return done.stdout, time.perf_counter() - start


def table(reports: dict[str, dict[str, Any]]) -> str:
    """Markdown rows: state, method, then mean ± CI of each column."""
    lines = ["| state | method | " + " | ".join(c for _, c in COLUMNS) + " |", "|---" * (len(COLUMNS) + 2) + "|"]
    states = next(iter(reports.values()))["states"]
    for state in states:
        rows: dict[str, dict[str, Any]] = {}
        for config, report in reports.items():
            for method, values in report["states"][state]["methods"].items():
                if method in LABELS or config == "melu":  # the baselines once, from the MeLU-5 run
                    rows.setdefault(LABELS.get(method, method), values)
        for method, values in rows.items():
            cells = []
            for key, _ in COLUMNS:
                v = values[key]
                cells.append("—" if v["mean"] is None else f"{v['mean']:.4f} ± {v['ci95']:.4f}")
            lines.append(f"| {state} | {method} | " + " | ".join(cells) + " |")
        lines.append(f"| {state} | MeLU-5 (paper, real ML-1M) | {PAPER_MAE[state]} | {PAPER_NDCG3[state]} | | | |")
    users = ", ".join(f"{state} {entry['users']}" for state, entry in states.items())
    lines.append(f"\nUsers evaluated per state: {users}.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="synthetic", choices=("synthetic", "ml-100k", "ml-1m"))
    parser.add_argument("--runs", type=Path, default=Path("runs/recsys"))
    parser.add_argument("--extra", nargs="*", default=[], help="config overrides for both runs")
    parser.add_argument("--table-only", action="store_true", help="print the table of finished runs")
    args = parser.parse_args()
    reports: dict[str, dict[str, Any]] = {}
    for config in ("melu1", "melu"):
        run_dir = args.runs / f"{args.source}-{config}"
        if not args.table_only:
            train = ["fastadapt", "train", f"movielens/{config}", f"recsys.source={args.source}", *args.extra]
            train += ["--run-dir", str(run_dir), "--no-progress"]
            _, train_s = run(train)
            _, eval_s = run(["fastadapt", "eval", str(run_dir), "--json"])
            print(f"{shlex.join(train)}: train {train_s:.0f} s, eval {eval_s:.0f} s", flush=True)
        reports[config] = json.loads((run_dir / "eval" / "recsys_summary.json").read_text())
    print(table(reports))


if __name__ == "__main__":
    main()
