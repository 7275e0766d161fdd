"""The hypernetwork beside MAML, all in one run: sinusoid K = 5, 10, 20 and digits 3-way 1-shot.

For each setting it meta-trains, with the same number of meta-iterations and the shipped configs' settings:
MAML (one inner step in training), the hypernetwork with k = 0 (amortised: adaptation is one forward pass)
and with k = 1 (trained through one refinement step from the generated weights); ProtoNet on digits. Each
is tested on the same 600 fixed-seed episodes: MAML after 1 and 5 inner steps, the hypernetwork at the k it
was trained with. Adaptation time per task is the median of ``adapt`` over 200 test tasks, one thread,
under ``torch.no_grad()`` (no graph is kept at serving time), measured after all training in this process.

    python benchmarks/hypernet_results.py --runs runs/hypernet        # writes runs/hypernet/results.jsonl
    python benchmarks/hypernet_results.py --runs runs/hypernet --markdown

``--seeds N`` trains every model with ``training.seed`` 0..N-1 (run directories ``...-seedS`` past seed 0) and
tests each on the same episodes; the table then adds, per row, the mean and Student-t 95% interval over the
seeds of the test metric and of the paired difference from the same seed's MAML-5, and on how many seeds the
row beat MAML-5. Adaptation times are measured on seed 0's models.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fastadapt.evaluation import evaluate, mean_ci95_t, paired_comparison
from fastadapt.training import Trainer, build_experiment, load_run, resolve_config

#: (setting, shipped config, overrides) of every trained model; the method name is the config's algorithm.
SINUSOID_SHOTS = (5, 10, 20)


def plan(
    iterations: dict[str, int],
    omniglot_root: str | None,
    omniglot_refine: bool = True,
    sinusoid_shots: tuple[int, ...] = SINUSOID_SHOTS,
) -> list[tuple[str, str, str, list[str]]]:
    rows = []
    for shots in sinusoid_shots:
        setting = f"sinusoid K={shots}"
        common = [f"task.shots={shots}", f"training.iterations={iterations['sinusoid']}", "training.val_every=1000"]
        rows += [
            (setting, "maml", "sinusoid_maml", common),
            (setting, "hypernet k=0", "sinusoid_hypernet", common),
            (
                setting,
                "hypernet k=1",
                "sinusoid_hypernet",
                [*common, "algorithm.inner_steps=1", "algorithm.test_steps=1"],
            ),
        ]
    common = [f"training.iterations={iterations['digits']}"]
    rows += [
        ("digits 3w1s", "maml", "digits_maml", common),
        ("digits 3w1s", "protonet", "digits_protonet", common),
        ("digits 3w1s", "hypernet k=0", "digits_hypernet", common),
        (
            "digits 3w1s",
            "hypernet k=1",
            "digits_hypernet",
            [*common, "algorithm.inner_steps=1", "algorithm.test_steps=1"],
        ),
    ]
    if omniglot_root:  # MAML: meta-batch 8 (as in docs/results.md); the hypernetwork: 4 tasks of 20 ways
        common = [f"data.root={omniglot_root}", "training.val_every=500", "training.val_episodes=100"]
        maml = [*common, f"training.iterations={iterations['omniglot_maml']}", "training.meta_batch_size=8"]
        hyper = [*common, f"training.iterations={iterations['omniglot_hypernet']}", "training.schedule=constant"]
        refine = ["algorithm.inner_steps=1", "algorithm.test_steps=1"]
        rows += [
            ("omniglot 5w1s", "maml", "omniglot_maml_5w1s", [*maml, "training.strategy=loop"]),
            ("omniglot 5w1s", "hypernet k=0", "omniglot_hypernet_5w1s", hyper),
        ]
        if omniglot_refine:
            rows.append(("omniglot 5w1s", "hypernet k=1", "omniglot_hypernet_5w1s", [*hyper, *refine]))
    return rows


def adapt_ms(run_dir: Path, steps: int | None, tasks: int = 200) -> float:
    """Median milliseconds of one ``adapt`` on a test task, one thread, no graph kept."""
    experiment, params, _ = load_run(run_dir)
    generator = torch.Generator().manual_seed(99)
    sampled = [experiment.sources["test"].sample(generator) for _ in range(tasks + 10)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    times = []
    try:
        with torch.no_grad():
            for i, task in enumerate(sampled):
                start = time.perf_counter()
                experiment.algorithm.adapt(params, task.support_x, task.support_y, steps=steps)
                if i >= 10:  # warm-up
                    times.append(1000 * (time.perf_counter() - start))
    finally:
        torch.set_num_threads(threads)
    return statistics.median(times)


def run(
    runs: Path,
    iterations: dict[str, int],
    episodes: int,
    omniglot_root: str | None,
    train_only: bool,
    seeds: int = 1,
    omniglot_refine: bool = True,
    sinusoid_shots: tuple[int, ...] = SINUSOID_SHOTS,
) -> None:
    runs.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    trained: list[tuple[str, str, int, Path, float]] = []
    for seed in range(seeds):
        for setting, method, config_name, overrides in plan(iterations, omniglot_root, omniglot_refine, sinusoid_shots):
            name = f"{setting}-{method}".replace(" ", "_").replace("=", "")
            run_dir = runs / (name if seed == 0 else f"{name}-seed{seed}")
            config = resolve_config(config_name, [*overrides, f"training.seed={seed}"])
            start = time.perf_counter()
            resume = (run_dir / "checkpoints" / "last.safetensors").exists()  # an interrupted run continues
            Trainer(build_experiment(config), run_dir, progress=False).run(resume=resume)
            trained.append((setting, method, seed, run_dir, time.perf_counter() - start))
            print(f"trained {setting} {method} seed {seed} in {trained[-1][4]:.0f} s", flush=True)
    if train_only:
        return
    scores: dict[tuple[str, str, int], list[float]] = {}
    for setting, method, seed, run_dir, seconds in trained:
        experiment, params, _ = load_run(run_dir)
        steps_list = [1, 5] if method == "maml" else [experiment.config.algorithm.test_steps]
        for steps in steps_list:
            result = evaluate(
                experiment.algorithm,
                params,
                experiment.sources["test"],
                episodes=episodes,
                seed=experiment.config.evaluation.seed,
                steps=steps,
            )
            name = f"{method} ({steps} steps)" if method == "maml" else method
            scores[(setting, name, seed)] = [r["after"] for r in result.per_episode]
            results.append(
                {
                    "setting": setting,
                    "method": name,
                    "seed": seed,
                    "metric": result.metric,
                    "mean": result.mean,
                    "ci95": result.ci95,
                    "episodes": episodes,
                    "train_seconds": seconds,
                    "iterations": experiment.config.training.iterations,
                    "run_dir": str(run_dir),
                    "steps": steps,
                }
            )
    for row in results:  # timing last, in one quiet phase
        if row["seed"] == 0:
            row["adapt_ms"] = adapt_ms(Path(row["run_dir"]), row["steps"])
        reference = scores.get((row["setting"], "maml (5 steps)", row["seed"]))
        if reference is not None and row["method"] != "maml (5 steps)":
            sign = -1.0 if row["metric"] == "mse" else 1.0  # positive: better than MAML-5
            mine = np.asarray(scores[(row["setting"], row["method"], row["seed"])])
            paired = paired_comparison(sign * mine, sign * np.asarray(reference))
            row["vs_maml5"] = {
                "difference": paired.difference, "low": paired.ci_low, "high": paired.ci_high, "p": paired.p_value
            }  # fmt: skip
        print(json.dumps(row), flush=True)
    with (runs / "results.jsonl").open("w") as f:
        for row in results:
            f.write(json.dumps(row) + "\n")


def markdown(runs: Path) -> str:
    every = [json.loads(line) for line in (runs / "results.jsonl").read_text().splitlines()]
    rows = [r for r in every if r.get("seed", 0) == 0]
    seeds = len({r.get("seed", 0) for r in every})
    header = "| setting | method | test metric (600 episodes) | vs MAML-5 (paired, 95% CI) | adapt ms | speed-up |"
    rule = "|---|---|---|---|---|---|"
    if seeds > 1:
        header += f" over {seeds} training seeds: metric | vs MAML-5 | seeds better |"
        rule += "---|---|---|"
    lines = [header, rule]
    for row in rows:
        scale, unit = (100.0, " %") if row["metric"] == "accuracy" else (1.0, " MSE")
        maml5 = next(r for r in rows if r["setting"] == row["setting"] and r["method"] == "maml (5 steps)")
        versus = "—"
        if "vs_maml5" in row:
            v = row["vs_maml5"]
            versus = f"{v['difference'] * scale:+.3f} [{v['low'] * scale:+.3f}, {v['high'] * scale:+.3f}]"
        line = (
            f"| {row['setting']} | {row['method']} | {row['mean'] * scale:.3f} ± {row['ci95'] * scale:.3f}{unit} | "
            f"{versus} | {row['adapt_ms']:.3f} | {maml5['adapt_ms'] / row['adapt_ms']:.1f}× faster |"
        )
        if seeds > 1:
            same = [r for r in every if r["setting"] == row["setting"] and r["method"] == row["method"]]
            mean, ci = mean_ci95_t([r["mean"] * scale for r in same])
            line += f" {mean:.3f} ± {ci:.3f} |"
            differences = [r["vs_maml5"]["difference"] * scale for r in same if "vs_maml5" in r]
            if differences:
                d_mean, d_ci = mean_ci95_t(differences)
                line += f" {d_mean:+.3f} ± {d_ci:.3f} | {sum(d > 0 for d in differences)}/{len(differences)} |"
            else:
                line += " — | |"
        lines.append(line)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=Path("runs/hypernet"))
    parser.add_argument("--sinusoid-iterations", type=int, default=10_000)
    parser.add_argument("--digits-iterations", type=int, default=300)
    parser.add_argument("--omniglot-root", help="also Omniglot 5-way 1-shot, from this folder of the zips")
    parser.add_argument("--omniglot-maml-iterations", type=int, default=2400)
    parser.add_argument("--omniglot-hypernet-iterations", type=int, default=1000)
    parser.add_argument("--train-only", action="store_true", help="train the models, evaluate nothing")
    parser.add_argument("--episodes", type=int, default=600)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for training and evaluation")
    parser.add_argument("--markdown", action="store_true", help="Print the table of a finished run.")
    parser.add_argument("--seeds", type=int, default=1, help="training seeds per model (0..N-1)")
    parser.add_argument("--sinusoid-shots", type=int, nargs="*", default=list(SINUSOID_SHOTS), help="sinusoid K values")
    parser.add_argument(
        "--no-omniglot-refine", action="store_true", help="leave out Omniglot's hypernetwork with k = 1"
    )
    args = parser.parse_args()
    if args.markdown:
        print(markdown(args.runs))
        return
    # One thread: these networks are too small to gain from a second one, and two threads per process
    # thrash when anything else runs on a 2-core machine.
    torch.set_num_threads(args.threads)
    iterations = {"sinusoid": args.sinusoid_iterations, "digits": args.digits_iterations}
    iterations |= {
        "omniglot_maml": args.omniglot_maml_iterations,
        "omniglot_hypernet": args.omniglot_hypernet_iterations,
    }
    run(
        args.runs,
        iterations,
        args.episodes,
        args.omniglot_root,
        args.train_only,
        args.seeds,
        not args.no_omniglot_refine,
        tuple(args.sinusoid_shots),
    )
    if not args.train_only:
        print(markdown(args.runs))


if __name__ == "__main__":
    main()
