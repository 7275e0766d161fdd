"""Scores recommenders on the cold-start states, per user then averaged with 95% confidence intervals.

Per user task: the method sees the support ratings, then predicts the query items and ``negatives`` items
the user never rated, drawn from the state's item pool (existing items for ``warm`` and ``user_cold``,
new items for ``item_cold`` and ``user_item_cold``) with a seed fixed per (seed, user), so every method
ranks the same candidates. Rating metrics (MAE, RMSE, nDCG@{1,3,5} of the query items ranked by
predicted rating with the true rating as graded relevance) use the query items only; top-K metrics
(Precision / Recall / F1 / nDCG @{5,10,20}, relevant = query rating >= 4) rank query items and negatives
together. A metric undefined for a user (no relevant item) leaves that user out of its mean; ``n`` says
how many users it averages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from ..evaluation import mean_ci95, paired_comparison
from ..evaluation._ranking import mae, ndcg_at_k, rmse, topk_metrics
from ._coldstart import REPORTED, ColdStartSplit
from ._methods import Recommender
from ._movielens import MovieLens

STATES = REPORTED
RATING_CUTOFFS = (1, 3, 5)
TOP_CUTOFFS = (5, 10, 20)
RELEVANT_RATING = 4.0
PAIRED = ("mae", "rmse", "ndcg@3")


def _paired(a: list[float], b: list[float], seed: int) -> dict[str, Any] | None:
    keep = [i for i in range(len(a)) if not (np.isnan(a[i]) or np.isnan(b[i]))]
    if len(keep) < 2:
        return None
    return paired_comparison([a[i] for i in keep], [b[i] for i in keep], seed=seed).summary()


def _summarise(values: list[float]) -> dict[str, float | int | None]:
    kept = [v for v in values if not np.isnan(v)]
    if not kept:
        return {"mean": None, "ci95": None, "n": 0}
    mean, ci = mean_ci95(kept)
    return {"mean": mean, "ci95": ci, "n": len(kept)}


def evaluate_recommenders(
    data: MovieLens,
    split: ColdStartSplit,
    methods: Sequence[Recommender],
    *,
    states: Sequence[str] = STATES,
    negatives: int = 100,
    seed: int = 1234,
    max_users: int | None = None,
    progress: bool = False,
    reference: str | None = None,
) -> dict[str, Any]:
    """Every metric of every method in every state.

    Args:
        max_users: evaluate a seeded random subset of at most this many users per state (all if None).
        reference: the method every other one is compared with (default: the first; the report passes the
            best baseline on the validation users).

    Returns:
        ``{state: {"users": n, "methods": {method: {metric: {"mean", "ci95", "n"}}}, "reference": name,
        "paired": {metric: {other: comparison}}}}``: ``paired`` compares each other method with the reference on
        the same users (mean difference other - reference, percentile-bootstrap CI, sign-flip, paired t and
        Wilcoxon p-values; see :func:`~fastadapt.evaluation.paired_comparison`) for MAE, RMSE and nDCG@3.
    """
    unknown = [s for s in states if s not in split.tasks]
    if unknown:
        raise ValueError(f"unknown cold-start states {unknown}; choose from {sorted(split.tasks)}")
    rated_by: dict[int, np.ndarray] = {}
    order = np.argsort(data.user, kind="stable")
    users, starts = np.unique(data.user[order], return_index=True)
    for user, group in zip(users, np.split(order, starts[1:]), strict=True):
        rated_by[int(user)] = data.item[group]
    new_item = np.asarray(split.new_items, dtype=bool)  # (n_items,)
    report: dict[str, Any] = {}
    for state in states:
        tasks = list(split.tasks[state])
        if max_users is not None and len(tasks) > max_users:
            keep = np.random.default_rng(seed).choice(len(tasks), max_users, replace=False)
            tasks = [tasks[i] for i in sorted(keep)]
        pool = np.flatnonzero(new_item if state in ("item_cold", "user_item_cold") else ~new_item)
        rows: dict[str, dict[str, list[float]]] = {m.name: {} for m in methods}
        for task in tqdm(tasks, desc=state, disable=not progress, leave=False):
            rng = np.random.default_rng([seed, task.user])
            unrated = np.setdiff1d(pool, rated_by.get(task.user, np.empty(0, dtype=np.int64)))
            negative = rng.choice(unrated, min(negatives, len(unrated)), replace=False)
            candidates = np.concatenate([task.query_items, negative])
            relevant = np.concatenate([task.query_ratings >= RELEVANT_RATING, np.zeros(len(negative), dtype=bool)])
            n_query = len(task.query_items)
            for method in methods:
                ratings, scores = method.score(task.user, task.support_items, task.support_ratings, candidates)
                row = {
                    "mae": mae(ratings[:n_query], task.query_ratings),
                    "rmse": rmse(ratings[:n_query], task.query_ratings),
                }
                for k in RATING_CUTOFFS:
                    row[f"ndcg@{k}"] = ndcg_at_k(scores[:n_query], task.query_ratings, k)
                for k in TOP_CUTOFFS:
                    for name, value in topk_metrics(scores, relevant, k).items():
                        row[f"top_{name}@{k}"] = value
                for name, value in row.items():
                    rows[method.name].setdefault(name, []).append(float(value))
        report[state] = {
            "users": len(tasks),
            "methods": {
                m: {name: _summarise(values) for name, values in metrics.items()} for m, metrics in rows.items()
            },
        } | paired_against(rows, reference, seed)
    return report


def paired_against(rows: dict[str, dict[str, list[float]]], reference: str | None, seed: int) -> dict[str, Any]:
    """``{"reference": name, "paired": {metric: {method: comparison of method - reference}}, "first": name,
    "first_paired": {metric: {method: comparison of first - method}}}`` from per-user values
    ``rows[method][metric]`` (the metrics of :data:`PAIRED` that ``rows`` holds; ``first``: the first method)."""
    names = list(rows)
    ref = names[0] if reference is None else reference
    if ref not in rows:
        raise ValueError(f"reference method {ref!r} is not among the methods {names}")
    metrics = [m for m in PAIRED if m in rows[ref]]
    first = names[0]
    return {
        "reference": ref,
        "paired": {
            metric: {other: _paired(rows[other][metric], rows[ref][metric], seed) for other in names if other != ref}
            for metric in metrics
        },
        # the run's method (the first) against every other one
        "first": first,
        "first_paired": {
            metric: {
                other: _paired(rows[first][metric], rows[other][metric], seed) for other in names if other != first
            }
            for metric in metrics
        },
    }


#: Support sizes of the support-size curves, and their metrics (query ratings only).
CURVE_CAPS = (1, 3, 5, 10, 20)
CURVE_METRICS = ("mae", "rmse", "ndcg@3")


def support_curves(
    split: ColdStartSplit,
    methods: Sequence[Recommender],
    *,
    states: Sequence[str] = STATES,
    caps: Sequence[int] = CURVE_CAPS,
    reference: str | None = None,
    seed: int = 1234,
    progress: bool = False,
) -> dict[str, Any]:
    """MAE, RMSE and nDCG@3 of every method after 1, 3, 5, 10 and 20 support ratings, on the same users and
    query sets: the users of each state with at least ``max(caps)`` support ratings, each adapted on the first
    ``cap`` of them (the split's order, so the supports are nested).

    Returns:
        ``{state: {"users": n, "caps": {cap: {"methods": {method: {metric: summary}}, "reference", "paired"}}}}``
        (``paired`` as in :func:`evaluate_recommenders`); a state with no such user is left out.
    """
    out: dict[str, Any] = {}
    for state in states:
        tasks = [t for t in split.tasks.get(state, []) if len(t.support_items) >= max(caps)]
        if not tasks:
            continue
        entry: dict[str, Any] = {"users": len(tasks), "caps": {}}
        for cap in caps:
            rows: dict[str, dict[str, list[float]]] = {m.name: {k: [] for k in CURVE_METRICS} for m in methods}
            for task in tqdm(tasks, desc=f"{state} {cap} ratings", disable=not progress, leave=False):
                items, ratings = task.support_items[:cap], task.support_ratings[:cap]
                for method in methods:
                    predicted, scores = method.score(task.user, items, ratings, task.query_items)
                    row = rows[method.name]
                    row["mae"].append(mae(predicted, task.query_ratings))
                    row["rmse"].append(rmse(predicted, task.query_ratings))
                    row["ndcg@3"].append(float(ndcg_at_k(scores, task.query_ratings, 3)))
            entry["caps"][cap] = {
                "methods": {m: {k: _summarise(v) for k, v in metrics.items()} for m, metrics in rows.items()}
            } | paired_against(rows, reference, seed)
        out[state] = entry
    return out
