"""N-way K-shot episodes over a labelled pool with disjoint class splits.

The episode protocol of Vinyals et al. 2016 (arXiv:1606.04080) as used by MAML (arXiv:1703.03400):
N classes drawn from one split, K support and Q query examples per class, labels remapped to 0..N-1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ._source import TaskSource
from ._task import Task

#: A class augmentation: maps a batch of examples ``(n, *x_shape)`` to a new class's examples.
ClassTransform = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class LabelledPool:
    """Examples with integer class labels.

    Attributes:
        features: ``(n, *x_shape)`` examples.
        labels: ``(n,)`` int64 class ids in ``0..len(class_names)-1``.
        class_names: a name for each class id.
    """

    features: Tensor
    labels: Tensor
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.features.shape[0] != self.labels.shape[0]:
            raise ValueError(
                f"features has {self.features.shape[0]} examples but labels has {self.labels.shape[0]}; "
                "they must have one label per example"
            )
        if self.labels.ndim != 1:
            raise ValueError(f"labels must be 1-D, got shape {tuple(self.labels.shape)}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class ClassSplit:
    """Disjoint lists of class ids for meta-training, validation and testing."""

    train: tuple[int, ...]
    val: tuple[int, ...]
    test: tuple[int, ...]

    def __post_init__(self) -> None:
        parts = {"train": set(self.train), "val": set(self.val), "test": set(self.test)}
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            shared = parts[a] & parts[b]
            if shared:
                raise ValueError(f"class split is not disjoint: {a} and {b} share classes {sorted(shared)[:10]}")

    def __getitem__(self, name: str) -> tuple[int, ...]:
        if name not in ("train", "val", "test"):
            raise KeyError(f"unknown split {name!r}; use 'train', 'val' or 'test'")
        return getattr(self, name)  # type: ignore[no-any-return]


def rotations(*degrees: int) -> tuple[ClassTransform, ...]:
    """Rotations by multiples of 90° of ``(n, C, H, W)`` images, each rotation a new class
    (the Omniglot protocol of Santoro et al. 2016 / Vinyals et al. 2016)."""
    for d in degrees:
        if d % 90:
            raise ValueError(f"rotations must be multiples of 90 degrees, got {d}")
    return tuple(_Rotation(d // 90) for d in degrees)


@dataclass(frozen=True)
class _Rotation:
    quarter_turns: int

    def __call__(self, x: Tensor) -> Tensor:
        return torch.rot90(x, self.quarter_turns, dims=(-2, -1))


class EpisodeSampler(TaskSource):
    """Samples N-way K-shot classification episodes from some classes of a pool.

    Args:
        pool: the labelled examples.
        classes: the class ids this sampler may draw (one split of a :class:`ClassSplit`).
        ways: N, classes per episode.
        shots: K, support examples per class.
        queries: query examples per class.
        class_transforms: if given, every (class, transform) pair is a distinct class, as Omniglot's
            rotations are; the transform is applied to all examples drawn for that class.
    """

    def __init__(
        self,
        pool: LabelledPool,
        classes: Sequence[int],
        ways: int,
        shots: int,
        queries: int,
        class_transforms: Sequence[ClassTransform] = (),
    ) -> None:
        for name, value, low in (("ways", ways, 1), ("shots", shots, 1), ("queries", queries, 1)):
            if value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")
        self.pool, self.ways, self.shots, self.queries = pool, ways, shots, queries
        self.classes = tuple(int(c) for c in classes)
        unknown = sorted({c for c in self.classes if not 0 <= c < pool.num_classes})
        if unknown:
            raise ValueError(
                f"classes {unknown} are not in the pool, whose class ids are 0..{pool.num_classes - 1}; fix the split"
            )
        repeated = sorted({c for c in self.classes if self.classes.count(c) > 1})
        if repeated:
            raise ValueError(f"classes {repeated} are listed more than once; list each class once")
        self.transforms: tuple[ClassTransform | None, ...] = tuple(class_transforms) or (None,)
        available = len(self.classes) * len(self.transforms)
        if ways > available:
            raise ValueError(
                f"ways={ways} but this split has only {available} classes "
                f"({len(self.classes)} classes x {len(self.transforms)} transforms); lower ways or use more classes"
            )
        need = shots + queries
        self.members: list[Tensor] = []  # pool indices of each class, in the order of ``classes``
        for c in self.classes:
            members = torch.nonzero(pool.labels == c).flatten()
            if len(members) < need:
                raise ValueError(
                    f"shots + queries = {shots} + {queries} = {need} but class {c} "
                    f"({pool.class_names[c]!r}) has only {len(members)} examples; lower shots or queries"
                )
            self.members.append(members)

    def sample(self, generator: torch.Generator) -> Task:
        n_transforms = len(self.transforms)
        chosen = torch.randperm(len(self.classes) * n_transforms, generator=generator)[: self.ways].tolist()
        picked = []
        for flat in chosen:
            members = self.members[flat // n_transforms]
            picked.append(members[torch.randperm(len(members), generator=generator)[: self.shots + self.queries]])
        return self.episode(chosen, picked)

    def episode(self, chosen: Sequence[int], picked: Sequence[Tensor]) -> Task:
        """The task of the given classes and examples.

        Args:
            chosen: N indices into (class, transform) pairs, ``class_index * n_transforms + transform_index``.
            picked: for each, the ``shots + queries`` pool indices of its examples, support first.
        """
        n_transforms = len(self.transforms)
        support, query = [], []
        for flat, indices in zip(chosen, picked, strict=True):
            x = self.pool.features[indices]
            transform = self.transforms[flat % n_transforms]
            if transform is not None:
                x = transform(x)
            support.append(x[: self.shots])
            query.append(x[self.shots :])
        labels = torch.arange(self.ways)
        return Task(
            support_x=torch.cat(support),  # (ways * shots, *x_shape), class-major
            support_y=labels.repeat_interleave(self.shots),
            query_x=torch.cat(query),  # (ways * queries, *x_shape)
            query_y=labels.repeat_interleave(self.queries),
        )
