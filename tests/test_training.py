"""Trainer: resume is bit-identical, NaN stops with a message, run directory contents."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from fastadapt.training import CheckpointError, Trainer, TrainingError, build_experiment, config_from_dict, read_metrics


def tiny_config(**training: object) -> object:
    return config_from_dict(
        {
            "name": "tiny",
            "data": {"dataset": "digits"},
            "task": {"ways": 3, "shots": 1, "queries": 2},
            "model": {"name": "conv4", "channels": 4, "pooled_blocks": 3},
            "algorithm": {"name": "maml", "inner_lr": 0.4, "inner_steps": 1},
            "training": {"meta_batch_size": 2, "val_every": 5, "val_episodes": 4, "checkpoint_every": 5, "log_every": 1}
            | training,
            "evaluation": {"episodes": 10},
        }
    )


def test_resume_is_bit_identical(tmp_path: Path) -> None:
    straight = Trainer(build_experiment(tiny_config(iterations=20)), tmp_path / "a", progress=False)
    straight.run()

    first = Trainer(build_experiment(tiny_config(iterations=10)), tmp_path / "b", progress=False)
    first.run()
    resumed = Trainer(build_experiment(tiny_config(iterations=20)), tmp_path / "b", progress=False)
    resumed.run(resume=True)

    assert resumed.step == 20
    for name, value in straight.params.items():
        assert torch.equal(value, resumed.params[name]), name
    rows_a = [r for r in read_metrics(tmp_path / "a") if r["split"] == "train"]
    rows_b = [r for r in read_metrics(tmp_path / "b") if r["split"] == "train"]
    assert [r["step"] for r in rows_b] == list(range(1, 21))
    assert rows_a == rows_b


def test_resume_drops_metrics_logged_after_the_checkpoint(tmp_path: Path) -> None:
    trainer = Trainer(build_experiment(tiny_config(iterations=7)), tmp_path, progress=False)
    trainer.run()  # checkpoints at 5 and 7
    trainer.step = 5
    trainer.save()  # pretend the run died at step 7 with its last checkpoint at step 5
    resumed = Trainer(build_experiment(tiny_config(iterations=7)), tmp_path, progress=False)
    resumed.run(resume=True)
    steps = [r["step"] for r in read_metrics(tmp_path) if r["split"] == "train"]
    assert steps == list(range(1, 8))


def test_run_directory_contents(tmp_path: Path) -> None:
    Trainer(build_experiment(tiny_config(iterations=5)), tmp_path, progress=False).run()
    assert (tmp_path / "config.yaml").is_file()
    assert (tmp_path / "checkpoints" / "last.safetensors").is_file()
    assert (tmp_path / "checkpoints" / "best.safetensors").is_file()
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    val = [r for r in read_metrics(tmp_path) if r["split"] == "val"]
    assert len(val) == 1 and 0.0 <= val[0]["accuracy"] <= 1.0


def test_nan_loss_stops_with_step_and_last_checkpoint(tmp_path: Path) -> None:
    trainer = Trainer(build_experiment(tiny_config(iterations=10)), tmp_path, progress=False)
    original = trainer.meta_step

    def poisoned() -> dict[str, float]:
        if trainer.step == 6:
            with torch.no_grad():
                next(iter(trainer.params.values())).fill_(math.nan)
        return original()

    trainer.meta_step = poisoned  # type: ignore[method-assign]
    last = tmp_path / "checkpoints" / "last.safetensors"
    with pytest.raises(
        TrainingError,
        match=rf"non-finite loss \(nan\) or gradient at step 7: training stopped; "
        rf"the last good checkpoint is {last}",
    ):
        trainer.run()
    state = json.loads(last.read_bytes()[8 : 8 + int.from_bytes(last.read_bytes()[:8], "little")])
    assert json.loads(state["__metadata__"]["state"])["step"] == 5


def test_resume_with_a_different_model_is_refused(tmp_path: Path) -> None:
    Trainer(build_experiment(tiny_config(iterations=5)), tmp_path, progress=False).run()
    changed = config_from_dict(tiny_config(iterations=10).to_dict() | {"model": {"name": "mlp"}})
    message = r"cannot resume .* with a different model.channels, model.name, model.pooled_blocks: these define\b"
    with pytest.raises(CheckpointError, match=message):
        Trainer(build_experiment(changed), tmp_path, progress=False).run(resume=True)


def test_training_episodes_take_train_ways_and_train_queries() -> None:
    config = config_from_dict(
        {
            "data": {"dataset": "digits", "train_rotations": [0, 90]},
            "task": {"ways": 3, "shots": 2, "queries": 4, "train_ways": 6, "train_queries": 1},
            "model": {"name": "conv4", "channels": 4, "pooled_blocks": 3},
            "algorithm": {"name": "protonet"},
        }
    )
    experiment = build_experiment(config)
    generator = torch.Generator().manual_seed(0)
    train = experiment.sources["train"].sample(generator)  # type: ignore[attr-defined]
    test = experiment.sources["test"].sample(generator)  # type: ignore[attr-defined]
    assert train.support_y.tolist() == [c for c in range(6) for _ in range(2)]
    assert train.query_y.tolist() == list(range(6))
    assert test.support_y.tolist() == [c for c in range(3) for _ in range(2)]
    assert test.query_y.tolist() == [c for c in range(3) for _ in range(4)]
    assert experiment.train_algorithm.ways == 6 and experiment.algorithm.ways == 3  # type: ignore[attr-defined]
    params = experiment.algorithm.init_params()
    assert experiment.train_algorithm.objective(params, train.support_x, train.support_y, train.query_x, train.query_y)[
        0
    ].isfinite()


@pytest.mark.parametrize("rates_lr", [None, 0.05])
def test_metasgd_rates_take_steps_of_rates_lr(tmp_path: Path, rates_lr: float | None) -> None:
    config = config_from_dict(
        {
            "data": {"dataset": "sinusoid"},
            "task": {"shots": 5, "queries": 5},
            "model": {"name": "mlp", "widths": [8]},
            "algorithm": {"name": "metasgd", "inner_lr": 0.01},
            "training": {"meta_batch_size": 2, "outer_lr": 0.001, "rates_lr": rates_lr, "val_every": 0},
        }
    )
    trainer = Trainer(build_experiment(config), tmp_path, progress=False)
    before = {k: v.detach().clone() for k, v in trainer.params.items()}
    trainer.meta_step()
    # Adam's first step moves every parameter with a non-zero gradient by its group's learning rate.
    for name, value in trainer.params.items():
        step = (value.detach() - before[name]).abs()
        moved = step[step > 0]
        assert moved.numel() > 0, name
        expected = (rates_lr or 0.001) if name.startswith("inner_lr.") else 0.001
        torch.testing.assert_close(moved, torch.full_like(moved, expected), rtol=1e-3, atol=1e-7)


def test_metasgd_resumes_with_its_rate_group_and_the_configs_rates_lr(tmp_path: Path) -> None:
    def config(rates_lr: float, iterations: int) -> object:
        return config_from_dict(
            {
                "data": {"dataset": "sinusoid"},
                "task": {"shots": 5, "queries": 5},
                "model": {"name": "mlp", "widths": [8]},
                "algorithm": {"name": "metasgd", "inner_lr": 0.01},
                "training": {"iterations": iterations, "meta_batch_size": 2, "rates_lr": rates_lr, "val_every": 0},
            }
        )

    Trainer(build_experiment(config(0.05, 2)), tmp_path, progress=False).run()
    resumed = Trainer(build_experiment(config(0.2, 4)), tmp_path, progress=False)
    resumed.restore(tmp_path / "checkpoints" / "last.safetensors")
    assert resumed.step == 2
    assert [g["base_lr"] for g in resumed.optimizer.param_groups] == [0.001, 0.2]
