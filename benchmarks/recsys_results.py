"""Trains the cold-start recommenders on one MovieLens source, over several training seeds, and prints the tables
of docs/recsys.md: every state and method, the support-size curves, the paired tests, the spread over seeds.

    python benchmarks/recsys_results.py --source synthetic --runs runs/recsys
    python benchmarks/recsys_results.py --source ml-100k --runs runs/recsys-ml100k --root ~/data   # real ML-100K
    python benchmarks/recsys_results.py --source ml-1m --runs runs/recsys-ml1m                     # real ML-1M

Each config (default: meta-learned MF, MeLU-1, MeLU-5) is trained with ``fastadapt train movielens/<config>
recsys.source=<source> training.seed=<s>`` and evaluated with ``fastadapt eval RUN --json``; every evaluation
holds the baselines (tuned on the validation users), the paired comparisons with the best of them and the
support-size curves. The data split (``recsys.seed``) is the same for every seed: the seeds vary training only.
The tables take the baselines from the first config's seed-0 run.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from fastadapt.recsys import plot_support_curves

COLUMNS = (("mae", "MAE"), ("rmse", "RMSE"), ("ndcg@3", "nDCG@3"), ("top_precision@20", "P@20"))
CURVE_METRICS = (("mae", "MAE"), ("rmse", "RMSE"), ("ndcg@3", "nDCG@3"))
PAPER_MAE = {"warm": 0.7567, "user_cold": 0.7854, "item_cold": 0.9275, "user_item_cold": 0.9235}  # MeLU-5, ML-1M
PAPER_NDCG3 = {"warm": 0.8919, "user_cold": 0.8812, "item_cold": 0.8005, "user_item_cold": 0.8008}
BASELINES = ("global", "fine-tune", "mf", "bias", "popularity")


def run(command: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{shlex.join(command)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def _cell(v: dict[str, Any]) -> str:
    return "—" if v["mean"] is None else f"{v['mean']:.4f} ± {v['ci95']:.4f}"


def _p(c: dict[str, Any] | None) -> str:
    if c is None:
        return "—"
    return f"{c['difference']:+.4f} [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}], p = {c['t_p_value']:.2g}"


def states_table(reports: dict[str, dict[str, Any]], source: str) -> str:
    """Per state: the meta-learned methods of every config, then the baselines once, and the paired difference
    of each with the best baseline on the validation users (the reference)."""
    first = next(iter(reports.values()))
    lines = ["| state | method | " + " | ".join(c for _, c in COLUMNS) + " | MAE − reference (95% CI), paired t |"]
    lines.append("|---" * (len(COLUMNS) + 3) + "|")
    for state, entry in first["states"].items():
        reference = entry["reference"]
        rows: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = []
        for report in reports.values():
            e = report["states"][state]
            for method, values in e["methods"].items():
                if method not in BASELINES:
                    rows.append((method, values, e["paired"]["mae"].get(method)))
        for method in BASELINES:
            if method in entry["methods"]:
                label = f"{method} (reference)" if method == reference else method
                rows.append((label, entry["methods"][method], entry["paired"]["mae"].get(method)))
        for method, values, paired in rows:
            cells = " | ".join(_cell(values[key]) for key, _ in COLUMNS)
            lines.append(f"| {state} | {method} | {cells} | {_p(paired)} |")
        if source == "ml-1m":
            lines.append(f"| {state} | MeLU-5 (paper) | {PAPER_MAE[state]} | | {PAPER_NDCG3[state]} | | |")
    users = ", ".join(f"{state} {entry['users']}" for state, entry in first["states"].items())
    lines.append(
        f"\nUsers per state: {users}. Reference: the best baseline on the validation users; each config's paired "
        "column is against its own evaluation's reference (global and fine-tune are fitted again in each)."
    )
    return "\n".join(lines)


def curve_tables(reports: dict[str, dict[str, Any]], states: tuple[str, ...]) -> str:
    """Per state and metric: methods x support sizes (mean ± CI), then the paired differences of each meta-learned
    method with every baseline at each support size."""
    first = next(iter(reports.values()))
    out = []
    for state in states:
        if state not in first["curves"]:
            continue
        entry = first["curves"][state]
        caps = list(entry["caps"])
        for key, label in CURVE_METRICS:
            out.append(f"\n{label}, {state}: {entry['users']} users with at least {caps[-1]} support ratings\n")
            out.append("| method | " + " | ".join(f"{c} ratings" for c in caps) + " |")
            out.append("|---" * (len(caps) + 1) + "|")
            methods: dict[str, list[dict[str, Any]]] = {}
            for report in reports.values():
                e = report["curves"][state]
                for m in e["caps"][caps[0]]["methods"]:
                    if m not in BASELINES or report is first:
                        methods.setdefault(m, [e["caps"][c]["methods"][m][key] for c in caps])
            for m, values in methods.items():
                out.append(f"| {m} | " + " | ".join(_cell(v) for v in values) + " |")
        out.append(f"\nPaired MAE differences, {state} (method − baseline, 95% bootstrap CI, paired t-test p):\n")
        out.append("| method | baseline | " + " | ".join(f"{c} ratings" for c in caps) + " |")
        out.append("|---" * (len(caps) + 2) + "|")
        for report in reports.values():
            e = report["curves"][state]
            run = e["caps"][caps[0]]["first"]
            for baseline in ("mf", "fine-tune", "bias", "global", "popularity"):
                cells = [_p(e["caps"][c]["first_paired"]["mae"].get(baseline)) for c in caps]
                out.append(f"| {run} | {baseline} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def seeds_table(by_seed: dict[str, list[dict[str, Any]]], state: str) -> str:
    """The spread over training seeds: mean ± sd (over seeds) of each config's MAE at each support size and its
    full-support MAE in the state (the early-stopping steps are printed as the runs finish)."""
    lines = []
    for config, reports in by_seed.items():
        entry = reports[0]["curves"].get(state)
        if entry is None:
            continue
        caps = list(entry["caps"])
        name = reports[0]["run"]
        if not lines:
            lines = ["| config | seeds | " + " | ".join(f"MAE @{c}" for c in caps) + f" | MAE {state} (all) |"]
            lines.append("|---" * (len(caps) + 3) + "|")
        cells = []
        for c in caps:
            values = [r["curves"][state]["caps"][c]["methods"][name]["mae"]["mean"] for r in reports]
            cells.append(_spread(values))
        full = [r["states"][state]["methods"][name]["mae"]["mean"] for r in reports]
        lines.append(f"| {config} | {len(reports)} | " + " | ".join(cells) + f" | {_spread(full)} |")
    return "\n".join(lines)


def merged_curves(reports: dict[str, dict[str, Any]], states: tuple[str, ...]) -> dict[str, Any]:
    """The first report's curves of ``states`` with every other report's meta-learned methods added (the same
    users, query sets and supports: the data split does not depend on the config)."""
    first, *others = reports.values()
    merged = {state: json.loads(json.dumps(first["curves"][state])) for state in states if state in first["curves"]}
    for report in others:
        for state, entry in merged.items():
            for cap, values in entry["caps"].items():
                for method, metrics in report["curves"][state]["caps"][cap]["methods"].items():
                    if method not in BASELINES:
                        values["methods"][method] = metrics
    return merged


def _spread(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def stops(run_dir: Path) -> str:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    stop = [r for r in rows if r["split"] == "early_stop"]
    last = max(r["step"] for r in rows)
    return f"stopped at {stop[0]['step']}, best {stop[0]['best_step']}" if stop else f"ran to {last}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="synthetic", choices=("synthetic", "ml-100k", "ml-1m"))
    parser.add_argument("--root", help="data.root: the folder holding the MovieLens zip or its extracted folder")
    parser.add_argument("--runs", type=Path, default=Path("runs/recsys"))
    parser.add_argument("--configs", nargs="+", default=["metamf", "melu1", "melu"])
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per config")
    parser.add_argument("--extra", nargs="*", default=[], help="config overrides for every run")
    parser.add_argument("--table-only", action="store_true", help="print the tables of finished runs")
    parser.add_argument("--plot", type=Path, help="also draw every config's support-size curves (seed 0) to this PNG")
    args = parser.parse_args()
    by_seed: dict[str, list[dict[str, Any]]] = {}
    for config in args.configs:
        for seed in range(args.seeds):
            run_dir = args.runs / f"{args.source}-{config}-seed{seed}"
            if not args.table_only:
                train = ["fastadapt", "train", f"movielens/{config}", f"recsys.source={args.source}"]
                train += [f"training.seed={seed}", *args.extra, "--run-dir", str(run_dir), "--no-progress"]
                if args.root:
                    train.append(f"data.root={args.root}")
                train_s = run(train)
                eval_s = run(["fastadapt", "eval", str(run_dir), "--json"])
                print(f"{shlex.join(train)}: train {train_s:.0f} s ({stops(run_dir)}), eval {eval_s:.0f} s", flush=True)
            by_seed.setdefault(config, []).append(json.loads((run_dir / "eval" / "recsys_summary.json").read_text()))
    first = {config: reports[0] for config, reports in by_seed.items()}
    print(states_table(first, args.source))
    print(curve_tables(first, ("user_cold", "warm")))
    for state in ("user_cold", "warm"):
        print(f"\nSpread over training seeds, {state} (mean ± sd over seeds of the per-seed mean):\n")
        print(seeds_table(by_seed, state))
    if args.plot:
        print(f"\ncurves: {plot_support_curves(merged_curves(first, ('user_cold', 'warm')), args.plot)}")
    tuning = next(iter(first.values()))["tuning"]
    print("\nBaselines tuned on the validation users:")
    for method, record in tuning.items():
        print(f"  {method}: {record.get('chosen')} (validation MAE {record.get('val_mae', float('nan')):.4f})")


if __name__ == "__main__":
    main()
