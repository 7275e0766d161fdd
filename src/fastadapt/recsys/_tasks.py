"""Users as tasks: a user's support ratings adapt the model, their query ratings score it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ..tasks import Task, TaskBatch, TaskSource
from ._coldstart import UserTask
from ._movielens import MovieLens

USER_COLUMNS = ("gender", "age", "occupation", "zip_prefix")
YEAR_BASE, YEAR_CATEGORIES = 1900, 121  # release year -> category year - 1900 (clipped); 0 also means unknown
ITEM_ID_COLUMN = 5  # the column of the item's index in pair_features


def feature_layout(data: MovieLens, item_ids: bool = True) -> tuple[list[int | None], int]:
    """Cardinalities of the categorical columns of :func:`pair_features` (``None`` for the item-id column
    when ``item_ids`` is False: MeLU proper embeds item features only) and the width of its genre block."""
    sizes = data.feature_sizes
    return [sizes[c] for c in USER_COLUMNS] + [YEAR_CATEGORIES, data.n_items if item_ids else None], sizes["genres"]


def pair_features(data: MovieLens, users: np.ndarray, items: np.ndarray) -> Tensor:
    """One row per (user, item) pair: the user's gender, age, occupation and zip-prefix categories, the
    item's release-year category and its index, then its genres (multi-hot), as float32.

    Args:
        users: ``(n,)`` user indices; items: ``(n,)`` item indices.

    Returns:
        ``(n, 6 + n_genres)``.
    """
    user_rows = np.stack([getattr(data, c)[users] for c in USER_COLUMNS], axis=1)  # (n, 4)
    return features_for(data, user_rows, items)


def features_for(data: MovieLens, user_rows: np.ndarray, items: np.ndarray) -> Tensor:
    """Like :func:`pair_features` for users given by their feature categories ``(n, 4)`` (or one row
    ``(4,)`` for every item), e.g. a new user who is not in the data."""
    user_rows = np.broadcast_to(user_rows, (len(items), len(USER_COLUMNS)))
    year = np.clip(data.year[items] - YEAR_BASE, 0, YEAR_CATEGORIES - 1)
    categorical = np.concatenate([user_rows, np.stack([year, items], axis=1)], axis=1).astype(np.float32)  # (n, 6)
    return torch.from_numpy(np.concatenate([categorical, data.genres[items].astype(np.float32)], axis=1))


def user_task(
    data: MovieLens, task: UserTask, support_size: int | None = None, generator: torch.Generator | None = None
) -> Task:
    """The :class:`Task` of one user: features of (user, item) pairs and ratings ``(n, 1)``.

    ``support_size`` keeps a random subset of that many support ratings (drawn with ``generator``).
    """
    support = np.arange(len(task.support_items))
    if support_size is not None and support_size < len(support):
        support = torch.randperm(len(support), generator=generator)[:support_size].numpy()
    s_items, q_items = task.support_items[support], task.query_items
    return Task(
        pair_features(data, np.full(len(s_items), task.user), s_items),
        torch.from_numpy(task.support_ratings[support].astype(np.float32)).unsqueeze(1),
        pair_features(data, np.full(len(q_items), task.user), q_items),
        torch.from_numpy(task.query_ratings.astype(np.float32)).unsqueeze(1),
    )


class UserTasks(TaskSource):
    """The user tasks of one cold-start state as a task source.

    ``sample`` draws a user at random. ``sample_batch`` stacks users, so their support sets must have one
    size: it draws a window of ``size`` users adjacent in the order of support-set size (users of nearly
    equal support sizes) and keeps a random subset of each one's support, as large as the window's
    smallest. Query sets all have the protocol's query size.

    ``support_max``: each batch keeps a random number of support ratings, uniformly from 1 to ``support_max``
    (at most the window's smallest), so that meta-training sees the few-rating users cold start is about.

    ``exhaustive``: an evaluation scores every user once, in order (:func:`~fastadapt.evaluation.evaluate`
    reads ``exhaustive``, ``__len__`` and ``task``), instead of drawing ``episodes`` users at random: the
    validation users, so that every validation scores the same users.
    """

    def __init__(
        self, data: MovieLens, tasks: Sequence[UserTask], exhaustive: bool = False, support_max: int | None = None
    ) -> None:
        if not tasks:
            raise ValueError("no user tasks: the cold-start state is empty; relax its rating-count limits")
        if len({len(t.query_items) for t in tasks}) != 1:
            raise ValueError("user tasks must all have the same query size to be batched")
        self.data = data
        self.tasks = list(tasks)
        self.by_support = sorted(range(len(self.tasks)), key=lambda i: len(self.tasks[i].support_items))
        self.exhaustive = exhaustive
        if support_max is not None and support_max < 1:
            raise ValueError(f"support_max must be >= 1 (or None: every support rating), got {support_max}")
        self.support_max = support_max

    def task(self, index: int) -> Task:
        """The task of the ``index``-th user (in ascending user order)."""
        return user_task(self.data, self.tasks[index])

    def __len__(self) -> int:
        return len(self.tasks)

    def sample(self, generator: torch.Generator) -> Task:
        index = int(torch.randint(len(self.tasks), (1,), generator=generator))
        return user_task(self.data, self.tasks[index])

    def sample_batch(self, size: int, generator: torch.Generator) -> TaskBatch:
        if not 1 <= size <= len(self.tasks):
            raise ValueError(f"meta-batch size must be between 1 and the {len(self.tasks)} users, got {size}")
        start = int(torch.randint(len(self.tasks) - size + 1, (1,), generator=generator))
        window = [self.tasks[i] for i in self.by_support[start : start + size]]
        smallest = min(len(t.support_items) for t in window)
        if self.support_max is not None:  # a batch of few-shot users: 1 to support_max ratings each
            smallest = min(smallest, int(torch.randint(1, self.support_max + 1, (1,), generator=generator)))
        return TaskBatch.stack([user_task(self.data, t, smallest, generator) for t in window])
