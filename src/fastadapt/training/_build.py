"""From a validated :class:`Config` to the objects of an experiment: data, model, algorithm."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..algorithms import Algorithm, build_algorithm, default_strategy
from ..data import DIGITS_SPLIT, load_digits_pool
from ..models import MLP, Conv4
from ..tasks import EpisodeSampler, LinearTasks, SinusoidTasks, TaskSource, rotations
from ._config import Config, ConfigError

DATASETS = ("digits", "sinusoid", "linear")
REGRESSION = ("sinusoid", "linear")


@dataclass(frozen=True)
class Experiment:
    """Everything a run needs besides its parameters and its random state."""

    config: Config
    model: nn.Module
    algorithm: Algorithm
    sources: dict[str, TaskSource]  # "train", "val", "test"
    strategy: str
    device: torch.device

    @property
    def task_type(self) -> str:
        return "regression" if self.config.data.dataset in REGRESSION else "classification"

    @property
    def metric(self) -> str:
        return "mse" if self.task_type == "regression" else "accuracy"


def build_sources(config: Config) -> dict[str, TaskSource]:
    data, task = config.data, config.task
    if data.dataset == "digits":
        pool = load_digits_pool()
        train_transforms = rotations(*data.train_rotations) if data.train_rotations else ()
        samplers: dict[str, TaskSource] = {}
        for split in ("train", "val", "test"):
            try:
                samplers[split] = EpisodeSampler(
                    pool,
                    DIGITS_SPLIT[split],
                    task.ways,
                    task.shots,
                    task.queries,
                    class_transforms=train_transforms if split == "train" else (),
                )
            except ValueError as error:
                raise ConfigError(f"digits {split} split: {error}") from None
        return samplers
    if data.dataset in REGRESSION:
        family = SinusoidTasks if data.dataset == "sinusoid" else LinearTasks
        source = family(shots=task.shots, queries=task.queries)
        return {"train": source, "val": source, "test": source}  # splits differ by their seeds
    raise ConfigError(f"unknown data.dataset {data.dataset!r}; choose one of {DATASETS}")


def build_model(config: Config) -> nn.Module:
    m, dataset = config.model, config.data.dataset
    regression = dataset in REGRESSION
    out_features = 1 if regression else config.task.ways
    if m.name == "mlp":
        in_features = 1 if regression else 64
        return MLP(in_features, m.widths, out_features, act=m.act)
    if m.name == "conv4":
        if regression:
            raise ConfigError(f"model.name=conv4 needs image data, but data.dataset={dataset!r}; use model.name=mlp")
        return Conv4(
            1, out_features, image_size=8, hidden=m.channels, pooled_blocks=m.pooled_blocks, act=m.act, pool_kind=m.pool
        )
    raise ConfigError(f"unknown model.name {m.name!r}; choose one of ('conv4', 'mlp')")


def algorithm_options(config: Config, task_type: str) -> dict[str, Any]:
    a = config.algorithm
    if a.name == "protonet":
        return {"ways": config.task.ways}
    options: dict[str, Any] = {"task_type": task_type, "inner_lr": a.inner_lr, "inner_steps": a.inner_steps}
    if a.name in ("maml", "anil", "metasgd"):
        options["first_order"] = a.first_order
    elif a.first_order and a.name != "fomaml":
        raise ConfigError(f"algorithm.first_order does not apply to {a.name!r}; remove it")
    return options


def build_experiment(config: Config) -> Experiment:
    """Builds data sources, model and algorithm; the model's initial weights come from the seed."""
    torch.manual_seed(config.training.seed)
    sources = build_sources(config)
    model = build_model(config)
    task_type = "regression" if config.data.dataset in REGRESSION else "classification"
    try:
        algorithm = build_algorithm(config.algorithm.name, model, **algorithm_options(config, task_type))
    except ValueError as error:
        raise ConfigError(str(error)) from None
    device = torch.device(config.training.device)
    strategy = config.training.strategy
    if strategy == "auto":
        strategy = default_strategy(model, device)
    return Experiment(config, model.to(device), algorithm, sources, strategy, device)
