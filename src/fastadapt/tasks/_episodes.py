"""N-way K-shot episodes over a labelled pool with disjoint class splits.

The episode protocol of Vinyals et al. 2016 (arXiv:1606.04080) as used by MAML (arXiv:1703.03400):
N classes drawn from one split, K support and Q query examples per class, labels remapped to 0..N-1.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from ._source import TaskSource, check_share
from ._task import Task, TaskBatch

#: A class augmentation: maps a batch of examples ``(n, *x_shape)`` to a new class's examples.
ClassTransform = Callable[[Tensor], Tensor]
#: An example augmentation: maps one example ``x_shape`` to an augmented one (random crops, flips; torchvision's
#: transforms on tensors qualify). Its randomness is seeded per episode, so episodes are reproducible.
Augmentation = Callable[[Tensor], Tensor]
#: Which examples an episode holds: its (class, transform) pairs and, for each, the pool indices drawn.
Plan = tuple[list[int], list[Tensor]]


class ExamplePool(Protocol):
    """What an :class:`EpisodeSampler` needs of its examples: labels known up front, and a way to load some."""

    @property
    def labels(self) -> Tensor:
        """``(n,)`` int64 class ids in ``0..num_classes-1``."""
        ...

    @property
    def class_names(self) -> tuple[str, ...]: ...

    @property
    def num_classes(self) -> int: ...

    @property
    def example_shape(self) -> tuple[int, ...]:
        """The shape of one example (what a model's input layer is built for)."""
        ...

    def load(self, indices: Tensor) -> Tensor:
        """``(len(indices), *example_shape)``: the examples at these pool indices."""
        ...


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

    @property
    def example_shape(self) -> tuple[int, ...]:
        return tuple(self.features.shape[1:])

    def load(self, indices: Tensor) -> Tensor:
        return self.features[indices]


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

    @classmethod
    def from_fractions(cls, num_classes: int, fractions: Sequence[float], seed: int = 0) -> ClassSplit:
        """Classes ``0..num_classes-1`` shuffled with ``seed`` and cut into train / val / test by ``fractions``
        (three non-negative values summing to 1; each part gets at least one class)."""
        if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
            raise ValueError(
                f"class fractions must be three values >= 0 summing to 1 (train, val, test), got {list(fractions)}"
            )
        if num_classes < 3:
            raise ValueError(f"{num_classes} classes cannot be split three ways; give at least 3")
        order = torch.randperm(num_classes, generator=torch.Generator().manual_seed(seed)).tolist()
        n_val = max(1, round(fractions[1] * num_classes))
        n_test = max(1, round(fractions[2] * num_classes))
        n_train = num_classes - n_val - n_test
        if n_train < 1:
            raise ValueError(f"class fractions {list(fractions)} leave no training class of {num_classes}")
        return cls(
            tuple(sorted(order[:n_train])),
            tuple(sorted(order[n_train : n_train + n_val])),
            tuple(sorted(order[n_train + n_val :])),
        )

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

    Drawing an episode (:meth:`draw`) needs only the labels; loading it (:meth:`episode`) reads only the examples
    drawn, so a pool over a lazily loaded dataset (:class:`~fastadapt.tasks.DatasetPool`) never reads the rest.

    Args:
        pool: the labelled examples: a :class:`LabelledPool` in memory or any :class:`ExamplePool`.
        classes: the class ids this sampler may draw (one split of a :class:`ClassSplit`).
        ways: N, classes per episode.
        shots: K, support examples per class.
        queries: query examples per class.
        class_transforms: if given, every (class, transform) pair is a distinct class, as Omniglot's
            rotations are; the transform is applied to all examples drawn for that class.
        augment: applied to every example of an episode after loading (training augmentation); its torch and
            ``random`` draws are seeded from the episode's examples, so an episode is the same wherever it is
            loaded (in this process or in a :class:`~fastadapt.tasks.PrefetchedEpisodes` worker).
    """

    def __init__(
        self,
        pool: ExamplePool,
        classes: Sequence[int],
        ways: int,
        shots: int,
        queries: int,
        class_transforms: Sequence[ClassTransform] = (),
        augment: Augmentation | None = None,
    ) -> None:
        for name, value, low in (("ways", ways, 1), ("shots", shots, 1), ("queries", queries, 1)):
            if value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")
        self.pool, self.ways, self.shots, self.queries = pool, ways, shots, queries
        self.augment = augment
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
        return self.episode(*self.draw(generator))

    def sample_shard(self, size: int, generator: torch.Generator, share: range) -> TaskBatch:
        """Draws the plans of all ``size`` tasks and loads only those of ``share``."""
        check_share(size, share)
        plans = [self.draw(generator) for _ in range(size)]
        return TaskBatch.stack([self.episode(*plans[i]) for i in share])

    def draw(self, generator: torch.Generator) -> Plan:
        """Which classes and examples the next episode holds (labels only: nothing is loaded)."""
        n_transforms = len(self.transforms)
        chosen = torch.randperm(len(self.classes) * n_transforms, generator=generator)[: self.ways].tolist()
        picked = []
        for flat in chosen:
            members = self.members[flat // n_transforms]
            picked.append(members[torch.randperm(len(members), generator=generator)[: self.shots + self.queries]])
        return chosen, picked

    def episode(self, chosen: Sequence[int], picked: Sequence[Tensor]) -> Task:
        """The task of the given classes and examples.

        Args:
            chosen: N indices into (class, transform) pairs, ``class_index * n_transforms + transform_index``.
            picked: for each, the ``shots + queries`` pool indices of its examples, support first.
        """
        if self.augment is not None:
            with seeded(plan_seed(chosen, picked)):
                return self._episode(chosen, picked)
        return self._episode(chosen, picked)

    def _episode(self, chosen: Sequence[int], picked: Sequence[Tensor]) -> Task:
        n_transforms = len(self.transforms)
        support, query = [], []
        for flat, indices in zip(chosen, picked, strict=True):
            x = self.pool.load(indices)
            transform = self.transforms[flat % n_transforms]
            if transform is not None:
                x = transform(x)
            if self.augment is not None:
                x = torch.stack([self.augment(example) for example in x])
            support.append(x[: self.shots])
            query.append(x[self.shots :])
        labels = torch.arange(self.ways)
        return Task(
            support_x=torch.cat(support),  # (ways * shots, *x_shape), class-major
            support_y=labels.repeat_interleave(self.shots),
            query_x=torch.cat(query),  # (ways * queries, *x_shape)
            query_y=labels.repeat_interleave(self.queries),
        )


def plan_seed(chosen: Sequence[int], picked: Sequence[Tensor]) -> int:
    """A seed determined by an episode's classes and examples (for its augmentation's random draws)."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update(torch.tensor(list(chosen), dtype=torch.int64).numpy().tobytes())
    for indices in picked:
        digest.update(indices.to(torch.int64).numpy().tobytes())
    return int.from_bytes(digest.digest(), "little") >> 1


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seeds torch's and Python's global generators for a block, restoring them after."""
    python = random.getstate()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        random.seed(seed)
        try:
            yield
        finally:
            random.setstate(python)
