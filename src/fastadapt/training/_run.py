"""Run directories: find the shipped configs, reload a finished run, evaluate it."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..evaluation import EvalResult, evaluate
from ..typing import Params
from ._build import Experiment, build_experiment
from ._checkpoint import CheckpointError, load_checkpoint
from ._config import Config, ConfigError, load_config
from ._suites import check_saved_config, suite_for


def shipped_configs() -> dict[str, Path]:
    """The YAML configs shipped with fastadapt, by name: the file's path under ``configs/`` without
    ``.yaml`` (``digits_maml``, ``movielens/melu``)."""
    root = Path(str(resources.files("fastadapt") / "configs"))
    return {p.relative_to(root).with_suffix("").as_posix(): p for p in sorted(root.rglob("*.yaml"))}


def resolve_config(name_or_path: str, overrides: list[str] = ()) -> Config:  # type: ignore[assignment]
    """Loads a config file, or a shipped config by name (see ``shipped_configs``)."""
    path = Path(name_or_path)
    if not path.exists():
        shipped = shipped_configs()
        if name_or_path not in shipped:
            raise ConfigError(
                f"config {name_or_path!r} is neither a file nor a shipped config; shipped: {', '.join(sorted(shipped))}"
            )
        path = shipped[name_or_path]
    return load_config(path, overrides)


def load_run(
    run_dir: str | Path, checkpoint: str = "best", ways: int | None = None, shots: int | None = None
) -> tuple[Experiment, Params, Path]:
    """Rebuilds a run's experiment from its ``config.yaml`` and loads the parameters of its ``best``
    checkpoint (or ``last``, or ``last`` when no validation ever ran).

    ``ways`` / ``shots`` replace the episodes' N and K, e.g. to test a ProtoNet trained on 60-way
    episodes at 5 and 20 ways; N can change only for algorithms without a per-way output layer.
    """
    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise ConfigError(f"{run_dir} is not a run directory: it has no config.yaml (train first)")
    overrides = [f"task.{key}={value}" for key, value in (("ways", ways), ("shots", shots)) if value is not None]
    config = load_config(config_path, overrides)
    if ways is not None and config.algorithm.name not in ("protonet", "hypernet", "logistic"):
        trained = load_config(config_path).task.ways
        if ways != trained:
            raise ConfigError(
                f"--ways {ways}: this {config.algorithm.name} run was trained with task.ways={trained} and "
                f"its output layer has {trained} units; only protonet, logistic and hypernet runs can be tested at "
                "other ways"
            )
    saved = yaml.safe_load(config_path.read_text()) or {}
    check_saved_config(saved, suite_for(config.data.dataset), run_dir)
    experiment = build_experiment(config)
    path = run_dir / "checkpoints" / f"{checkpoint}.safetensors"
    if checkpoint == "best" and not path.exists():
        path = run_dir / "checkpoints" / "last.safetensors"
    tensors, _ = load_checkpoint(path)
    expected = experiment.algorithm.init_params()
    params = {}
    for name, init in expected.items():
        value = tensors.get(f"params/{name}")
        if value is None or value.shape != init.shape:
            raise CheckpointError(f"checkpoint {path} does not match the run's model (parameter {name!r})")
        params[name] = value.to(experiment.device)
    return experiment, params, path


def evaluate_run(
    run_dir: str | Path,
    episodes: int | None = None,
    steps: int | None = None,
    checkpoint: str = "best",
    progress: bool = False,
    ways: int | None = None,
    shots: int | None = None,
    **options: Any,
) -> EvalResult | Any:
    """Evaluates a run on its held-out split and writes ``eval/<split>_episodes.jsonl`` and
    ``eval/<split>_summary.json`` into the run directory (``<split>_<N>w<K>s_...`` when ``ways`` or
    ``shots`` replace the trained setting).

    A suite with its own evaluation returns its report instead (a movielens run: every cold-start state, metric
    and baseline, ``eval/recsys_summary.json``); ``options`` are for it (movielens: ``support_cap``, adapting on
    at most that many of each test user's support ratings). Options no suite takes are an error."""
    run_dir = Path(run_dir)
    experiment, params, path = load_run(run_dir, checkpoint, ways, shots)
    cfg = experiment.config
    learned = load_checkpoint(path)[1].get("stream_split")
    if learned is not None and (experiment.suite.evaluates or learned == cfg.evaluation.split):
        raise ConfigError(
            f"{run_dir} is a `fastadapt stream` run whose parameters learned online from the {learned} split's tasks; "
            "evaluating them there would score data they learned from. Its scores are the per-round ones in "
            "metrics.jsonl and summary.json (each task scored before it was learned)"
        )
    if experiment.suite.evaluates:
        return experiment.suite.evaluate(experiment, params, run_dir=run_dir, steps=steps, progress=progress, **options)
    given = sorted(k for k, v in options.items() if v is not None)
    if given:
        raise ConfigError(f"{', '.join(given)} does not apply to a data.dataset={cfg.data.dataset} run")
    split: str = cfg.evaluation.split
    result = evaluate(
        experiment.algorithm,
        params,
        experiment.sources[split],
        episodes=episodes or cfg.evaluation.episodes,
        seed=cfg.evaluation.seed,
        steps=steps if steps is not None else cfg.algorithm.test_steps,
        progress=progress,
        labels=experiment.labels(split),
    )
    out = run_dir / "eval"
    out.mkdir(exist_ok=True)
    if ways is not None or shots is not None:
        split = f"{split}_{cfg.task.ways}w{cfg.task.shots}s"
    (out / f"{split}_episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in result.per_episode))
    (out / f"{split}_summary.json").write_text(json.dumps(result.summary(), indent=2) + "\n")
    return result
