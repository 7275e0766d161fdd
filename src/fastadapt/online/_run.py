"""``fastadapt stream CONFIG``: a config's tasks as a stream, the online learner against its references, and a
run directory with the per-round scores, curves and the online learner's final meta-parameters."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..recsys import user_task
from ..tasks import EpisodeSampler, Task
from ..training import (
    CheckpointError,
    Config,
    ConfigError,
    Experiment,
    RunLogger,
    build_experiment,
    load_run,
    save_checkpoint,
    save_config,
)
from ..typing import Params
from ._continual import continual_users
from ._learner import OnlineMetaLearner, OnlineSettings, StreamResult, from_scratch, run_stream
from ._streams import FreshEpisodes, sampled_tasks, users_in_time_order

SPLITS = ("train", "val", "test")
MOVIELENS_STATES = {"train": "train", "val": "warm", "test": "user_cold"}


def _frozen_params(config: Config, experiment: Experiment) -> Params | None:
    if config.stream.frozen is None:
        if config.stream.start == "frozen":
            raise ConfigError("stream.start=frozen needs stream.frozen=RUN_DIR (a meta-trained run of this config)")
        return None
    _, params, path = load_run(config.stream.frozen)
    expected = experiment.algorithm.init_params()
    if params.keys() != expected.keys() or any(params[k].shape != v.shape for k, v in expected.items()):
        raise CheckpointError(
            f"stream.frozen={config.stream.frozen}: {path} holds another model or algorithm than this config's "
            f"{config.algorithm.name} on {config.model.name}; point stream.frozen at a run of the same config"
        )
    return params


def stream_tasks(experiment: Experiment, split: str, fresh: bool, seed: int) -> Iterable[Task]:
    """The config's tasks of ``split`` in stream order: new users by their first rating (movielens), episodes
    with every example used once (``fresh``), or endless samples of a regression family."""
    generator = torch.Generator().manual_seed(seed)
    if experiment.recsys is not None:
        data = experiment.recsys.data
        return [
            user_task(data, t)
            for t in users_in_time_order(data, experiment.recsys.split.tasks[MOVIELENS_STATES[split]])
        ]
    source = experiment.sources[split]
    if fresh and isinstance(source, EpisodeSampler):
        return FreshEpisodes(source, generator)
    return sampled_tasks(source, generator)


def plot_stream(result: StreamResult, path: Path, window: int) -> Path:
    """Each learner's running mean over ``window`` rounds against the round."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    rounds = range(1, len(result.rows) + 1)
    for name in result.learners:
        ax.plot(rounds, result.curve(name, window), label=name)
    ax.set(xlabel="round (task of the stream)", ylabel=f"{result.metric}, mean of the last {window} rounds")
    if result.metric == "mse":
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def stream_run(config: Config, run_dir: Path, progress: bool = True) -> dict[str, Any]:
    """Runs ``config``'s stream into ``run_dir``; returns the summary that ``summary.json`` holds."""
    s = config.stream
    if s.split not in SPLITS:
        raise ConfigError(f"unknown stream.split {s.split!r}; choose one of {SPLITS}")
    if s.start not in ("init", "frozen"):
        raise ConfigError(f"unknown stream.start {s.start!r}; choose 'init' or 'frozen'")
    if s.last < 1:
        raise ConfigError(f"stream.last must be >= 1, got {s.last}")
    if s.scratch_steps < 0:
        raise ConfigError(f"stream.scratch_steps must be >= 0 (0: no from-scratch reference), got {s.scratch_steps}")
    experiment = build_experiment(config)
    frozen = _frozen_params(config, experiment)
    start = frozen if s.start == "frozen" and frozen is not None else experiment.algorithm.init_params()
    training = config.training
    try:
        settings = OnlineSettings(
            s.replay, s.batch, s.updates, s.outer_lr or training.outer_lr, training.rates_lr,
            config.algorithm.test_steps, experiment.strategy,
        )  # fmt: skip
    except ValueError as error:
        raise ConfigError(str(error)) from None
    learner = OnlineMetaLearner(experiment.algorithm, start, settings, seed=s.seed)
    task_type = experiment.algorithm.task_type
    scratch = from_scratch(experiment.model, task_type, s.scratch_steps, s.scratch_lr) if s.scratch_steps else None
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / "config.yaml")
    logger = RunLogger(run_dir)
    bar = tqdm(total=s.rounds, desc="stream", disable=not progress)

    def on_round(row: dict[str, float]) -> None:
        logger.log("stream", int(row["round"]), **{k: v for k, v in row.items() if k != "round"})
        bar.update(1)

    try:
        tasks = stream_tasks(experiment, s.split, s.fresh, s.seed)
        result = run_stream(learner, tasks, s.rounds, frozen, scratch, on_round)
    finally:
        bar.close()
        logger.close()
    summary = result.summary(s.last) | {"split": s.split, "start": s.start, "frozen": s.frozen}
    summary["plot"] = str(plot_stream(result, run_dir / "stream.png", s.last))
    if experiment.recsys is not None:  # each new user's own stream of ratings, with the reference's parameters
        users = list(stream_tasks(experiment, s.split, s.fresh, s.seed))
        params = frozen if frozen is not None else learner.params
        # One step per new rating from the user's current state; re-adaptation takes the trained inner steps.
        report = continual_users(experiment.algorithm, {k: v.detach() for k, v in params.items()}, users, steps=1)
        summary["continual"] = report.summary()
    tensors = {f"params/{k}": v for k, v in learner.params.items()}
    save_checkpoint(run_dir / "checkpoints" / "last.safetensors", tensors, {"step": len(result.rows), "stream": True})
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
