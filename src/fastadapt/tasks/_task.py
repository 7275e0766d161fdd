"""Episodes: a support set to adapt on and a query set to score on."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Task:
    """One episode.

    Attributes:
        support_x: ``(n_support, *x_shape)`` inputs to adapt on.
        support_y: ``(n_support, *y_shape)`` their targets (class ids 0..N-1 or regression values).
        query_x: ``(n_query, *x_shape)`` inputs to score the adapted model on.
        query_y: ``(n_query, *y_shape)`` their targets.
    """

    support_x: Tensor
    support_y: Tensor
    query_x: Tensor
    query_y: Tensor

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Task:
        """The task on ``device``, its floating-point tensors cast to ``dtype`` (class ids stay integers)."""
        return Task(*_moved(self.tensors(), device, dtype))

    def tensors(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return (self.support_x, self.support_y, self.query_x, self.query_y)


@dataclass(frozen=True)
class TaskBatch:
    """A meta-batch: the fields of :class:`Task` with a leading task dimension ``T``."""

    support_x: Tensor
    support_y: Tensor
    query_x: Tensor
    query_y: Tensor

    @staticmethod
    def stack(tasks: Sequence[Task]) -> TaskBatch:
        """Stacks equally shaped tasks into a batch."""
        if not tasks:
            raise ValueError("cannot stack an empty list of tasks")
        return TaskBatch(*(torch.stack(ts) for ts in zip(*(t.tensors() for t in tasks), strict=True)))

    def __len__(self) -> int:
        return self.support_x.shape[0]

    def __getitem__(self, i: int) -> Task:
        return Task(*(t[i] for t in self.tensors()))

    def __iter__(self) -> Iterator[Task]:
        return (self[i] for i in range(len(self)))

    def tensors(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return (self.support_x, self.support_y, self.query_x, self.query_y)

    def chunks(self, size: int) -> Iterator[TaskBatch]:
        """Consecutive sub-batches of at most ``size`` tasks."""
        for start in range(0, len(self), size):
            yield TaskBatch(*(t[start : start + size] for t in self.tensors()))

    def shard(self, rank: int, world_size: int) -> TaskBatch:
        """The tasks of this batch that process ``rank`` of ``world_size`` handles."""
        return TaskBatch(*(t[rank::world_size] for t in self.tensors()))

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> TaskBatch:
        """The batch on ``device``, its floating-point tensors cast to ``dtype`` (class ids stay integers)."""
        return TaskBatch(*_moved(self.tensors(), device, dtype))


def _moved(tensors: tuple[Tensor, ...], device: torch.device | str, dtype: torch.dtype | None) -> list[Tensor]:
    return [t.to(device, dtype if dtype is not None and t.is_floating_point() else t.dtype) for t in tensors]
