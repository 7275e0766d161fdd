"""Episodes over any map-style ``torch.utils.data.Dataset``: labels known up front, examples loaded on demand, and
a ``DataLoader`` whose workers load the coming episodes while the current one trains.

Episodes are drawn in the calling process from the run's generator (labels only) and loaded elsewhere, so the
episodes of a seed do not depend on the number of workers: a worker only reads the examples it is told to.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ._episodes import EpisodeSampler, Plan
from ._source import TaskSource
from ._task import Task, TaskBatch


def _labels_of(dataset: Any, labels: Any) -> np.ndarray:
    if labels is None:
        labels = getattr(dataset, "targets", None)
    if labels is None:
        raise ValueError(
            f"{type(dataset).__name__} has no `targets` attribute; pass labels= (one label per example, known up "
            "front, so that episodes are drawn without loading examples)"
        )
    array = np.asarray(labels.cpu() if isinstance(labels, Tensor) else labels)
    if array.ndim != 1:
        raise ValueError(f"labels must be 1-D (one per example), got shape {array.shape}")
    size = len(dataset)
    if len(array) != size:
        raise ValueError(f"the dataset has {size} examples but {len(array)} labels; give one label per example")
    return array


def as_example(x: Any) -> Tensor:
    """One example as a tensor: tensors as they are, NumPy arrays converted, uint8 images (arrays or Pillow
    images, ``(H, W)`` / ``(H, W, C)``) to ``(C, H, W)`` float32 in [0, 1] as torchvision's ``ToTensor`` does."""
    if isinstance(x, Tensor):
        return x
    if not isinstance(x, np.ndarray) and hasattr(x, "mode") and hasattr(x, "size"):  # a Pillow image
        x = np.array(x)  # a writable copy
        if x.dtype == np.uint8:
            x = x[..., None] if x.ndim == 2 else x
            return torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1).float() / 255.0
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    return torch.as_tensor(x)


class DatasetPool:
    """The examples of a map-style dataset, as an :class:`~fastadapt.tasks.ExamplePool`: class ids from labels
    known up front, examples read with ``dataset[i]`` only when an episode holds them.

    Args:
        dataset: anything with ``__len__`` and ``__getitem__`` returning an example or ``(example, label, ...)``.
        labels: one label per example (any hashable values; default ``dataset.targets``). Class ids are the
            distinct labels in sorted order.
        class_names: a name per class id (default ``dataset.classes`` when the labels are its indices, else the
            labels as strings).
        example_shape: the shape of one example, if known (otherwise ``dataset[0]`` is read once to find it).
        check_labels: compare the label a ``(example, label)`` item carries with ``labels`` (a mismatch means the
            labels given are not the dataset's).
    """

    def __init__(
        self,
        dataset: Any,
        labels: Sequence[Any] | np.ndarray | Tensor | None = None,
        class_names: Sequence[str] | None = None,
        *,
        example_shape: Sequence[int] | None = None,
        check_labels: bool = True,
    ) -> None:
        raw = _labels_of(dataset, labels)
        if len(raw) == 0:
            raise ValueError("the dataset is empty")
        values, ids = np.unique(raw, return_inverse=True)
        self.dataset, self._raw, self.check_labels = dataset, raw, check_labels
        self._labels = torch.from_numpy(ids.astype(np.int64))
        if class_names is None:
            named = getattr(dataset, "classes", None)
            integral = np.issubdtype(values.dtype, np.integer)
            if named is not None and integral and values.min() >= 0 and values.max() < len(named):
                class_names = [str(named[int(v)]) for v in values]
            else:
                class_names = [str(v) for v in values]
        if len(class_names) != len(values):
            raise ValueError(f"{len(class_names)} class names for {len(values)} distinct labels")
        self._class_names = tuple(class_names)
        self._shape = tuple(example_shape) if example_shape is not None else None

    @property
    def labels(self) -> Tensor:
        return self._labels

    @property
    def class_names(self) -> tuple[str, ...]:
        return self._class_names

    @property
    def num_classes(self) -> int:
        return len(self._class_names)

    @property
    def example_shape(self) -> tuple[int, ...]:
        if self._shape is None:
            self._shape = tuple(self._example(0).shape)
        return self._shape

    def _example(self, i: int) -> Tensor:
        item = self.dataset[i]
        if isinstance(item, tuple | list):
            if self.check_labels and len(item) > 1:
                given = item[1].item() if isinstance(item[1], Tensor) else item[1]
                expected = self._raw[i].item() if isinstance(self._raw[i], np.generic) else self._raw[i]
                if given != expected:
                    raise ValueError(
                        f"dataset[{i}] has label {given!r} but the labels given say {expected!r}; pass the "
                        "dataset's own labels (or check_labels=False if its items carry something else)"
                    )
            item = item[0]
        return as_example(item)

    def load(self, indices: Tensor) -> Tensor:
        examples = [self._example(int(i)) for i in indices]
        shapes = {tuple(x.shape) for x in examples}
        if len(shapes) > 1:
            raise ValueError(
                f"examples {indices.tolist()[:8]} have different shapes {sorted(shapes)}; resize them to one shape "
                "(for images: data.image_size)"
            )
        return torch.stack(examples)


class _Episodes(Dataset[tuple[Plan, Task]]):
    """Loads the episode of a plan (what the DataLoader's workers run)."""

    def __init__(self, sampler: EpisodeSampler) -> None:
        self.sampler = sampler

    def __getitem__(self, plan: Plan) -> tuple[Plan, Task]:  # type: ignore[override]
        return plan, self.sampler.episode(*plan)


class _Plans:
    """The plans a generator in a given state would draw next, endlessly (the DataLoader's sampler)."""

    def __init__(self, sampler: EpisodeSampler, state: Tensor) -> None:
        self.sampler, self.state = sampler, state

    def __iter__(self) -> Iterator[Plan]:
        generator = torch.Generator()
        generator.set_state(self.state)
        while True:
            yield self.sampler.draw(generator)


def _as_is(item: tuple[Plan, Task]) -> tuple[Plan, Task]:
    return item


def _same(a: Plan, b: Plan) -> bool:
    return a[0] == b[0] and all(torch.equal(x, y) for x, y in zip(a[1], b[1], strict=True))


class PrefetchedEpisodes(TaskSource):
    """An :class:`EpisodeSampler` whose episodes are loaded ahead by ``DataLoader`` workers.

    Each :meth:`sample` draws its plan from the caller's generator, as the sampler would; the workers load the
    plans that a copy of that generator draws next (``workers * prefetch`` ahead). An episode is used only if its
    plan is the one the caller's generator drew, so the tasks equal the sampler's own for any number of workers,
    and a generator restored from a checkpoint (or used for anything else in between) only restarts the loading.

    Args:
        sampler: what to draw and load.
        workers: loading processes (0: load in this process, when asked).
        prefetch: episodes each worker loads ahead.
    """

    def __init__(self, sampler: EpisodeSampler, workers: int = 0, prefetch: int = 2) -> None:
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        if prefetch < 1:
            raise ValueError(f"prefetch must be >= 1, got {prefetch}")
        self.sampler, self.workers, self.prefetch = sampler, workers, prefetch
        self._ahead: Iterator[tuple[Plan, Task]] | None = None
        self.restarts = 0  # how often the workers had to start over (a measure of wasted loading)

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__ | {"_ahead": None}

    def sample(self, generator: torch.Generator) -> Task:
        if self.workers == 0:
            return self.sampler.sample(generator)
        state = generator.get_state()
        plan = self.sampler.draw(generator)
        if self._ahead is not None:
            ahead, task = next(self._ahead)
            if _same(ahead, plan):
                return task
        self._ahead = self._start(state)
        self.restarts += 1
        ahead, task = next(self._ahead)
        if not _same(ahead, plan):  # the sampler's draws are not a function of the generator's state
            raise RuntimeError("the episode sampler drew different episodes from the same generator state")
        return task

    def sample_shard(self, size: int, generator: torch.Generator, share: range) -> TaskBatch:
        if self.workers == 0:  # loading in this process: only the share is loaded
            return self.sampler.sample_shard(size, generator, share)
        return super().sample_shard(size, generator, share)  # the workers load every task ahead, in order

    def _start(self, state: Tensor) -> Iterator[tuple[Plan, Task]]:
        loader = DataLoader(
            _Episodes(self.sampler),
            batch_size=None,
            sampler=_Plans(self.sampler, state),  # type: ignore[arg-type]
            num_workers=self.workers,
            prefetch_factor=self.prefetch,
            collate_fn=_as_is,  # type: ignore[arg-type]
            # the loader draws its workers' base seed from this, not from torch's global generator (a model's
            # dropout draws from that); the workers need none: an episode's augmentation is seeded by its plan
            generator=torch.Generator().manual_seed(0),
        )
        return iter(loader)

    def close(self) -> None:
        """Stops the workers (they also stop when this object is garbage-collected)."""
        self._ahead = None
