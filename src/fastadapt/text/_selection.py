"""Per-run choice of a head's settings on the run's own data: k-fold over the K-shot set (fold ``f`` holds out
the ``f``-th example of every class), or a validation split when the run has one. Nothing is tuned to a
dataset once and then used as a constant."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from ._fewshot import Array, FittedHead, HeadConfig, Labels, meta_train_head

Indices = npt.NDArray[np.int64]

#: The settings searched per head (per-class inner rates: see :class:`HeadConfig`). ProtoNet has none that
#: its k-fold score chooses between; it is still scored, so that the method itself can be chosen.
DEFAULT_GRIDS: dict[str, dict[str, tuple[Any, ...]]] = {
    "protonet": {},
    "maml": {"inner_lr": (1.0, 2.0, 4.0)},
    "anil": {"inner_lr": (1.0, 2.0, 4.0)},
    "metasgd": {"inner_lr": (1.0, 2.0, 4.0)},
}
#: Adaptation steps tried for every trained candidate, as multiples of its ``inner_steps`` (free: no retraining).
STEP_SCALES = (1, 2)


def kshot_folds(y: Labels, folds: int, seed: int = 0) -> list[tuple[Indices, Indices]]:
    """``folds`` (train, held-out) index pairs over a labelled few-shot set: each class's examples in a seeded
    order, fold ``f`` holding out the ``f``-th of each class (so every fold keeps the classes balanced and
    the held-out examples of different folds are disjoint).

    Raises:
        ValueError: fewer than 2 folds, or a class with fewer than ``folds + 1`` examples (named).
    """
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    orders = []
    for c in np.unique(y).tolist():
        members = np.flatnonzero(y == c)
        if len(members) < folds + 1:
            raise ValueError(
                f"class {c} has {len(members)} examples; {folds}-fold selection needs {folds + 1} or more per "
                f"class (lower the folds, or give a validation split)"
            )
        orders.append(rng.permutation(members))
    pairs = []
    for f in range(folds):
        held = np.sort(np.array([order[f] for order in orders], dtype=np.int64))
        pairs.append((np.setdiff1d(np.arange(len(y)), held).astype(np.int64), held))
    return pairs


def fold_config(config: HeadConfig, per_class: int) -> HeadConfig:
    """``config`` with episodes that fit ``per_class`` examples of each class (support + query), keeping the
    query count where it fits."""
    if per_class < 2:
        raise ValueError(f"episodes need 2 or more examples per class (1 support, 1 query), got {per_class}")
    queries = min(config.queries, per_class - 1)
    shots = min(config.shots, per_class - queries)
    return dataclasses.replace(config, shots=shots, queries=queries)


@dataclass(frozen=True)
class Selection:
    """The outcome of a search: the chosen settings and every candidate's validation accuracy.

    Attributes:
        config: the chosen head settings (``test_steps`` set).
        scores: candidate label (``"inner_lr=2 test_steps=10"``) -> mean validation accuracy, in search order.
        best: the chosen candidate's label.
        validation: how it was scored (``"3-fold over the K-shot set"`` or ``"validation split"``).
        head: with a validation split, the chosen candidate meta-trained on the whole set with ``config``
            (what a final fit would train again); ``None`` after k-fold.
    """

    config: HeadConfig
    scores: dict[str, float]
    best: str
    validation: str
    head: FittedHead | None = None

    def summary(self) -> dict[str, Any]:
        """A JSON-ready record: the chosen values, the validation accuracy and every candidate's."""
        keys = sorted({k for label in self.scores for k in _parse(label)})
        return {
            "chosen": {k: getattr(self.config, k) for k in keys},
            "validation_accuracy": self.scores[self.best],
            "validation": self.validation,
            "candidates": self.scores,
        }


def _label(values: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


def _parse(label: str) -> list[str]:
    return [part.split("=", 1)[0] for part in label.split() if "=" in part]


def _grid(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    points: list[dict[str, Any]] = [{}]
    for key, values in grid.items():
        if not values:
            raise ValueError(f"grid key {key!r} has no values")
        points = [{**p, key: v} for p in points for v in values]
    return points


def select_head(
    config: HeadConfig,
    x: Array,
    y: Labels,
    classes: int | None = None,
    grid: Mapping[str, Sequence[Any]] | None = None,
    folds: int = 2,
    validation: tuple[Array, Labels] | None = None,
    step_scales: Sequence[int] = STEP_SCALES,
    progress: bool = False,
) -> Selection:
    """Chooses a head's settings on the labelled few-shot set ``x``, ``y`` (classes ``0..C-1``).

    Every grid point (default :data:`DEFAULT_GRIDS` of the head's algorithm) is meta-trained on the training
    part of each fold (episodes shrunk by :func:`fold_config` to fit), adapted to that part with
    ``inner_steps`` times each of ``step_scales``, and scored on the held-out part; the best mean accuracy
    wins (ties: the first in grid order). A candidate whose meta-training diverges scores 0. With
    ``validation`` given, the whole set trains and the validation examples score, once.

    The winner's score is the best of several candidates on the same examples, so it is optimistic as an
    estimate of that head's accuracy (by more, the more candidates and the fewer validation examples); the
    test split, never used here, gives the unbiased one.
    """
    grid = DEFAULT_GRIDS.get(config.algorithm, {}) if grid is None else grid
    unknown = sorted(set(grid) - {f.name for f in dataclasses.fields(HeadConfig)})
    if unknown:
        raise ValueError(f"unknown head settings {unknown} in the grid; use HeadConfig's fields")
    classes = classes or int(y.max()) + 1
    if validation is None:
        pairs = [(x[tr], y[tr], x[va], y[va]) for tr, va in kshot_folds(y, folds, seed=config.seed)]
        how = f"{folds}-fold over the K-shot set"
    else:
        pairs = [(x, y, validation[0], validation[1])]
        how = "validation split"
    scales = (1,) if config.algorithm == "protonet" else tuple(step_scales)
    totals: dict[str, list[float]] = {}
    settings: dict[str, HeadConfig] = {}
    trained: dict[str, FittedHead] = {}  # validation split only: the heads, for the final fit to reuse
    for train_x, train_y, val_x, val_y in pairs:
        per_class = int(np.bincount(train_y, minlength=classes).min())
        sx, sy, vx = torch.from_numpy(train_x), torch.from_numpy(train_y), torch.from_numpy(val_x)
        for point in _grid(grid):
            candidate = dataclasses.replace(config, **point)
            steps = candidate.test_steps or candidate.inner_steps
            try:
                head = meta_train_head(fold_config(candidate, per_class), train_x, train_y, classes, progress=progress)
            except FloatingPointError:  # this candidate diverged: it scores 0 and the search goes on
                head = None
            for scale in scales:
                if config.algorithm == "protonet":
                    label, setting = _label(point) or "default", candidate
                else:
                    label = _label({**point, "test_steps": steps * scale})
                    setting = dataclasses.replace(candidate, test_steps=steps * scale)
                accuracy = 0.0
                if head is not None:
                    predicted = head.probabilities(head.adapt(sx, sy, steps=steps * scale), vx)
                    accuracy = float((predicted.argmax(1).numpy() == val_y).mean())
                totals.setdefault(label, []).append(accuracy)
                settings[label] = setting
                if validation is not None and head is not None and fold_config(candidate, per_class) == candidate:
                    trained[label] = FittedHead(head.algorithm, head.params, setting)
    scores = {label: float(np.mean(values)) for label, values in totals.items()}
    best = max(scores, key=lambda label: scores[label])  # the first of equal scores
    if scores[best] == 0.0:  # accuracies are >= 0: every fold of every candidate scored 0
        raise FloatingPointError(
            f"{config.algorithm}: every candidate of the search diverged or scored 0; give lower inner_lr values"
        )
    return Selection(settings[best], scores, best, how, trained.get(best))


def one_se_choice(scores: Mapping[str, float], examples: int) -> str:
    """The first method, in the given order (the simplest first), whose validation accuracy is within one
    standard error of the best one's (Breiman's one-standard-error rule; SE = sqrt(p (1 - p) / examples) at the
    best accuracy p): a method replaces a simpler one only when validation shows a clear win, which also
    offsets the optimism of a searched method's best-of-grid score."""
    if not scores:
        raise ValueError("no validated method to choose from")
    best = max(scores.values())
    margin = float(np.sqrt(best * (1 - best) / max(1, examples)))
    return next(name for name, score in scores.items() if score >= best - margin)
