"""The image suite: N-way K-shot classification over disjoint class splits of an image pool (scikit-learn's
digits, embedded; Omniglot with the split of Vinyals et al. 2016)."""

from __future__ import annotations

from ..data import DIGITS_SPLIT, DataError, load_digits_pool, load_omniglot, omniglot_vinyals_split
from ..tasks import ClassSplit, ClassTransform, LabelledPool, TaskSource, rotations
from ..training import Config, ConfigError, Suite, SuiteParts, build_model, episode_samplers


def _pool(config: Config) -> tuple[LabelledPool, ClassSplit, dict[str, tuple[ClassTransform, ...]]]:
    data = config.data
    if data.dataset == "digits":
        train = rotations(*data.train_rotations) if data.train_rotations else ()
        return load_digits_pool(), DIGITS_SPLIT, {"train": train}
    try:
        pool = load_omniglot(data.root, data.image_size, progress=False)
    except DataError as error:
        raise ConfigError(f"data.dataset=omniglot: {error}") from None
    # Vinyals et al. 2016: every character's four rotations are four classes, in every split.
    quarter_turns = rotations(0, 90, 180, 270)
    return pool, omniglot_vinyals_split(pool.class_names), dict.fromkeys(("train", "val", "test"), quarter_turns)


def build(config: Config) -> SuiteParts:
    pool, split, transforms = _pool(config)
    sources: dict[str, TaskSource] = episode_samplers(config, pool, split, transforms)
    model = build_model(config.model, tuple(pool.features.shape[1:]), config.task.ways)
    return SuiteParts(sources, model, loss="cross_entropy", ways=config.task.ways)


SUITE = Suite(
    "images",
    ("digits", "omniglot"),
    build,
    description="few-shot image classification: digits (embedded), Omniglot (Vinyals split, rotations as classes)",
)
