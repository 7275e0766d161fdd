"""Episodic tasks: N-way K-shot classification episodes (over examples in memory or any map-style dataset, loaded
lazily, by workers if asked) and regression task families."""

from __future__ import annotations

from ._episodes import Augmentation as Augmentation
from ._episodes import ClassSplit as ClassSplit
from ._episodes import ClassTransform as ClassTransform
from ._episodes import EpisodeSampler as EpisodeSampler
from ._episodes import ExamplePool as ExamplePool
from ._episodes import LabelledPool as LabelledPool
from ._episodes import plan_seed as plan_seed
from ._episodes import rotations as rotations
from ._episodes import seeded as seeded
from ._lazy import DatasetPool as DatasetPool
from ._lazy import PrefetchedEpisodes as PrefetchedEpisodes
from ._lazy import as_example as as_example
from ._regression import LinearTasks as LinearTasks
from ._regression import SinusoidTasks as SinusoidTasks
from ._source import TaskSource as TaskSource
from ._task import Task as Task
from ._task import TaskBatch as TaskBatch
