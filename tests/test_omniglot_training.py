"""A short meta-training on real Omniglot (the Vinyals split) is far above chance."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastadapt.data import DATA_ENV
from fastadapt.training import Trainer, build_experiment, evaluate_run, resolve_config

OMNIGLOT = Path(__file__).parents[2] / "shared" / "data" / "omniglot"


@pytest.mark.slow
def test_protonet_on_omniglot_is_far_above_chance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not (OMNIGLOT / "images_background.zip").is_file():
        pytest.skip(f"shared data not found at {OMNIGLOT} (expected a copy of shared/ beside the clone)")
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "cache"))
    config = resolve_config(
        "omniglot_protonet_5w1s",
        [f"data.root={OMNIGLOT}", "training.iterations=150", "training.meta_batch_size=2", "training.val_every=0"],
    )
    experiment = build_experiment(config)
    assert len(experiment.sources["test"].classes) == 423  # Vinyals test characters, x4 rotations as classes
    Trainer(experiment, tmp_path / "run", progress=False).run()
    result = evaluate_run(tmp_path / "run", episodes=100)
    assert (result.dataset, result.ways, result.shots, result.split) == ("omniglot", 5, 1, "test")
    assert result.mean - result.ci95 > 0.6, result.summary()  # chance is 0.2
