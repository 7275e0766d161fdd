"""The command line, end to end on embedded data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from fastadapt.algorithms import REGISTRY
from fastadapt.cli import main

TINY = [
    "task.queries=3",
    "model.channels=4",
    "training.iterations=4",
    "training.meta_batch_size=2",
    "training.val_every=2",
    "training.val_episodes=3",
    "training.checkpoint_every=2",
]


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_algorithms_lists_the_registry() -> None:
    code, out, _ = run("algorithms")
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()] == list(REGISTRY)


def test_train_eval_resume(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    code, out, err = run("train", "digits_maml", *TINY, "--run-dir", str(run_dir), "--no-progress")
    assert code == 0, err
    assert f"run written to {run_dir}" in out

    code, out, err = run("eval", str(run_dir), "--episodes", "7", "--steps", "2", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert {
        "dataset",
        "algorithm",
        "ways",
        "shots",
        "queries",
        "episodes",
        "metric",
        "mean",
        "ci95",
        "mean_before_adaptation",
    } <= set(result)
    assert (result["dataset"], result["algorithm"], result["ways"], result["shots"], result["queries"]) == (
        "digits",
        "maml",
        3,
        1,
        3,
    )
    assert (result["episodes"], result["steps"], result["metric"]) == (7, 2, "accuracy")
    assert 0.0 <= result["mean"] <= 1.0 and result["ci95"] >= 0.0
    rows = (run_dir / "eval" / "test_episodes.jsonl").read_text().splitlines()
    assert len(rows) == 7 and set(json.loads(rows[0])) == {"episode", "after", "before"}

    code, _, err = run("train", "digits_maml", *TINY, "--run-dir", str(run_dir), "--no-progress")
    assert code == 2 and "already holds a run; pass --resume" in err

    more = [*TINY, "training.iterations=6"]
    code, _, err = run("train", "digits_maml", *more, "--run-dir", str(run_dir), "--resume", "--no-progress")
    assert code == 0, err
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 6


def test_bad_input_fails_with_a_message(tmp_path: Path) -> None:
    code, _, err = run("train", "digits_maml", "training.iteratons=3", "--run-dir", str(tmp_path / "a"))
    assert code == 2
    assert "unknown config key 'training.iteratons'" in err

    code, _, err = run("train", "digits_maml", "--run-dir", str(tmp_path / "b"), "--resume")
    assert code == 2 and "has no checkpoints/ to resume from" in err

    code, _, err = run("eval", str(tmp_path))
    assert code == 2 and "is not a run directory: it has no config.yaml" in err


@pytest.mark.slow
def test_short_demo_beats_chance_and_no_adaptation(tmp_path: Path) -> None:
    """A shortened demo: MAML on sinusoids beats the unadapted MSE, ProtoNet and MAML on held-out digits
    beat chance (1/3) by more than their confidence intervals."""
    short = {
        "sinusoid_maml": ["training.iterations=400", "training.val_every=200"],
        "digits_protonet": ["training.iterations=60", "training.val_every=30", "model.channels=32"],
        "digits_maml": ["training.iterations=60", "training.val_every=30", "model.channels=32"],
    }
    for name, overrides in short.items():
        run_dir = tmp_path / name
        code, _, err = run("train", name, *overrides, "--run-dir", str(run_dir), "--no-progress")
        assert code == 0, err
        code, out, err = run("eval", str(run_dir), "--episodes", "200", "--json")
        assert code == 0, err
        result = json.loads(out)
        if result["metric"] == "mse":
            assert result["mean"] + result["ci95"] < result["mean_before_adaptation"] - result["ci95_before_adaptation"]
        else:
            assert result["mean"] - result["ci95"] > 1 / 3 + 0.05, result


def test_protonet_trains_on_more_ways_and_tests_at_others(tmp_path: Path) -> None:
    """task.train_ways gives ProtoNet wider training episodes (Snell et al. train 60-way, test 5/20-way);
    eval --ways/--shots test one run in several settings and keep each setting's files apart."""
    run_dir = tmp_path / "run"
    args = ["train", "digits_protonet", *TINY, "task.train_ways=5", "task.train_queries=2", "--run-dir", str(run_dir)]
    code, _, err = run(*args, "--no-progress")
    assert code == 0, err
    code, out, err = run("eval", str(run_dir), "--episodes", "5", "--ways", "2", "--shots", "3", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert (result["ways"], result["shots"], result["episodes"]) == (2, 3, 5)
    assert len((run_dir / "eval" / "test_2w3s_episodes.jsonl").read_text().splitlines()) == 5
    assert json.loads((run_dir / "eval" / "test_2w3s_summary.json").read_text())["ways"] == 2


def test_other_ways_are_refused_where_the_head_is_sized_by_them(tmp_path: Path) -> None:
    code, _, err = run("train", "digits_maml", *TINY, "task.train_ways=5", "--run-dir", str(tmp_path / "a"))
    assert code == 2
    assert "task.train_ways=5 differs from task.ways=3, but maml's output layer has one unit per way" in err

    run_dir = tmp_path / "b"
    code, _, err = run("train", "digits_maml", *TINY, "--run-dir", str(run_dir), "--no-progress")
    assert code == 0, err
    code, _, err = run("eval", str(run_dir), "--ways", "2")
    assert code == 2
    assert "--ways 2: this maml run was trained with task.ways=3 and its output layer has 3 units" in err


def test_eval_of_several_training_seeds_reports_both_intervals(tmp_path: Path) -> None:
    for seed in (0, 1):
        code, _, err = run(
            "train", "digits_protonet", "training.iterations=3", "training.val_every=0", f"training.seed={seed}",
            "--run-dir", str(tmp_path / f"s{seed}"), "--no-progress",
        )  # fmt: skip
        assert code == 0, err
    code, out, err = run("eval", str(tmp_path / "s0"), str(tmp_path / "s1"), "--episodes", "30", "--json")
    assert code == 0, err
    combined = json.loads(out)
    assert combined["runs"] == 2 and combined["training_seeds"] == [0, 1]
    means = [r["mean"] for r in combined["per_run"]]
    assert combined["mean"] == pytest.approx(sum(means) / 2)
    assert combined["ci95_over_runs"] == pytest.approx(12.706 * abs(means[0] - means[1]) / 2, rel=1e-3)  # t(0.975, 1)
    assert combined["ci95_over_episodes"] > 0
    code, _, err = run(
        "train", "digits_maml", "training.iterations=1", "training.val_every=0", "--run-dir", str(tmp_path / "m"),
        "--no-progress",
    )  # fmt: skip
    code, _, err = run("eval", str(tmp_path / "s0"), str(tmp_path / "m"), "--episodes", "5")
    assert code == 2 and "the runs differ in algorithm, dataset, ways, shots or metric" in err
