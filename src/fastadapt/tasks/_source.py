"""The one thing every task family does: draw tasks from a seeded generator."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from ._task import Task, TaskBatch


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
