"""The one thing every task family does: draw tasks from a seeded generator."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from ._task import Task, TaskBatch


def check_share(size: int, share: range) -> None:
    """Refuses a meta-batch size below 1 or a ``share`` that is not a non-empty part of ``range(size)``."""
    if size < 1:
        raise ValueError(f"meta-batch size must be >= 1, got {size}")
    if not share or share.start < 0 or share.stop > size or share.step != 1:
        raise ValueError(f"share {share} is not a non-empty contiguous part of range({size})")


class TaskSource(ABC):
    """A family of tasks. All randomness comes from the ``generator`` argument, so a run is
    reproduced (and resumed) by saving and restoring that generator's state."""

    @abstractmethod
    def sample(self, generator: torch.Generator) -> Task:
        """Draws one task."""

    def sample_batch(self, size: int, generator: torch.Generator) -> TaskBatch:
        """Draws ``size`` tasks as one :class:`TaskBatch`."""
        if size < 1:
            raise ValueError(f"meta-batch size must be >= 1, got {size}")
        return TaskBatch.stack([self.sample(generator) for _ in range(size)])

    def sample_shard(self, size: int, generator: torch.Generator, share: range) -> TaskBatch:
        """The tasks ``share`` (indices into ``range(size)``) of the ``size``-task batch that
        :meth:`sample_batch` would draw, leaving ``generator`` where :meth:`sample_batch` leaves it: a
        distributed run's ranks draw one meta-batch and each computes its share. This default draws the whole
        batch (so a source with its own :meth:`sample_batch` shards right); a source that can draw a task's
        plan without loading it overrides it to load only its share."""
        check_share(size, share)
        batch = self.sample_batch(size, generator)
        return TaskBatch(*(t[share.start : share.stop] for t in batch.tensors()))
