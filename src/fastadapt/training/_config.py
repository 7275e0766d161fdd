"""Experiment configuration: frozen dataclasses loaded from YAML, with ``key=value`` overrides and
errors that name the offending key."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the key and the fix."""


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "digits"  # a dataset of a registered task suite: `fastadapt suites` lists them
    train_rotations: tuple[int, ...] = ()  # digits: e.g. [0, 90, 180, 270], rotated training classes are new classes
    # omniglot, movielens, clinc150: folder with the files (default: the verified copies in the cache);
    # text: the CSV file (columns text, label; optional group, split)
    root: str | None = None
    image_size: int = 28  # omniglot, folder, miniimagenet: images are resized to image_size x image_size
    channels: int | None = None  # folder, miniimagenet: 1 (grey) or 3 (RGB); default: 3
    split: str | None = None  # folder, dataset, miniimagenet: a folder of split files ({train,val,test}.csv or .txt)
    class_fractions: tuple[float, ...] = (0.64, 0.16, 0.2)  # folder, dataset without data.split: train/val/test classes
    mean: tuple[float, ...] = ()  # image datasets: per-channel normalisation after scaling to [0, 1] (empty: none)
    std: tuple[float, ...] = ()
    augment: str | None = None  # training episodes: crop_flip | flip | module:callable (on one (C, H, W) tensor)
    factory: str | None = None  # dataset: module:callable returning a map-style torch Dataset with `targets`
    workers: int = 0  # lazily loaded datasets: DataLoader worker processes loading the coming episodes
    prefetch: int = 2  # episodes each worker loads ahead
    encoder: str = "all-MiniLM-L6-v2"  # clinc150, text: a sentence-transformers model, or hashed-ngrams[:N]
    folds: int = 3  # clinc150, text: k of the k-fold over class groups (domains) held out for testing
    fold: int = 0  # clinc150, text: which fold's groups are held out
    split_seed: int = 0  # clinc150, text: the shuffle of the groups into folds (and of a CSV's val utterances)
    val_fraction: float = (
        0.2  # clinc150, text: share of a training class's utterances carved for validation (no val ones)
    )
    text_column: str = "text"  # text: the CSV's columns (data.root a folder: the DNNC format, train/valid/test)
    label_column: str = "label"


@dataclass(frozen=True)
class TaskConfig:
    ways: int = 3
    shots: int = 1
    queries: int = 15
    train_ways: int | None = None  # ways of training episodes (ProtoNet only); default: ways
    train_queries: int | None = None  # queries per class in training episodes; default: queries


@dataclass(frozen=True)
class ModelConfig:
    name: str = "conv4"  # conv4 | resnet12 | mlp, or a model of the dataset's suite (movielens: melu)
    widths: tuple[int, ...] = (40, 40)  # mlp hidden widths, melu decision layers
    embedding_dim: int = 32  # melu: width of each feature's embedding
    item_ids: bool = True  # melu: also embed the item's id (zero for items without training ratings)
    channels: int | tuple[int, ...] = 64  # conv4 filters per block (one width, or four: one per block)
    resnet_widths: tuple[int, ...] = (64, 160, 320, 640)  # resnet12: the four residual blocks' widths
    drop_rate: float = 0.0  # resnet12: DropBlock rate in the last two blocks while training (0: none)
    pooled_blocks: int = 4
    act: Literal["relu", "tanh", "softplus"] = "relu"
    pool: Literal["max", "avg"] = "max"
    channels_last: bool = False  # conv4: blocks in channels_last memory format (faster max-pooling on CPU)


@dataclass(frozen=True)
class AlgorithmConfig:
    name: str = "maml"
    inner_lr: float = 0.4
    inner_steps: int = 1
    test_steps: int | None = None  # inner steps at evaluation; default: inner_steps
    first_order: bool = False
    head: str | tuple[str, ...] = "head"  # anil, protonet, hypernet: the sub-module (or parameter prefixes) of the head
    loss: str | None = None  # a name in fastadapt.algorithms.LOSSES (default: the suite's, e.g. cross_entropy)
    metric: str | None = None  # a name in fastadapt.algorithms.METRICS (default: the suite's, e.g. accuracy)
    task_dim: int = 64  # hypernet: width of the regression set encoder's task representation
    generator_width: int = 128  # hypernet: hidden width of the set encoder and the weight generator
    proximal: float | None = None  # imaml: strength lambda of the proximal term lambda/2 ||phi - theta||^2 (0.5)
    cg_steps: int | None = None  # imaml: conjugate-gradient iterations of the implicit meta-gradient (5)
    # maml, anil, metasgd (second order): recompute each inner step in the backward pass instead of keeping its
    # graph (torch.utils.checkpoint), so memory stops growing with inner_steps; loop strategy only
    checkpoint_inner: bool = False


@dataclass(frozen=True)
class TrainingConfig:
    iterations: int = 1000
    meta_batch_size: int = 16
    # Pretrain-then-meta (RFS, Meta-Baseline): first train the body with cross-entropy over all training classes
    # (a temporary linear head; SGD, momentum 0.9, weight decay 5e-4, cosine rate), keeping the body whose
    # validation episodes score best; then meta-train from it (iterations=0: evaluate it as it is).
    pretrain_steps: int = 0  # batches of pretraining (0: none)
    pretrain_batch_size: int = 64
    pretrain_lr: float = 0.05
    optimizer: Literal["adam", "sgd"] = "adam"
    outer_lr: float = 0.001
    rates_lr: float | None = None  # metasgd: outer learning rate of the learned inner rates (default: outer_lr)
    schedule: Literal["constant", "cosine"] = "constant"  # cosine: torch's CosineAnnealingLR over iterations
    val_every: int = 100
    val_episodes: int = 100
    # Early stopping: stop after this many validations in a row without a better score (None: never stop early;
    # with val_every=0 nothing validates, so nothing stops early either: the shipped configs can be run that way)
    patience: int | None = None
    checkpoint_every: int = 100
    keep: int = 1  # checkpoints kept besides best: last, and the keep-1 before it as checkpoints/step-N.safetensors
    log_every: int = 10
    seed: int = 0
    strategy: Literal["auto", "loop", "vmap", "chunked"] = "auto"
    chunk_size: int = 8
    device: str = "auto"  # auto (CUDA when available, else CPU) | cpu | cuda | cuda:N | mps
    threads: int | None = None  # torch intra-op threads (default: $FASTADAPT_THREADS, else 1: README, threads)
    # One thread and torch's deterministic algorithms: bit-identical weights for a seed on any thread setting
    deterministic: bool = False
    # Distributed runs (torchrun): seconds a collective waits for the other ranks before the run stops with a
    # message, and how often (steps) the ranks check that they hold identical parameters (0: never)
    dist_timeout: float = 300.0
    sync_check_every: int = 100


@dataclass(frozen=True)
class EvaluationConfig:
    episodes: int = 600
    seed: int = 1234
    split: Literal["train", "val", "test"] = "test"


@dataclass(frozen=True)
class StreamConfig:
    """``fastadapt stream``: online meta-learning on a stream of tasks, against a frozen model and from-scratch."""

    rounds: int = 500  # tasks in the stream (fewer if a split runs out of unused examples)
    split: Literal["train", "val", "test"] = "test"  # where the stream's tasks come from (movielens: the new users)
    start: Literal["init", "frozen"] = "init"  # the online learner starts from fresh meta-parameters or stream.frozen
    frozen: str | None = None  # run directory of a meta-trained model: the frozen reference
    fresh: bool = True  # episode streams use every example at most once, so no task holds data already learned
    replay: int = 64  # replay buffer capacity (tasks; reservoir sampling)
    batch: int = 8  # tasks per online meta-update: the newest one plus batch-1 replayed
    updates: int = 1  # online meta-updates per round
    outer_lr: float | None = None  # the online meta-updates' Adam learning rate (default: training.outer_lr)
    scratch_steps: int = 50  # the from-scratch reference: Adam steps on each task's support set (0: no reference)
    scratch_lr: float = 0.01
    last: int = 100  # the summary's window: mean over the last N rounds
    seed: int = 0


#: The sections a config file must have (the others may be left to their defaults).
REQUIRED_SECTIONS = ("data", "model", "algorithm", "training")
#: The sections every config has; a task suite adds its own (``recsys`` for movielens).
CORE_SECTIONS = ("data", "task", "model", "algorithm", "training", "evaluation", "stream")


@dataclass(frozen=True)
class Config:
    """A run's configuration: the core sections, and ``sections``, those of the dataset's task suite (each a frozen
    dataclass the suite declares, read with :meth:`section`)."""

    name: str = "experiment"
    data: DataConfig = field(default_factory=DataConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    sections: Mapping[str, Any] = field(default_factory=dict)

    def section(self, name: str) -> Any:
        """The suite section ``name`` (its defaults if the config file had none)."""
        if name in self.sections:
            return self.sections[name]
        kinds = _section_types()
        if name not in kinds:
            raise ConfigError(f"no config section {name!r}; the registered suites' sections: {sorted(kinds)}")
        return kinds[name]()

    def to_dict(self) -> dict[str, Any]:
        """Every key, the suite's sections included (their defaults where the config had none)."""
        out: dict[str, Any] = {"name": self.name}
        out |= {name: _plain(dataclasses.asdict(getattr(self, name))) for name in CORE_SECTIONS}
        try:
            own = _section_types(self.data.dataset)
        except ConfigError:  # an unknown dataset: nothing to fill in (building the run reports it)
            own = {}
        for name in dict.fromkeys([*own, *self.sections]):
            out[name] = _plain(dataclasses.asdict(self.section(name)))
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _section_types(dataset: str | None = None) -> dict[str, type]:
    """The section dataclasses of ``dataset``'s task suite (an unknown dataset is an error), or of every suite."""
    from ._suites import section_types, suite_for  # the registry imports this module

    return dict(suite_for(dataset).sections) if dataset is not None else section_types()


def _describe(kind: Any) -> str:
    if typing.get_origin(kind) is Literal:
        return " | ".join(repr(v) for v in typing.get_args(kind))
    return getattr(kind, "__name__", str(kind))


def _convert(value: Any, kind: Any, key: str) -> Any:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = [o for o in typing.get_args(kind) if o is not type(None)]
        if value is None and len(options) < len(typing.get_args(kind)):
            return None
        errors = []
        for option in options:
            try:
                return _convert(value, option, key)
            except ConfigError as error:
                errors.append(error)
        if len(errors) == 1:
            raise errors[0]
        wanted = " or ".join(_describe(o) for o in options)
        raise ConfigError(f"{key} must be {wanted}, got {value!r} ({type(value).__name__})")
    if origin is Literal:
        allowed = typing.get_args(kind)
        if value not in allowed or type(value) is not type(allowed[0]):
            raise ConfigError(f"{key} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
        return value
    if origin is tuple:
        (item, _) = typing.get_args(kind)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        return tuple(_convert(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping of keys, got {value!r}")
        return _build(kind, value, key)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is float and isinstance(value, str):
        # PyYAML reads 1e-3 (no dot) and nan (no leading dot) as strings; a number written so is still a number
        # (non-finite values are refused by the range checks, naming the key).
        text = value.strip().lower()
        try:
            return float(text.replace(".", "") if text.lstrip("+-.") in ("nan", "inf", "infinity") else text)
        except ValueError:
            pass
    if kind in (int, float, str, bool) and type(value) is not kind:
        raise ConfigError(f"{key} must be of type {kind.__name__}, got {value!r} ({type(value).__name__})")
    return value


def _build(cls: Any, values: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in values:
        if key not in hints:
            path = f"{prefix}.{key}" if prefix else key
            raise ConfigError(f"unknown config key '{path}'; valid keys here: {', '.join(names)}")
    kwargs = {k: _convert(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in values.items()}
    return cls(**kwargs)


def config_from_dict(values: dict[str, Any]) -> Config:
    """Validates and builds a :class:`Config`; missing keys take their defaults.

    Sections other than the core ones belong to the task suite of ``data.dataset`` (e.g. ``recsys`` for
    movielens); a section of another suite, or of none, is an error that names the valid ones.
    """
    core = {k: v for k, v in values.items() if k == "name" or k in CORE_SECTIONS}
    config: Config = _build(Config, core, "")
    own = _section_types(config.data.dataset)
    for key in list(values):
        if key not in core and key not in own:
            every = _section_types()
            valid = ", ".join(["name", *CORE_SECTIONS, *own])
            if key in every and _convert(values[key], every[key], key) == every[key]():
                continue  # another suite's section at its defaults: what runs saved before suites owned them
            if key in every:
                raise ConfigError(
                    f"config section '{key}' belongs to another task suite than data.dataset={config.data.dataset!r}'s;"
                    f" remove it (valid sections here: {valid})"
                )
            raise ConfigError(f"unknown config key '{key}'; valid keys here: {valid}")
    sections = {key: _convert(values.get(key, {}), kind, key) for key, kind in own.items()}  # defaults filled in
    from ._validate import validate  # it imports ConfigError from here

    validate(config)
    return dataclasses.replace(config, sections=sections)


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Applies ``section.key=value`` strings (values parsed as YAML) to a nested dict, in place."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        path, raw = item.split("=", 1)
        *parents, last = path.strip().split(".")
        node = values
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: '{part}' is not a section")
        try:
            node[last] = yaml.safe_load(raw)
        except yaml.YAMLError as error:
            problem = getattr(error, "problem", None) or "not valid YAML"
            raise ConfigError(f"override {item!r}: its value is {problem} (YAML syntax); quote it") from None
    return values


def load_config(path: str | Path, overrides: list[str] = ()) -> Config:  # type: ignore[assignment]
    """Loads a YAML config file and applies ``key=value`` overrides."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
        values = yaml.safe_load(text)
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path} is not UTF-8 text ({error}); save it as UTF-8") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{where}: {problem} (YAML syntax)") from None
    if values is None:
        raise ConfigError(f"{path} is empty; a config needs the sections {', '.join(REQUIRED_SECTIONS)}")
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must hold a mapping of config sections, not {type(values).__name__}")
    try:
        values = apply_overrides(values, list(overrides))
        valid = ["name", *CORE_SECTIONS, *_section_types()]
        unknown = [key for key in values if key not in valid]
        if unknown:
            raise ConfigError(f"unknown config key '{unknown[0]}'; valid keys here: {', '.join(valid)}")
        missing = [s for s in REQUIRED_SECTIONS if s not in values]
        if missing:
            raise ConfigError(
                f"no {', '.join(repr(s) for s in missing)} section; a config file needs "
                f"{', '.join(REQUIRED_SECTIONS)} (a cut-off or partial file?)"
            )
        return config_from_dict(values)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def save_config(config: Config, path: Path) -> None:
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
