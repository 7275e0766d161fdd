"""Run directories: find the shipped configs, reload a finished run, evaluate it."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from ..evaluation import EvalResult, evaluate
from ..typing import Params
from ._build import Experiment, build_experiment
from ._checkpoint import CheckpointError, load_checkpoint
from ._config import Config, ConfigError, load_config


def shipped_configs() -> dict[str, Path]:
    """The YAML configs shipped with fastadapt, by name (file stem)."""
    root = resources.files("fastadapt") / "configs"
    return {Path(str(p)).stem: Path(str(p)) for p in root.iterdir() if str(p).endswith(".yaml")}


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


def load_run(run_dir: str | Path, checkpoint: str = "best") -> tuple[Experiment, Params, Path]:
    """Rebuilds a run's experiment from its ``config.yaml`` and loads the parameters of its ``best``
    checkpoint (or ``last``, or ``last`` when no validation ever ran)."""
    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise ConfigError(f"{run_dir} is not a run directory: it has no config.yaml (train first)")
    experiment = build_experiment(load_config(config_path))
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
) -> EvalResult:
    """Evaluates a run on its held-out split and writes ``eval/<split>_episodes.jsonl`` and
    ``eval/<split>_summary.json`` into the run directory."""
    run_dir = Path(run_dir)
    experiment, params, _ = load_run(run_dir, checkpoint)
    cfg = experiment.config
    split = cfg.evaluation.split
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
    (out / f"{split}_episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in result.per_episode))
    (out / f"{split}_summary.json").write_text(json.dumps(result.summary(), indent=2) + "\n")
    return result
