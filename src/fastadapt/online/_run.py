"""``fastadapt stream CONFIG``: a config's tasks as a stream, the online learner against its references, and a
run directory with the per-round scores, curves and the online learner's final meta-parameters."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .._extras import optional, require
from ..algorithms import Algorithm
from ..recsys import RecsysData, UserTasks, user_task
from ..tasks import EpisodeSampler, PrefetchedEpisodes, Task
from ..training import (
    CheckpointError,
    Config,
    ConfigError,
    Experiment,
    RunLogger,
    build_experiment,
    load_checkpoint,
    load_run,
    save_checkpoint,
    save_config,
)
from ..typing import Params
from ._continual import continual_users
from ._learner import OnlineMetaLearner, OnlineSettings, StreamResult, from_scratch, run_stream
from ._streams import FreshEpisodes, sampled_tasks, users_in_time_order

SPLITS = ("train", "val", "test")


def _frozen_params(config: Config, experiment: Experiment) -> Params | None:
    if config.stream.frozen is None:
        if config.stream.start == "frozen":
            raise ConfigError("stream.start=frozen needs stream.frozen=RUN_DIR (a meta-trained run of this config)")
        return None
    _, params, path = load_run(config.stream.frozen)
    if load_checkpoint(path)[1].get("stream_split") == config.stream.split:
        raise ConfigError(
            f"stream.frozen={config.stream.frozen} is a stream run that learned from the {config.stream.split} split; "
            "as the frozen reference it would be scored on data it learned from: use a meta-trained run"
        )
    expected = experiment.algorithm.init_params()
    if params.keys() != expected.keys() or any(params[k].shape != v.shape for k, v in expected.items()):
        raise CheckpointError(
            f"stream.frozen={config.stream.frozen}: {path} holds another model or algorithm than this config's "
            f"{config.algorithm.name} on {config.model.name}; point stream.frozen at a run of the same config"
        )
    return params


def stream_seed(seed: int, split: str) -> int:
    """The stream's own seed, unrelated to the trainer's (``training.seed``) and the evaluation's: a regression
    family's splits are one source that differ only by seed, so a shared seed would replay training tasks."""
    return int(np.random.SeedSequence([seed, SPLITS.index(split), 0x57AEA]).generate_state(1)[0])


def stream_tasks(experiment: Experiment, split: str, fresh: bool, seed: int) -> Iterable[Task]:
    """The config's tasks of ``split`` in stream order, on the experiment's device: users by their first rating
    (movielens), episodes with every example used once (``fresh``), or endless samples of a regression family."""
    generator = torch.Generator().manual_seed(stream_seed(seed, split))
    source = experiment.sources[split]
    if isinstance(source, PrefetchedEpisodes):  # a fresh stream draws its own episodes; they are loaded as drawn
        source = source.sampler
    if isinstance(experiment.context, RecsysData) and isinstance(source, UserTasks):
        data = experiment.context.data
        tasks: Iterable[Task] = (user_task(data, t) for t in users_in_time_order(data, source.tasks))
    elif fresh and isinstance(source, EpisodeSampler):
        tasks = FreshEpisodes(source, generator)
    else:
        tasks = sampled_tasks(source, generator)
    return (task.to(experiment.device, experiment.dtype) for task in tasks)


def plot_stream(result: StreamResult, path: Path, window: int) -> Path:
    """Each learner's running mean over ``window`` rounds against the round (a matplotlib ``Figure`` on the Agg
    canvas: the global backend is untouched).

    Raises:
        MissingExtraError: matplotlib is not installed (``pip install 'fastadapt[plots]'``).
    """
    require("matplotlib", "plots", "the stream plot")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
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
    return path


def _check(config: Config, run_dir: Path) -> None:
    s = config.stream
    if s.split not in SPLITS:
        raise ConfigError(f"unknown stream.split {s.split!r}; choose one of {SPLITS}")
    if s.start not in ("init", "frozen"):
        raise ConfigError(f"unknown stream.start {s.start!r}; choose 'init' or 'frozen'")
    for key, low in (("rounds", 1), ("last", 1), ("scratch_steps", 0)):
        if getattr(s, key) < low:
            raise ConfigError(f"stream.{key} must be >= {low}, got {getattr(s, key)}")
    if s.outer_lr is not None and s.outer_lr <= 0:
        raise ConfigError(f"stream.outer_lr must be > 0, got {s.outer_lr}")
    if s.split == "train" and config.task.train_ways not in (None, config.task.ways):
        raise ConfigError(
            f"stream.split=train with task.train_ways={config.task.train_ways} != task.ways={config.task.ways}: the "
            "stream is scored at task.ways; remove task.train_ways or stream from the val or test split"
        )
    taken = [
        name for name in ("config.yaml", "metrics.jsonl", "checkpoints", "summary.json") if (run_dir / name).exists()
    ]
    if taken:
        raise ConfigError(f"{run_dir} already holds a run ({', '.join(taken)}); choose another --run-dir")


def stream_run(config: Config, run_dir: Path, progress: bool = True) -> dict[str, Any]:
    """Runs ``config``'s stream into ``run_dir`` (which must not hold a run); returns the summary that
    ``summary.json`` holds."""
    _check(config, run_dir)
    s = config.stream
    experiment = build_experiment(config)
    frozen = _frozen_params(config, experiment)
    device = experiment.device
    frozen = None if frozen is None else {k: v.to(device) for k, v in frozen.items()}
    start = frozen if s.start == "frozen" and frozen is not None else experiment.algorithm.init_params()
    training = config.training
    try:
        settings = OnlineSettings(
            s.replay, s.batch, s.updates, training.outer_lr if s.outer_lr is None else s.outer_lr,
            training.rates_lr, config.algorithm.test_steps, experiment.strategy,
        )  # fmt: skip
        tasks = stream_tasks(experiment, s.split, s.fresh, s.seed)
        if isinstance(experiment.context, RecsysData):
            tasks = list(tasks)  # the users, kept for the continual report too
    except ValueError as error:
        raise ConfigError(str(error)) from None
    learner = OnlineMetaLearner(experiment.algorithm, {k: v.to(device) for k, v in start.items()}, settings, s.seed)
    algorithm = experiment.algorithm
    scratch = (
        from_scratch(experiment.model, algorithm.loss, algorithm.metric, s.scratch_steps, s.scratch_lr)
        if s.scratch_steps
        else None
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / "config.yaml")
    logger = RunLogger(run_dir)
    bar = tqdm(total=s.rounds, desc="stream", disable=not progress)

    def on_round(row: dict[str, float]) -> None:
        logger.log("stream", int(row["round"]), **{k: v for k, v in row.items() if k != "round"})
        bar.update(1)

    try:
        result = run_stream(learner, tasks, s.rounds, frozen, scratch, on_round)
    except ValueError as error:  # an empty stream
        raise ConfigError(str(error)) from None
    finally:
        bar.close()
        logger.close()
    summary = result.summary(s.last) | {"split": s.split, "start": s.start, "frozen": s.frozen}
    drawn = optional("matplotlib", "plots", "the stream plot") is not None  # the stream's results are kept either way
    summary["plot"] = str(plot_stream(result, run_dir / "stream.png", s.last)) if drawn else None
    if isinstance(experiment.context, RecsysData):
        summary["continual"] = _continual(config, experiment.algorithm, frozen, list(tasks))
    tensors = {f"params/{k}": v for k, v in learner.params.items()}
    state = {"step": len(result.rows), "stream_split": s.split}  # `eval` refuses this split: the stream learned it
    save_checkpoint(run_dir / "checkpoints" / "last.safetensors", tensors, state)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _continual(config: Config, algorithm: Algorithm, frozen: Params | None, users: list[Task]) -> dict[str, Any] | str:
    """The per-user continual report on the stream's users, with the frozen run's parameters: never with the
    online learner's, which learned from these users' ratings."""
    if frozen is None:
        return "skipped: needs stream.frozen=RUN (the online learner's parameters learned from these users)"
    if not config.section("recsys").time_ordered:
        return "skipped: needs recsys.time_ordered=true (a user's ratings must arrive in time order)"
    # One step per new rating from the user's current state; re-adaptation takes the trained inner steps.
    return continual_users(algorithm, frozen, users, steps=1).summary()
