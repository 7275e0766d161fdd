"""Runs the CLINC150 rows of docs/text.md: few-shot intent detection on frozen all-MiniLM-L6-v2 embeddings.

* ``allintents``: K in {5, 10} utterances of each of the 150 intents, 5 seeds of the K-shot draw; every
  method (meta-trained heads, baselines, ensembles and soups) scored on the 4,500 test utterances.
* ``heldout``: for each of the 3 folds over the 10 domains, ``fastadapt train clinc150_<algorithm>_5w5s``
  (exact CLI commands, fresh processes) for ProtoNet, MAML, ANIL and Meta-SGD at 5-way 1-shot, 5-way 5-shot
  and 15-way 1-shot,
  then every head, the baselines and the heads' ensemble on the same 600 test episodes of the held-out
  domains, with paired comparisons against the logistic-head baseline.
* ``gap``: fold 0's 5-way 1-shot heads on their training intents' unseen utterances against held-out intents.

One JSON line per result goes to RESULTS; rows already there are skipped (an interrupted run continues).
``--markdown`` prints the tables.

    FASTADAPT_DATA=... python benchmarks/clinc150_results.py --root ../shared/data/clinc150 --runs runs/clinc150
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from fastadapt.evaluation import compare_on_episodes, mean_ci95_t, paired_comparison
from fastadapt.text import (
    DEFAULT_ENCODER,
    HeadConfig,
    all_intents,
    encode_texts,
    episode_methods,
    head_method,
    heldout_classes,
    load_clinc150,
)
from fastadapt.training import load_checkpoint, load_run


#: The heads of the all-intents protocol. Their inner rate (per class: see HeadConfig) and adaptation steps are
#: chosen in every run by 2-fold cross-validation over its K-shot draw (fastadapt.text.select_head).
def all_intents_heads(shots: int) -> dict[str, HeadConfig]:
    episode = {"shots": shots - 2, "queries": 2, "iterations": 300}
    return {
        "protonet": HeadConfig("protonet", ways=20, meta_batch=8, **episode),
        "maml": HeadConfig("maml", hidden=(), **episode),
        "anil": HeadConfig("anil", **episode),
        "metasgd": HeadConfig("metasgd", hidden=(), **episode),
    }


PUBLISHED = {  # CLINC150 all-intents accuracy as reported by Zhang et al. 2021 (CPFT, arXiv:2109.06349)
    5: {"USE+ConveRT": 90.49, "DNNC": 91.02, "CPFT": 92.34},
    10: {"USE+ConveRT": 93.26, "DNNC": 93.76, "CPFT": 94.18},
}
ALGORITHMS = ("protonet", "maml", "anil", "metasgd")
SETTINGS = {"5w1s": ["task.shots=1"], "5w5s": [], "15w1s": ["task.ways=15", "task.shots=1"]}


def done(results: Path) -> list[dict[str, Any]]:
    """The rows written so far; a last line cut off by an interruption is ignored (its row reruns)."""
    if not results.exists():
        return []
    rows = []
    for line in results.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def finished(run_dir: Path, iterations: int) -> bool:
    """Whether a run directory holds a run trained for all its iterations (an interrupted one resumes)."""
    last = run_dir / "checkpoints" / "last.safetensors"
    return last.exists() and int(load_checkpoint(last)[1]["step"]) >= iterations


def append(results: Path, row: dict[str, Any]) -> None:
    with results.open("a") as handle:
        handle.write(json.dumps(row) + "\n")


def run_all_intents(root: str, results: Path, shots_list: list[int], seeds: int) -> None:
    dataset = load_clinc150(root)
    embeddings = encode_texts(DEFAULT_ENCODER, dataset.texts)
    have = {(r["shots"], r["seed"]) for r in done(results) if r["protocol"] == "allintents"}
    for shots in shots_list:
        for seed in range(seeds):
            if (shots, seed) in have:
                continue
            start = time.perf_counter()
            methods = all_intents(dataset, embeddings, shots, seed, all_intents_heads(shots), log=print)
            row = {"protocol": "allintents", "shots": shots, "seed": seed, "methods": methods}
            row["wall_s"] = round(time.perf_counter() - start, 1)
            append(results, row)


def run_heldout(root: str, runs: Path, results: Path, folds: int, episodes: int, iterations: int) -> None:
    have = {(r["fold"], r["setting"]) for r in done(results) if r["protocol"] == "heldout"}
    dataset = load_clinc150(root)
    for fold in range(folds):
        for setting, extra in SETTINGS.items():
            if (fold, setting) in have:
                continue
            heads, train_seconds = {}, {}
            for algorithm in ALGORITHMS:
                run_dir = runs / f"fold{fold}" / f"{algorithm}_{setting}"
                command = [
                    str(Path(sys.executable).with_name("fastadapt")), "train", f"clinc150_{algorithm}_5w5s",
                    *([f"data.root={root}"] if root else []), f"data.fold={fold}", f"data.folds={folds}",
                    f"training.iterations={iterations}", *extra, "--run-dir", str(run_dir), "--no-progress",
                ]  # fmt: skip
                start = time.perf_counter()
                if not finished(run_dir, iterations):
                    resume = ["--resume"] if (run_dir / "checkpoints" / "last.safetensors").exists() else []
                    subprocess.run(command + resume, check=True)
                train_seconds[algorithm] = round(time.perf_counter() - start, 1)
                experiment, params, _ = load_run(run_dir)
                heads[algorithm] = head_method(experiment.algorithm, params, experiment.config.algorithm.test_steps)
            source = experiment.sources["test"]
            start = time.perf_counter()
            scores = compare_on_episodes(episode_methods(heads), source, episodes=episodes, seed=1234)
            row: dict[str, Any] = {"protocol": "heldout", "fold": fold, "setting": setting, "train_s": train_seconds}
            row["held_out"] = heldout_classes(dataset, folds, fold, experiment.config.data.split_seed)[2]
            row["scores"] = {name: [round(float(x), 4) for x in v] for name, v in scores.items()}
            row["compare_s"] = round(time.perf_counter() - start, 1)
            print({name: round(float(np.mean(v)), 4) for name, v in scores.items()})
            append(results, row)


def run_gap(runs: Path, results: Path, episodes: int) -> None:
    """Each fold-0 head and baseline on training intents (their unseen ``val`` utterances) and on held-out
    intents, 5-way 1-shot: how much of a head's score is specific to the intents it was trained on."""
    if any(r["protocol"] == "gap" for r in done(results)):
        return
    heads, experiment = {}, None
    for algorithm in ALGORITHMS:
        experiment, params, _ = load_run(runs / "fold0" / f"{algorithm}_5w1s")
        heads[algorithm] = head_method(experiment.algorithm, params, experiment.config.algorithm.test_steps)
    assert experiment is not None
    row: dict[str, Any] = {"protocol": "gap", "fold": 0, "setting": "5w1s"}
    for split in ("val", "test"):
        scores = compare_on_episodes(episode_methods(heads), experiment.sources[split], episodes=episodes, seed=1234)
        row[split] = {name: round(float(np.mean(v)), 4) for name, v in scores.items()}
    print(row)
    append(results, row)


def _fmt(values: list[float]) -> str:
    mean, ci = mean_ci95_t(values)  # a few seeds: Student-t
    return f"{100 * mean:.2f} ± {100 * ci:.2f}"


def markdown(results: Path) -> str:
    rows = done(results)
    out = []
    by_shots: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        if r["protocol"] == "allintents":
            by_shots.setdefault(r["shots"], []).append(r)
    if by_shots:
        shots_list = sorted(by_shots)
        header = " | ".join(
            f"{k}-shot accuracy | {k}-shot macro-F1 | {k}-shot vs logistic | s / seed" for k in shots_list
        )
        out.append(f"| method | {header} |")
        out.append("|---|" + "---|---|---|---|" * len(shots_list))
        names = list(by_shots[shots_list[0]][0]["methods"])
        for name in names:
            cells = []
            for k in shots_list:
                seeds = by_shots[k]
                acc = [s["methods"][name]["accuracy"] for s in seeds]
                f1 = [s["methods"][name]["macro_f1"] for s in seeds]
                sec = np.mean([s["methods"][name]["seconds"] for s in seeds])
                vs = ""
                if name != "logistic" and len(seeds) >= 2:
                    p = paired_comparison(acc, [s["methods"]["logistic"]["accuracy"] for s in seeds])
                    vs = f"{100 * p.difference:+.2f}, p={p.p_value:.3f}"
                cells += [_fmt(acc), _fmt(f1), vs, f"{sec:.1f}"]
            out.append(f"| {name} | " + " | ".join(cells) + " |")
        for published in ("USE+ConveRT", "DNNC", "CPFT"):
            cells = []
            for k in shots_list:
                cells += [f"{PUBLISHED[k][published]:.2f}" if k in PUBLISHED else "", "", "", ""]
            out.append(f"| {published} (published) | " + " | ".join(cells) + " |")
        out.append("")
        seeds = ", ".join(f"{k}-shot {len(by_shots[k])}" for k in shots_list)
        walls = ", ".join(f"{k}-shot {np.mean([s['wall_s'] for s in by_shots[k]]):.0f} s" for k in shots_list)
        out.append(f"Seeds per column: {seeds}; wall time per seed (all methods): {walls}")
        out.append("")
    held = [r for r in rows if r["protocol"] == "heldout"]
    for setting in SETTINGS:
        mine = sorted((r for r in held if r["setting"] == setting), key=lambda r: r["fold"])
        if not mine:
            continue
        names = list(mine[0]["scores"])
        ways, shots = setting[:-1].split("w")
        out.append(
            f"**Held-out domains, {ways}-way {shots}-shot** "
            f"({len(mine[0]['scores']['logistic'])} test episodes per fold)"
        )
        out.append("")
        out.append(
            "| method | "
            + " | ".join(f"fold {r['fold']}" for r in mine)
            + " | mean of folds ± sd | vs logistic, all folds' episodes |"
        )
        out.append("|---|" + "---|" * (len(mine) + 2))
        for name in names:
            cells = [_fmt(r["scores"][name]) for r in mine]
            means = [100 * float(np.mean(r["scores"][name])) for r in mine]
            spread = f"{np.mean(means):.2f} ± {np.std(means, ddof=1) if len(means) > 1 else 0:.2f}"
            vs = ""
            if name != "logistic":
                pooled = [x for r in mine for x in r["scores"][name]]
                base = [x for r in mine for x in r["scores"]["logistic"]]
                p = paired_comparison(pooled, base)
                vs = f"{100 * p.difference:+.2f} [{100 * p.ci_low:+.2f}, {100 * p.ci_high:+.2f}], p={p.p_value:.3f}"
            out.append(f"| {name} | " + " | ".join(cells) + f" | {spread} | {vs} |")
        out.append("")
        out.append("Held-out domains: " + "; ".join(f"fold {r['fold']}: {', '.join(r['held_out'])}" for r in mine)
                   + ". Training seconds per head (fold 0): "
                   + ", ".join(f"{k} {v}" for k, v in mine[0]["train_s"].items()))  # fmt: skip
        out.append("")
    for r in rows:
        if r["protocol"] == "gap":
            out.append("**Training intents against held-out intents** (fold 0, 5-way 1-shot, the same heads)")
            out.append("")
            out.append("| method | training intents, unseen utterances | held-out intents | gap |")
            out.append("|---|---|---|---|")
            for name, value in r["val"].items():
                gap = 100 * (value - r["test"][name])
                out.append(f"| {name} | {100 * value:.2f} | {100 * r['test'][name]:.2f} | {gap:.2f} |")
            out.append("")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=None, help="folder with data_full.json and domains.json (default: the cache)")
    parser.add_argument("--runs", type=Path, default=Path("runs/clinc150"))
    parser.add_argument("--results", type=Path, default=None, help="default: RUNS/results.jsonl")
    parser.add_argument("--protocol", choices=("allintents", "heldout", "gap", "both"), default="both")
    parser.add_argument("--shots", type=int, nargs="+", default=[5, 10])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--episodes", type=int, default=600)
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--markdown", action="store_true", help="print the tables of RESULTS and stop")
    args = parser.parse_args()
    results = args.results or args.runs / "results.jsonl"
    if args.markdown:
        print(markdown(results))
        return
    args.runs.mkdir(parents=True, exist_ok=True)
    if args.protocol in ("allintents", "both"):
        run_all_intents(args.root, results, args.shots, args.seeds)
    if args.protocol in ("heldout", "both"):
        run_heldout(args.root, args.runs, results, args.folds, args.episodes, args.iterations)
    if args.protocol in ("gap", "both"):
        run_gap(args.runs, results, args.episodes)
    print(markdown(results))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
