"""A short meta-training on real Omniglot (the Vinyals split) is far above chance."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastadapt.training import Trainer, build_experiment, evaluate_run, resolve_config


@pytest.mark.slow
def test_protonet_on_omniglot_is_far_above_chance(tmp_path: Path, decoded_omniglot: Path) -> None:
    config = resolve_config(
        "omniglot_protonet_5w1s",
        [
            f"data.root={decoded_omniglot}",
            "training.iterations=75",  # 85 % after 75 (100 test episodes); the bar is 60 %
            "training.meta_batch_size=2",
            "training.val_every=0",
            "task.train_ways=20",  # 20-way training episodes: a third of the shipped 60-way cost
        ],
    )
    experiment = build_experiment(config)
    assert len(experiment.sources["test"].classes) == 423  # Vinyals test characters, x4 rotations as classes
    Trainer(experiment, tmp_path / "run", progress=False).run()
    result = evaluate_run(tmp_path / "run", episodes=100)
    assert (result.dataset, result.ways, result.shots, result.split) == ("omniglot", 5, 1, "test")
    assert result.mean - result.ci95 > 0.6, result.summary()  # chance is 0.2
