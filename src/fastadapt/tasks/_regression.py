"""Regression task families: sinusoids exactly as in MAML (arXiv:1703.03400, section 5.1) and lines."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ._source import TaskSource
from ._task import Task


def _uniform(low: float, high: float, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator)


@dataclass(frozen=True)
class SinusoidTasks(TaskSource):
    """``y = A sin(x - phase)`` with ``A ~ U[0.1, 5]``, ``phase ~ U[0, pi]``, ``x ~ U[-5, 5]``.

    Support and query are ``(shots, 1)`` and ``(queries, 1)`` tensors of inputs and targets.
    """

    shots: int = 10
    queries: int = 10
    amplitude: tuple[float, float] = (0.1, 5.0)
    phase: tuple[float, float] = (0.0, math.pi)
    x_range: tuple[float, float] = (-5.0, 5.0)

    def sample(self, generator: torch.Generator) -> Task:
        amplitude = _uniform(*self.amplitude, (1,), generator)
        phase = _uniform(*self.phase, (1,), generator)
        x = _uniform(*self.x_range, (self.shots + self.queries, 1), generator)
        y = amplitude * torch.sin(x - phase)
        return Task(x[: self.shots], y[: self.shots], x[self.shots :], y[self.shots :])


@dataclass(frozen=True)
class LinearTasks(TaskSource):
    """``y = slope * x + intercept (+ noise)`` with slope and intercept uniform in their ranges."""

    shots: int = 10
    queries: int = 10
    slope: tuple[float, float] = (-3.0, 3.0)
    intercept: tuple[float, float] = (-3.0, 3.0)
    x_range: tuple[float, float] = (-5.0, 5.0)
    noise: float = 0.0

    def sample(self, generator: torch.Generator) -> Task:
        slope = _uniform(*self.slope, (1,), generator)
        intercept = _uniform(*self.intercept, (1,), generator)
        x = _uniform(*self.x_range, (self.shots + self.queries, 1), generator)
        y = slope * x + intercept
        if self.noise:
            y = y + self.noise * torch.randn(y.shape, generator=generator)
        return Task(x[: self.shots], y[: self.shots], x[self.shots :], y[self.shots :])
