"""The cold-start protocol of MeLU (Lee et al., KDD 2019, arXiv:1908.00413): users and items are split into
existing and new, every user becomes one task per state (a support set to adapt on, a query set to score).

Users are split at random into new (``new_user_fraction``), validation (``val_user_fraction``) and existing (the
rest). Validation users are new users kept for model selection (early stopping, the best checkpoint, the baselines'
settings): none of their ratings is trained on and none is in a reported state. Items are new when released in or
after ``year_threshold``: 1998 for ML-1M, as in MeLU; for any other data :func:`new_item_year_threshold`, the
latest year such that at least 10% of the items were released in or after it. On the real ML-100K, whose ratings
end in April 1998 so that few of its films are from 1998, this should give 1997 (films of 1997-1998 as the new
items). Items of unknown year (0) are existing.

The five states, and the ratings each task is made from:

====================  ==========  ==========  ===============================================
state                 users       items       notes
====================  ==========  ==========  ===============================================
``train``             existing    existing    minus the warm users' query ratings
``val``               validation  existing    for selection only; never reported
``warm``              existing    existing    ``warm_fraction`` of the eligible existing users
``user_cold``         new         existing
``item_cold``         existing    new
``user_item_cold``    new         new
====================  ==========  ==========  ===============================================

Warm means: a warm user's query ratings are held out of ``train``, but the rest of their ratings (their
warm support set) stays in ``train``: the model has seen the user and the items, not these pairs.

A user has a task in a state when they have between ``min_ratings`` and ``max_ratings`` ratings in it (for
``train``, after the warm query ratings were removed), counted before the split into query and support. The
query set is ``query_size`` of those ratings, the support set the rest (at most ``support_cap``). The random
draws of a task depend only on ``(seed, state cell, user)``, so that splits with the same seed but other
``support_cap`` (or ``min_ratings``, ``max_ratings``, ``warm_fraction``) keep the same query sets and nested
support sets: train without a cap, then evaluate with caps 1, 3, 5, 10.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ._movielens import MovieLens

#: The states, in the order of :meth:`ColdStartSplit.summary`.
STATES: tuple[str, ...] = ("train", "val", "warm", "user_cold", "item_cold", "user_item_cold")
#: The states a recommender is reported on (``train`` trains, ``val`` selects).
REPORTED: tuple[str, ...] = ("warm", "user_cold", "item_cold", "user_item_cold")
#: MeLU's threshold for ML-1M: items released in or after 1998 are new.
ML1M_YEAR_THRESHOLD = 1998
# A rating's cell: 2 * (the user is new) + (the item is new).
_CELL = {"train": 0, "val": 2, "warm": 0, "user_cold": 2, "item_cold": 1, "user_item_cold": 3}


@dataclass(frozen=True, eq=False)
class UserTask:
    """One user's ratings in one state, as a few-shot regression task.

    Attributes:
        user: the user's index.
        support_items, query_items: ``(n_support,)`` and ``(n_query,)`` int64 item indices.
        support_ratings, query_ratings: ``(n_support,)`` and ``(n_query,)`` float32 ratings.
    """

    user: int
    support_items: npt.NDArray[np.int64]
    support_ratings: npt.NDArray[np.float32]
    query_items: npt.NDArray[np.int64]
    query_ratings: npt.NDArray[np.float32]


@dataclass(frozen=True, eq=False)
class ColdStartSplit:
    """Tasks per state and the partitions they come from.

    Attributes:
        tasks: ``{state: [UserTask, ...]}`` for every state of :data:`STATES` (a list may be empty), in
            ascending user order.
        existing_users, new_users, val_users: sorted int64 user indices, a partition of all users.
        warm_users: the existing users whose query ratings are held out of ``train`` (sorted).
        new_items: ``(n_items,)`` bool, True for items released in or after ``year_threshold``.
        year_threshold, min_ratings, max_ratings: the protocol's parameters.
    """

    tasks: dict[str, list[UserTask]]
    existing_users: npt.NDArray[np.int64]
    new_users: npt.NDArray[np.int64]
    warm_users: npt.NDArray[np.int64]
    new_items: npt.NDArray[np.bool_]
    year_threshold: int
    min_ratings: int = 13
    max_ratings: int = 100
    val_users: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    def state(self, name: str) -> list[UserTask]:
        """The tasks of one state; an error if the name is unknown or the state has no task."""
        if name not in STATES:
            raise ValueError(f"unknown state {name!r}; choose one of {', '.join(STATES)}")
        tasks = self.tasks[name]
        if not tasks:
            users = "validation" if name == "val" else ("existing" if _CELL[name] < 2 else "new")
            items = "new" if _CELL[name] % 2 else "existing"
            raise ValueError(
                f"state {name!r} has no tasks: no {users} user has between {self.min_ratings} and "
                f"{self.max_ratings} ratings of {items} items ({int(self.new_items.sum())} of {len(self.new_items)} "
                f"items are new with year_threshold={self.year_threshold}); lower min_ratings, raise max_ratings, "
                "or move year_threshold"
                + (
                    "; validation users are val_user_fraction of all users (recsys.val_user_fraction), above 0"
                    if name == "val"
                    else ""
                )
            )
        return tasks

    def summary(self) -> dict[str, dict[str, int]]:
        """Per state: the number of ``tasks``, of ``support`` ratings and of ``query`` ratings."""
        return {
            name: {
                "tasks": len(tasks),
                "support": sum(len(t.support_items) for t in tasks),
                "query": sum(len(t.query_items) for t in tasks),
            }
            for name, tasks in self.tasks.items()
        }


def new_item_year_threshold(data: MovieLens, min_new_fraction: float = 0.1) -> int:
    """The default cold-start year: 1998 for ML-1M (MeLU's), else the latest year ``y`` such that at least
    ``min_new_fraction`` of the items were released in or after ``y``."""
    if data.name == "ml-1m":
        return ML1M_YEAR_THRESHOLD
    known = np.sort(data.year[data.year > 0])[::-1]  # newest first
    if len(known) == 0:
        raise ValueError(f"{data.name}: no item has a known release year; pass year_threshold explicitly")
    needed = min(len(known), max(1, int(np.ceil(min_new_fraction * data.n_items))))
    return int(known[needed - 1])


def _check(
    query_size: int,
    min_ratings: int,
    max_ratings: int,
    support_cap: int | None,
    new_user_fraction: float,
    warm_fraction: float,
    val_user_fraction: float = 0.0,
) -> None:
    if query_size < 1:
        raise ValueError(f"query_size must be >= 1, got {query_size}")
    if query_size >= min_ratings:
        raise ValueError(
            f"query_size={query_size} must be smaller than min_ratings={min_ratings}, so that every task keeps "
            "at least one support rating; lower query_size or raise min_ratings"
        )
    if max_ratings < min_ratings:
        raise ValueError(f"max_ratings={max_ratings} is smaller than min_ratings={min_ratings}")
    if support_cap is not None and support_cap < 1:
        raise ValueError(f"support_cap must be >= 1 (or None for all support ratings), got {support_cap}")
    if not 0.0 < new_user_fraction < 1.0:
        raise ValueError(f"new_user_fraction must be in (0, 1), got {new_user_fraction}")
    if not 0.0 <= val_user_fraction < 1.0 or new_user_fraction + val_user_fraction >= 1.0:
        raise ValueError(
            f"val_user_fraction must be in [0, 1) and leave existing users beside "
            f"new_user_fraction={new_user_fraction}, got {val_user_fraction}"
        )
    if not 0.0 <= warm_fraction < 1.0:
        raise ValueError(f"warm_fraction must be in [0, 1), got {warm_fraction}")


def _order(
    ratings: npt.NDArray[np.int64], seed: int, cell: int, user: int, time_ordered: bool, query_size: int
) -> npt.NDArray[np.int64]:
    """A user's rating indices (given in time order) with the query ratings first: the last ``query_size``
    in time order (followed by the rest, earliest first), or a seeded random permutation."""
    if time_ordered:
        return np.concatenate([ratings[-query_size:], ratings[:-query_size]])
    return np.random.default_rng([seed, cell, user]).permutation(ratings)


def _task(data: MovieLens, user: int, ordered: npt.NDArray[np.int64], query_size: int, cap: int | None) -> UserTask:
    query, support = ordered[:query_size], ordered[query_size:]
    support = support[:cap] if cap is not None else support
    return UserTask(user, data.item[support], data.rating[support], data.item[query], data.rating[query])


def cold_start_split(
    data: MovieLens,
    *,
    year_threshold: int | None = None,
    new_user_fraction: float = 0.2,
    query_size: int = 10,
    min_ratings: int = 13,
    max_ratings: int = 100,
    time_ordered: bool = False,
    support_cap: int | None = None,
    warm_fraction: float = 0.1,
    val_user_fraction: float = 0.1,
    seed: int = 0,
) -> ColdStartSplit:
    """MeLU's cold-start states as user tasks (see the module docstring for the protocol).

    Args:
        data: the ratings.
        year_threshold: items released in or after this year are new (default
            :func:`new_item_year_threshold`).
        new_user_fraction: the fraction of users drawn as new (rounded to the nearest count).
        query_size: query ratings per task.
        min_ratings, max_ratings: a user has a task in a state when their number of ratings in it lies in
            this range (inclusive).
        time_ordered: the query set is the user's last ``query_size`` ratings by timestamp (ties broken by item
            index) and ``support_cap`` keeps the earliest support ratings; otherwise both are drawn at random.
        support_cap: at most this many support ratings per task, in every state (None: all).
        warm_fraction: the fraction of the existing users with a warm task, drawn among those eligible
            (rounded to the nearest count).
        val_user_fraction: the fraction of users drawn as validation users (after the new users, from the
            same permutation: the new users do not depend on it). Their ratings of existing items are the
            ``val`` state; none of their ratings is in any other state.
        seed: the user split, the warm users and every task's draws are functions of it.

    Returns:
        The tasks of every state; :meth:`ColdStartSplit.state` raises if one asked for is empty.
    """
    _check(query_size, min_ratings, max_ratings, support_cap, new_user_fraction, warm_fraction, val_user_fraction)
    threshold = new_item_year_threshold(data) if year_threshold is None else year_threshold
    rng = np.random.default_rng(seed)
    permutation = rng.permutation(data.n_users)
    n_new, n_val = round(new_user_fraction * data.n_users), round(val_user_fraction * data.n_users)
    new_users, val_users = np.sort(permutation[:n_new]), np.sort(permutation[n_new : n_new + n_val])
    existing_users = np.sort(permutation[n_new + n_val :])
    is_new_user = np.zeros(data.n_users, dtype=bool)
    is_new_user[new_users] = True
    is_new_user[val_users] = True  # new to the model: nothing of theirs is trained on
    is_val_user = np.zeros(data.n_users, dtype=bool)
    is_val_user[val_users] = True
    new_items = data.year >= threshold

    # Ratings grouped by (user, cell), each group in time order (ties by item).
    cell = 2 * is_new_user[data.user].astype(np.int64) + new_items[data.item]  # (n_ratings,)
    key = 4 * data.user + cell
    order = np.lexsort((data.item, data.timestamp, key))
    keys, starts, counts = np.unique(key[order], return_index=True, return_counts=True)
    groups = {int(k): order[s : s + c] for k, s, c in zip(keys, starts, counts, strict=True)}

    def eligible(n: int) -> bool:
        return min_ratings <= n <= max_ratings

    warm_pool = [int(u) for u in existing_users if eligible(len(groups.get(4 * int(u), ())))]
    n_warm = round(warm_fraction * len(warm_pool))
    warm_users = np.sort(rng.choice(np.array(warm_pool, dtype=np.int64), size=n_warm, replace=False))
    warm_set = set(warm_users.tolist())

    tasks: dict[str, list[UserTask]] = {name: [] for name in STATES}
    for k in keys.tolist():
        user, c = divmod(k, 4)
        ratings = groups[k]
        warm = c == 0 and user in warm_set  # warm users are eligible
        if not (warm or eligible(len(ratings))):
            continue
        ordered = _order(ratings, seed, c, user, time_ordered, query_size)
        if warm:
            tasks["warm"].append(_task(data, user, ordered, query_size, support_cap))
            # The warm query ratings never reach train; the train task is drawn from the rest.
            ratings = ratings[:-query_size] if time_ordered else ordered[query_size:]
            ordered = _order(ratings, seed, c, user, True, query_size) if time_ordered else ratings
        if not eligible(len(ratings)):
            continue
        if is_val_user[user]:
            if c == 2:  # validation users' ratings of existing items; those of new items are not used
                tasks["val"].append(_task(data, user, ordered, query_size, support_cap))
            continue
        state = {0: "train", 1: "item_cold", 2: "user_cold", 3: "user_item_cold"}[c]
        tasks[state].append(_task(data, user, ordered, query_size, support_cap))
    return ColdStartSplit(
        tasks, existing_users, new_users, warm_users, new_items, threshold, min_ratings, max_ratings, val_users
    )
