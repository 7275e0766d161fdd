"""From a validated :class:`Config` to the objects of an experiment: the suite's data and model, the algorithm, the
device and the batching strategy."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..algorithms import Algorithm, build_algorithm, default_strategy, vmap_hazard
from ..models import MLP, Conv4, ResNet12
from ..tasks import (
    Augmentation,
    ClassSplit,
    ClassTransform,
    DatasetPool,
    EpisodeSampler,
    ExamplePool,
    PrefetchedEpisodes,
    TaskSource,
)
from ._config import Config, ConfigError, ModelConfig
from ._device import apply_threads, resolve_device
from ._suites import TaskSuite, suite_for

#: The models any suite can build from ``model.*`` keys; a suite may offer more (movielens: melu).
MODELS = ("conv4", "mlp", "resnet12")


@dataclass(frozen=True)
class Experiment:
    """Everything a run needs besides its parameters and its random state."""

    config: Config
    model: nn.Module
    algorithm: Algorithm
    sources: dict[str, TaskSource]  # "train", "val", "test"
    strategy: str
    device: torch.device
    train_algorithm: Algorithm  # ``algorithm`` itself unless training episodes have other ways (ProtoNet)
    suite: TaskSuite
    ways: int | None = None  # N of the episodes when the suite classifies
    context: Any = None  # the suite's own data (movielens: the ratings and the cold-start split)

    @property
    def metric(self) -> str:
        return self.algorithm.metric.name

    @property
    def dtype(self) -> torch.dtype:
        """The floating-point type of the model's parameters; tasks are cast to it."""
        return next(self.model.parameters()).dtype

    def labels(self, split: str) -> dict[str, Any]:
        """What an evaluation on ``split`` reports about the data: dataset, split, ways, shots, queries."""
        task = self.config.task
        return {
            "dataset": self.config.data.dataset,
            "split": split,
            "ways": self.ways,
            "shots": task.shots,
            "queries": task.queries,
        }


def build_model(config: ModelConfig, input_shape: Sequence[int], out_features: int) -> nn.Module:
    """One of :data:`MODELS` from the ``model.*`` keys, for inputs of ``input_shape`` (one example, e.g.
    ``(1, 28, 28)``) and ``out_features`` outputs."""
    if config.name == "mlp":
        return MLP(math.prod(input_shape), config.widths, out_features, act=config.act)
    if config.name in ("conv4", "resnet12") and (len(input_shape) != 3 or input_shape[1] != input_shape[2]):
        raise ConfigError(
            f"model.name={config.name} needs square images (channels, size, size), but the inputs are "
            f"{tuple(input_shape)}; use model.name=mlp"
        )
    if config.channels_last and config.name != "conv4":
        raise ConfigError(f"model.channels_last applies to conv4, not {config.name!r}; remove it")
    if config.name == "conv4":
        if not isinstance(config.channels, int) and len(config.channels) != 4:
            raise ConfigError(f"model.channels must be one width or four (one per block), got {list(config.channels)}")
        try:
            return Conv4(
                input_shape[0],
                out_features,
                image_size=input_shape[1],
                hidden=config.channels,
                pooled_blocks=config.pooled_blocks,
                act=config.act,
                pool_kind=config.pool,
                channels_last=config.channels_last,
            )
        except ValueError as error:
            raise ConfigError(f"model: {error}") from None
    if config.name == "resnet12":
        if len(config.resnet_widths) != 4:
            raise ConfigError(f"model.resnet_widths must be four widths, got {list(config.resnet_widths)}")
        if not 0 <= config.drop_rate < 1:
            raise ConfigError(f"model.drop_rate must be in [0, 1), got {config.drop_rate}")
        return ResNet12(input_shape[0], out_features, widths=config.resnet_widths, drop_rate=config.drop_rate)
    raise ConfigError(f"unknown model.name {config.name!r}; choose one of {MODELS}")


def episode_samplers(
    config: Config,
    pool: ExamplePool,
    split: ClassSplit,
    transforms: dict[str, tuple[ClassTransform, ...]] | None = None,
    augment: Augmentation | None = None,
) -> dict[str, TaskSource]:
    """N-way K-shot samplers of ``task.*`` over the classes of each part of ``split`` (training episodes with
    ``task.train_ways`` / ``task.train_queries`` where given); ``transforms``: class transforms per part;
    ``augment``: the training episodes' example augmentation. Over a :class:`DatasetPool`, ``data.workers``
    processes load the coming episodes (``data.prefetch`` each)."""
    task, transforms = config.task, transforms or {}
    if config.data.workers < 0 or config.data.prefetch < 1:
        raise ConfigError(
            f"data.workers must be >= 0 and data.prefetch >= 1, got {config.data.workers} and {config.data.prefetch}"
        )
    samplers: dict[str, TaskSource] = {}
    for part in ("train", "val", "test"):
        ways, queries = task.ways, task.queries
        if part == "train":
            ways = task.train_ways or ways
            queries = task.train_queries or queries
        try:
            sampler = EpisodeSampler(
                pool,
                split[part],
                ways,
                task.shots,
                queries,
                class_transforms=transforms.get(part, ()),
                augment=augment if part == "train" else None,
            )
        except ValueError as error:
            raise ConfigError(f"{config.data.dataset} {part} split: {error}") from None
        lazy = isinstance(pool, DatasetPool)
        samplers[part] = PrefetchedEpisodes(sampler, config.data.workers, config.data.prefetch) if lazy else sampler
    return samplers


def algorithm_options(config: Config, parts_loss: Any, parts_metric: Any, ways: int | None) -> dict[str, Any]:
    """The algorithm's constructor keywords; ``ways``: the N of the episodes it trains or tests on."""
    a = config.algorithm
    options: dict[str, Any] = {
        "loss": a.loss if a.loss is not None else parts_loss,
        "metric": a.metric if a.metric is not None else (None if a.loss is not None else parts_metric),
    }
    head = a.head if isinstance(a.head, str) else list(a.head)
    if a.head != "head" and a.name not in ("anil", "protonet", "hypernet", "logistic"):
        raise ConfigError(f"algorithm.head applies to anil, protonet, logistic and hypernet, not {a.name!r}; remove it")
    if a.name in ("protonet", "logistic"):
        if ways is None:
            raise ConfigError(f"algorithm.name={a.name} classifies, but data.dataset={config.data.dataset!r} does not")
        if a.name == "logistic" and config.training.iterations:
            raise ConfigError(
                "algorithm.name=logistic has nothing to meta-train: set training.iterations=0 (with "
                "training.pretrain_steps to pretrain the body it fits on)"
            )
        return options | {"ways": ways, "head": head}
    options |= {"inner_lr": a.inner_lr, "inner_steps": a.inner_steps}
    if a.name != "imaml":
        for key in ("proximal", "cg_steps"):
            if getattr(a, key) is not None:
                raise ConfigError(f"algorithm.{key} applies to imaml, not {a.name!r}; remove it")
    if a.checkpoint_inner:
        if a.name not in ("maml", "anil", "metasgd") or a.first_order:
            what = f"{a.name!r} with algorithm.first_order=true" if a.first_order else repr(a.name)
            raise ConfigError(
                "algorithm.checkpoint_inner applies to second-order maml, anil and metasgd (first-order and "
                f"implicit gradients keep no inner graph to save), not {what}; remove it"
            )
        options["checkpoint_inner"] = True
    if a.name == "imaml":
        if a.first_order:
            raise ConfigError(
                "algorithm.first_order does not apply to 'imaml' (its meta-gradient is implicit); remove it"
            )
        options |= {k: getattr(a, k) for k in ("proximal", "cg_steps") if getattr(a, k) is not None}
    elif a.name == "hypernet":
        options |= {"task_dim": a.task_dim, "generator_width": a.generator_width, "first_order": a.first_order}
        if ways is not None:
            options |= {"ways": ways, "head": head}
    elif a.name in ("maml", "anil", "metasgd"):
        options["first_order"] = a.first_order
        if a.name == "anil":
            options["head"] = head
    elif a.first_order and a.name != "fomaml":
        raise ConfigError(f"algorithm.first_order does not apply to {a.name!r}; remove it")
    return options


def _algorithm(config: Config, model: nn.Module, loss: Any, metric: Any, ways: int | None) -> Algorithm:
    try:
        return build_algorithm(config.algorithm.name, model, **algorithm_options(config, loss, metric, ways))
    except ValueError as error:
        raise ConfigError(str(error)) from None


def build_experiment(config: Config) -> Experiment:
    """Builds data sources, model and algorithm; the model's initial weights come from the seed."""
    if config.training.deterministic:
        # One intra-op thread (a reduction split over other thread counts sums in another order) and torch's
        # deterministic kernels: the same seed gives the same weights whatever FASTADAPT_THREADS says.
        apply_threads(1)
        torch.use_deterministic_algorithms(True)
    else:
        apply_threads(config.training.threads)  # torch's deterministic mode stays as the user set it
    device = resolve_device(config.training.device)  # before loading data: a wrong device fails at once
    torch.manual_seed(config.training.seed)
    suite = suite_for(config.data.dataset)
    parts = suite.build(config)
    model, ways = parts.model, parts.ways
    algorithm = _algorithm(config, model, parts.loss, parts.metric, ways)
    train_algorithm = algorithm
    train_ways = config.task.train_ways
    if train_ways is not None and train_ways != config.task.ways:
        if config.algorithm.name not in ("protonet", "hypernet", "logistic") or ways is None:
            raise ConfigError(
                f"task.train_ways={train_ways} differs from task.ways={config.task.ways}, but "
                f"{config.algorithm.name}'s output layer has one unit per way; remove task.train_ways "
                "(only protonet and a classifying hypernet train on more ways than they are tested on)"
            )
        train_algorithm = _algorithm(config, model, parts.loss, parts.metric, train_ways)
    strategy: str = config.training.strategy
    if strategy == "auto":
        strategy = default_strategy(model, device, train_algorithm)
    elif strategy != "loop" and (hazard := vmap_hazard(train_algorithm)) is not None:
        raise ConfigError(f"training.strategy={strategy} refused: {hazard}")
    return Experiment(
        config,
        model.to(device),
        algorithm,
        parts.sources,
        strategy,
        device,
        train_algorithm,
        suite,
        ways,
        parts.context,
    )
