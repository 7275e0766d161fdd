"""Episodic tasks: N-way K-shot classification episodes and regression task families."""

from __future__ import annotations

from ._episodes import ClassSplit as ClassSplit
from ._episodes import ClassTransform as ClassTransform
from ._episodes import EpisodeSampler as EpisodeSampler
from ._episodes import LabelledPool as LabelledPool
from ._episodes import rotations as rotations
from ._regression import LinearTasks as LinearTasks
from ._regression import SinusoidTasks as SinusoidTasks
from ._source import TaskSource as TaskSource
from ._task import Task as Task
from ._task import TaskBatch as TaskBatch
