"""From a validated :class:`Config` to the objects of an experiment: data, model, algorithm."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..algorithms import Algorithm, build_algorithm, default_strategy
from ..data import DIGITS_SPLIT, DataError, load_digits_pool, load_omniglot, omniglot_vinyals_split
from ..models import MLP, Conv4, MeLU
from ..recsys import ITEM_ID_COLUMN, RecsysData, UserTasks, feature_layout, load_recsys_data
from ..tasks import (
    ClassSplit,
    ClassTransform,
    EpisodeSampler,
    LabelledPool,
    LinearTasks,
    SinusoidTasks,
    TaskSource,
    rotations,
)
from ..text import encode_texts, episodic_pool, heldout_classes, load_clinc150, load_text_csv
from ._config import Config, ConfigError

DATASETS = ("digits", "omniglot", "sinusoid", "linear", "movielens", "clinc150", "text")
TEXT = ("clinc150", "text")
REGRESSION = ("sinusoid", "linear", "movielens")


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
    recsys: RecsysData | None = None  # data.dataset=movielens: the ratings and cold-start split (recsys.RecsysData)

    @property
    def task_type(self) -> str:
        return "regression" if self.config.data.dataset in REGRESSION else "classification"

    @property
    def metric(self) -> str:
        return "mse" if self.task_type == "regression" else "accuracy"

    def labels(self, split: str) -> dict[str, Any]:
        """What an evaluation on ``split`` reports about the data: dataset, split, ways, shots, queries."""
        task = self.config.task
        ways = task.ways if self.task_type == "classification" else None
        return {
            "dataset": self.config.data.dataset,
            "split": split,
            "ways": ways,
            "shots": task.shots,
            "queries": task.queries,
        }


def _episode_samplers(
    config: Config, pool: LabelledPool, split: ClassSplit, transforms: dict[str, tuple[ClassTransform, ...]]
) -> dict[str, TaskSource]:
    task = config.task
    samplers: dict[str, TaskSource] = {}
    for part in ("train", "val", "test"):
        ways, queries = task.ways, task.queries
        if part == "train":
            ways = task.train_ways or ways
            queries = task.train_queries or queries
        try:
            samplers[part] = EpisodeSampler(
                pool, split[part], ways, task.shots, queries, class_transforms=transforms.get(part, ())
            )
        except ValueError as error:
            raise ConfigError(f"{config.data.dataset} {part} split: {error}") from None
    return samplers


def _recsys_data(config: Config) -> RecsysData:
    try:
        return load_recsys_data(config.recsys, config.data.root)
    except (DataError, ValueError) as error:
        raise ConfigError(f"data.dataset=movielens: {error}") from None


def _text_samplers(config: Config) -> dict[str, TaskSource]:
    """Held-out-group episodes over frozen text embeddings (cached; the first run embeds every text)."""
    data = config.data
    try:
        if data.dataset == "clinc150":
            dataset = load_clinc150(data.root, progress=False)
        elif data.root is None:
            raise ConfigError("data.dataset=text needs data.root=PATH.csv (columns text, label; optional group, split)")
        else:
            dataset = load_text_csv(data.root)
        embeddings = encode_texts(data.encoder, dataset.texts, progress=True)
        train, test, _ = heldout_classes(dataset, data.folds, data.fold, seed=data.split_seed)
        pool, split = episodic_pool(dataset, embeddings, train, test, seed=data.split_seed)
    except ConfigError:
        raise
    except (DataError, ValueError, ImportError) as error:
        raise ConfigError(f"data.dataset={data.dataset}: {error}") from None
    return _episode_samplers(config, pool, split, {})


def build_sources(config: Config, recsys: RecsysData | None = None) -> dict[str, TaskSource]:
    """The train / val / test task sources; ``recsys``: the loaded ratings for data.dataset=movielens."""
    data, task = config.data, config.task
    if data.dataset == "movielens":
        recsys = recsys or _recsys_data(config)
        # Validation: held-out query ratings of existing users; test: new users (user-cold).
        states = {"train": "train", "val": "warm", "test": "user_cold"}
        try:
            return {part: UserTasks(recsys.data, recsys.split.tasks[state]) for part, state in states.items()}
        except ValueError as error:
            raise ConfigError(f"data.dataset=movielens: {error}") from None
    if data.dataset == "digits":
        train = rotations(*data.train_rotations) if data.train_rotations else ()
        return _episode_samplers(config, load_digits_pool(), DIGITS_SPLIT, {"train": train})
    if data.dataset == "omniglot":
        # Vinyals et al. 2016: every character's four rotations are four classes, in every split.
        try:
            pool = load_omniglot(data.root, data.image_size, progress=False)
        except DataError as error:
            raise ConfigError(f"data.dataset=omniglot: {error}") from None
        quarter_turns = rotations(0, 90, 180, 270)
        split = omniglot_vinyals_split(pool.class_names)
        return _episode_samplers(config, pool, split, dict.fromkeys(("train", "val", "test"), quarter_turns))
    if data.dataset in TEXT:
        return _text_samplers(config)
    if data.dataset in REGRESSION:
        family = SinusoidTasks if data.dataset == "sinusoid" else LinearTasks
        source = family(shots=task.shots, queries=task.queries)
        return {"train": source, "val": source, "test": source}  # splits differ by their seeds
    raise ConfigError(f"unknown data.dataset {data.dataset!r}; choose one of {DATASETS}")


def build_model(config: Config, recsys: RecsysData | None = None, in_features: int | None = None) -> nn.Module:
    """The network; ``in_features``: the width of the inputs where the data decides it (text embeddings)."""
    m, dataset = config.model, config.data.dataset
    if (m.name == "melu") != (dataset == "movielens"):
        raise ConfigError(f"model.name=melu goes with data.dataset=movielens (got {m.name!r} with {dataset!r})")
    if m.name == "melu":
        recsys = recsys or _recsys_data(config)
        categories, multi_hot = feature_layout(recsys.data, item_ids=m.item_ids)
        mean = float(np.mean([t.support_ratings.mean() for t in recsys.split.tasks["train"]]))
        return MeLU(
            categories,
            multi_hot,
            dim=m.embedding_dim,
            hidden=m.widths,
            act=m.act,
            rating_offset=mean,
            zero=(ITEM_ID_COLUMN,),
        )
    regression = dataset in REGRESSION
    out_features = 1 if regression else config.task.ways
    image_size = {"digits": 8, "omniglot": config.data.image_size}.get(dataset, 0)
    if m.name == "mlp":
        return MLP(in_features or image_size * image_size or 1, m.widths, out_features, act=m.act)
    if m.name == "conv4":
        if regression or dataset in TEXT:
            raise ConfigError(f"model.name=conv4 needs image data, but data.dataset={dataset!r}; use model.name=mlp")
        return Conv4(
            1,
            out_features,
            image_size=image_size,
            hidden=m.channels,
            pooled_blocks=m.pooled_blocks,
            act=m.act,
            pool_kind=m.pool,
        )
    raise ConfigError(f"unknown model.name {m.name!r}; choose one of ('conv4', 'mlp', 'melu')")


def algorithm_options(config: Config, task_type: str, ways: int | None = None) -> dict[str, Any]:
    """The algorithm's constructor keywords; ``ways``: the N of training episodes if it differs."""
    a = config.algorithm
    if a.name == "protonet":
        return {"ways": ways or config.task.ways}
    options: dict[str, Any] = {"task_type": task_type, "inner_lr": a.inner_lr, "inner_steps": a.inner_steps}
    if a.name == "hypernet":
        options |= {"task_dim": a.task_dim, "generator_width": a.generator_width, "first_order": a.first_order}
        if task_type == "classification":
            options["ways"] = ways or config.task.ways
    elif a.name in ("maml", "anil", "metasgd"):
        options["first_order"] = a.first_order
    elif a.first_order and a.name != "fomaml":
        raise ConfigError(f"algorithm.first_order does not apply to {a.name!r}; remove it")
    return options


def build_experiment(config: Config) -> Experiment:
    """Builds data sources, model and algorithm; the model's initial weights come from the seed."""
    torch.manual_seed(config.training.seed)
    recsys = _recsys_data(config) if config.data.dataset == "movielens" else None
    sources = build_sources(config, recsys)
    in_features = None
    if config.data.dataset in TEXT:
        in_features = int(sources["train"].pool.features.shape[1])  # type: ignore[attr-defined]
    model = build_model(config, recsys, in_features)
    task_type = "regression" if config.data.dataset in REGRESSION else "classification"
    try:
        algorithm = build_algorithm(config.algorithm.name, model, **algorithm_options(config, task_type))
    except ValueError as error:
        raise ConfigError(str(error)) from None
    train_algorithm = algorithm
    train_ways = config.task.train_ways
    if train_ways is not None and train_ways != config.task.ways:
        if config.algorithm.name not in ("protonet", "hypernet") or task_type != "classification":
            raise ConfigError(
                f"task.train_ways={train_ways} differs from task.ways={config.task.ways}, but "
                f"{config.algorithm.name}'s output layer has one unit per way; remove task.train_ways "
                "(only protonet and a classifying hypernet train on more ways than they are tested on)"
            )
        train_algorithm = build_algorithm(
            config.algorithm.name, model, **algorithm_options(config, task_type, train_ways)
        )
    device = torch.device(config.training.device)
    strategy = config.training.strategy
    if strategy == "auto":
        strategy = default_strategy(model, device)
    return Experiment(config, model.to(device), algorithm, sources, strategy, device, train_algorithm, recsys)
