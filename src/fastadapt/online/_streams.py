"""Streams of tasks for online meta-learning: tasks arrive one after another, each seen once.

A task sampler over a finite pool draws with replacement, so a later task may hold examples that an earlier
one trained on; scoring it would then measure memory, not adaptation. :class:`FreshEpisodes` draws every
example at most once in the whole stream, and ends when the pool runs out.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from ..recsys import UserTask
from ..recsys._movielens import MovieLens
from ..tasks import EpisodeSampler, Task, TaskSource


def sampled_tasks(source: TaskSource, generator: torch.Generator) -> Iterator[Task]:
    """An endless stream of ``source.sample(generator)`` (regression families: every task is new data)."""
    while True:
        yield source.sample(generator)


class FreshEpisodes:
    """The episodes of an :class:`EpisodeSampler`, drawn so that no example appears in two episodes.

    Each episode takes N distinct base classes (a class's transforms, such as Omniglot's rotations, count as
    the same images, so one episode uses at most one of them), and K + Q unused examples of each. Iteration
    stops when fewer than N classes have K + Q unused examples left.

    Attributes:
        used: ``(n_pool,)`` bool, the pool examples handed out so far.
    """

    def __init__(self, sampler: EpisodeSampler, generator: torch.Generator) -> None:
        if len(sampler.classes) < sampler.ways:
            raise ValueError(
                f"a stream of fresh episodes needs {sampler.ways} distinct classes per episode (transforms such as "
                f"rotations reuse a class's images) but the split has {len(sampler.classes)}; lower task.ways or "
                "set stream.fresh=false"
            )
        self.sampler, self.generator = sampler, generator
        self._unused = [m[torch.randperm(len(m), generator=generator)] for m in sampler.members]
        self.used = torch.zeros(len(sampler.pool.labels), dtype=torch.bool)

    def __iter__(self) -> Iterator[Task]:
        return self

    def __next__(self) -> Task:
        s = self.sampler
        need = s.shots + s.queries
        n_transforms = len(s.transforms)
        order = torch.randperm(len(s.classes) * n_transforms, generator=self.generator).tolist()
        chosen: list[int] = []
        for flat in order:
            base = flat // n_transforms
            if len(self._unused[base]) >= need and all(c // n_transforms != base for c in chosen):
                chosen.append(flat)
                if len(chosen) == s.ways:
                    break
        if len(chosen) < s.ways:
            raise StopIteration
        picked = []
        for flat in chosen:
            base = flat // n_transforms
            indices, self._unused[base] = self._unused[base][:need], self._unused[base][need:]
            self.used[indices] = True
            picked.append(indices)
        return s.episode(chosen, picked)


def users_in_time_order(data: MovieLens, tasks: Sequence[UserTask]) -> list[UserTask]:
    """The users' tasks ordered by the time of each user's first rating in the data (ties by user index): the
    order in which a recommender meets them."""
    first = np.full(data.n_users, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, data.user, data.timestamp)
    return sorted(tasks, key=lambda t: (int(first[t.user]), t.user))
