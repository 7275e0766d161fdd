"""Range and cross-field checks of a built :class:`Config`, in one place: every numeric field has a rule, and a
bad value is a :class:`ConfigError` naming the key, the value and the valid range."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ._config import ConfigError

Rule = Callable[[Any], str | None]  # the failure's description, or None when the value is valid


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _bounds(rule: Any, schema: dict[str, Any]) -> Any:
    rule.schema = schema  # the rule's JSON Schema keywords (``fastadapt config schema``)
    return rule


def positive(value: Any) -> str | None:
    """A finite number > 0 (rates, strengths)."""
    if not _number(value) or not math.isfinite(value) or value <= 0:
        return "must be a finite number > 0"
    return None


def at_least(low: int) -> Rule:
    def rule(value: Any) -> str | None:
        return None if value >= low else f"must be >= {low}"

    rule.__doc__ = f"an integer >= {low}"
    return _bounds(rule, {"minimum": low})  # type: ignore[no-any-return]


def fraction(value: Any) -> str | None:
    """A share in [0, 1)."""
    return None if math.isfinite(value) and 0 <= value < 1 else "must be in [0, 1)"


def open_fraction(value: Any) -> str | None:
    """A share in (0, 1)."""
    return None if math.isfinite(value) and 0 < value < 1 else "must be in (0, 1)"


_bounds(positive, {"exclusiveMinimum": 0})
_bounds(fraction, {"minimum": 0, "exclusiveMaximum": 1})
_bounds(open_fraction, {"exclusiveMinimum": 0, "exclusiveMaximum": 1})


def each(rule: Rule) -> Rule:
    def check(values: Any) -> str | None:
        for value in values:
            problem = rule(value)
            if problem is not None:
                return f"has {value!r}, which {problem}"
        return None

    return _bounds(check, {"items": getattr(rule, "schema", {})})  # type: ignore[no-any-return]


#: ``section.key`` -> its rule; ``None`` values of optional keys are not checked (they mean "the default").
RULES: dict[str, Rule] = {
    "data.image_size": at_least(1),
    "data.channels": at_least(1),
    "data.workers": at_least(0),
    "data.prefetch": at_least(1),
    "data.folds": at_least(2),
    "data.fold": at_least(0),
    "data.split_seed": at_least(0),
    "data.val_fraction": open_fraction,
    "data.class_fractions": each(fraction),
    "task.ways": at_least(2),
    "task.shots": at_least(1),
    "task.queries": at_least(1),
    "task.train_ways": at_least(2),
    "task.train_queries": at_least(1),
    "model.widths": each(at_least(1)),
    "model.embedding_dim": at_least(1),
    "model.resnet_widths": each(at_least(1)),
    "model.drop_rate": fraction,
    "model.pooled_blocks": at_least(0),
    "algorithm.inner_lr": positive,
    "algorithm.inner_steps": at_least(0),
    "algorithm.test_steps": at_least(0),
    "algorithm.task_dim": at_least(1),
    "algorithm.generator_width": at_least(1),
    "algorithm.proximal": positive,
    "algorithm.cg_steps": at_least(1),
    "training.iterations": at_least(0),
    "training.meta_batch_size": at_least(1),
    "training.pretrain_steps": at_least(0),
    "training.pretrain_batch_size": at_least(1),
    "training.pretrain_lr": positive,
    "training.outer_lr": positive,
    "training.rates_lr": positive,
    "training.val_every": at_least(0),
    "training.val_episodes": at_least(1),
    "training.patience": at_least(1),
    "training.checkpoint_every": at_least(1),
    "training.keep": at_least(1),
    "training.log_every": at_least(1),
    "training.chunk_size": at_least(1),
    "training.threads": at_least(1),
    "training.dist_timeout": positive,
    "training.sync_check_every": at_least(0),
    "evaluation.episodes": at_least(1),
    "stream.rounds": at_least(1),
    "stream.replay": at_least(1),
    "stream.batch": at_least(1),
    "stream.updates": at_least(1),
    "stream.outer_lr": positive,
    "stream.scratch_steps": at_least(0),
    "stream.scratch_lr": positive,
    "stream.last": at_least(1),
}


def _channels(value: Any) -> str | None:
    values = value if isinstance(value, tuple) else (value,)
    if len(values) not in (1, 4):
        return f"must be one width or four (one per block), got {len(values)}"
    return each(at_least(1))(values)


_WIDTHS = {"type": "array", "items": {"type": "integer", "minimum": 1}}
RULES["model.channels"] = _bounds(  # one width, or a list of one or four
    _channels,
    {"anyOf": [{"type": "integer", "minimum": 1}, *({**_WIDTHS, "minItems": n, "maxItems": n} for n in (1, 4))]},
)


#: The shipped image datasets (their Conv4's pooling must fit the image), and those whose size is fixed.
IMAGE_DATASETS = ("digits", "omniglot", "mnist", "miniimagenet", "cifarfs", "folder")
FIXED_SIZES = {"digits": 8}


def validate(config: Any) -> None:
    """Checks every key with a rule, then the keys that constrain each other.

    Raises:
        ConfigError: the first bad key, e.g. ``training.outer_lr=-1.0 must be a finite number > 0``.
    """
    for path, rule in RULES.items():
        section, key = path.split(".")
        value = getattr(getattr(config, section), key)
        if value is None:
            continue
        problem = rule(value)
        if problem is not None:
            raise ConfigError(f"{path}={value!r} {problem}")
    data, model = config.data, config.model
    if data.fold >= data.folds:
        raise ConfigError(f"data.fold={data.fold} must be < data.folds={data.folds} (folds are 0..{data.folds - 1})")
    if model.name == "conv4" and data.dataset in IMAGE_DATASETS:
        size = FIXED_SIZES.get(data.dataset, data.image_size)
        where = (
            f"the {size}x{size} images of {data.dataset}" if data.dataset in FIXED_SIZES else f"data.image_size={size}"
        )
        if size < 2**model.pooled_blocks:
            raise ConfigError(
                f"model.pooled_blocks={model.pooled_blocks} is too many for {where}: each block halves the image, "
                f"so {model.pooled_blocks} need {2**model.pooled_blocks} pixels or more; lower model.pooled_blocks"
                + ("" if data.dataset in FIXED_SIZES else " or raise data.image_size")
            )
    training = config.training
    if training.deterministic and training.threads not in (None, 1):
        raise ConfigError(
            f"training.deterministic=true pins one torch thread (other counts sum in other orders), but "
            f"training.threads={training.threads}; remove training.threads or set it to 1"
        )
    if len(data.class_fractions) != 3 or not math.isclose(sum(data.class_fractions), 1.0, abs_tol=1e-6):
        raise ConfigError(
            f"data.class_fractions={list(data.class_fractions)} must be three shares (train, val, test) summing to 1"
        )
