r"""Rating and ranking metrics for one user, as reported for cold-start recommendation (MeLU, Lee et al.,
KDD 2019, arXiv:1908.00413). Every function takes one user's arrays and returns a float; average over users
outside, skipping the NaNs (and report how many users were skipped).

Definitions, for predictions :math:`\hat r_i`, true ratings :math:`r_i`, :math:`i = 1..n`:

- ``mae`` :math:`= \frac1n \sum_i |\hat r_i - r_i|`; ``rmse`` :math:`= \sqrt{\frac1n \sum_i (\hat r_i - r_i)^2}`.
- Ranking: the items are sorted by score, highest first; among equal scores the *less relevant* item comes
  first (pessimistic ties), so that a constant predictor gets no credit for the order the items happened to
  be listed in. :math:`\pi(j)` is the item at position :math:`j = 0, 1, \dots`.
- ``ndcg_at_k`` (graded relevance :math:`g_i \ge 0`, e.g. the true rating):
  :math:`\mathrm{DCG@k} = \sum_{j < \min(k, n)} (2^{g_{\pi(j)}} - 1) / \log_2(j + 2)`, and
  :math:`\mathrm{nDCG@k} = \mathrm{DCG@k} / \mathrm{IDCG@k}` where IDCG@k is the DCG@k of the items sorted by
  relevance. NaN when IDCG@k = 0 (no item has positive relevance).
- ``topk_metrics`` (binary relevance over a candidate list, e.g. the user's query items plus sampled
  unrated items): with :math:`k' = \min(k, n)` and :math:`h` the number of relevant items among the top
  :math:`k'`, ``precision`` :math:`= h / k'` (dividing by :math:`k'`, not :math:`k`, when fewer than
  :math:`k` candidates exist), ``recall`` :math:`= h / R` with :math:`R` the number of relevant candidates,
  ``f1`` :math:`= 2pr / (p + r)` (0 when :math:`p + r = 0`), ``ndcg`` the nDCG@k above with gains 0 or 1.
  ``recall``, ``f1`` and ``ndcg`` are NaN when :math:`R = 0`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt


def _pair(pred: npt.ArrayLike, true: npt.ArrayLike, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"{names[0]} and {names[1]} must be 1-D of the same length, got {a.shape} and {b.shape}")
    if len(a) == 0:
        raise ValueError(f"{names[0]} is empty: a user needs at least one item to be scored")
    if np.isnan(a).any():
        raise ValueError(f"{names[0]} holds NaN; check the model's outputs")
    return a, b


def mae(pred: npt.ArrayLike, true: npt.ArrayLike) -> float:
    """Mean absolute error of ``(n,)`` predictions against ``(n,)`` true ratings."""
    a, b = _pair(pred, true, ("pred", "true"))
    return float(np.mean(np.abs(a - b)))


def rmse(pred: npt.ArrayLike, true: npt.ArrayLike) -> float:
    """Root mean squared error of ``(n,)`` predictions against ``(n,)`` true ratings."""
    a, b = _pair(pred, true, ("pred", "true"))
    return float(np.sqrt(np.mean((a - b) ** 2)))


def _ranking(scores: np.ndarray, relevance: np.ndarray) -> npt.NDArray[np.intp]:
    """Positions sorted by score descending, ties broken by relevance ascending (pessimistic)."""
    return np.lexsort((relevance, -scores))


def _dcg(gains: np.ndarray, k: int) -> float:
    top = gains[:k]
    return float(np.sum(top / np.log2(np.arange(len(top)) + 2.0)))


def ndcg_at_k(scores: npt.ArrayLike, relevance: npt.ArrayLike, k: int) -> float:
    """Normalised discounted cumulative gain of the top ``k``, gains ``2^rel - 1``, pessimistic ties.

    Args:
        scores: ``(n,)`` predicted scores, higher ranked first.
        relevance: ``(n,)`` graded relevance >= 0 (e.g. the true ratings).
        k: the cut-off (>= 1); all ``n`` items count when ``n < k``.

    Returns:
        nDCG@k in [0, 1], or NaN when no item has positive relevance.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    s, rel = _pair(scores, relevance, ("scores", "relevance"))
    if (rel < 0).any() or np.isnan(rel).any():
        raise ValueError("relevance must be >= 0 (shift ratings so that the least relevant item has 0)")
    gains = np.exp2(rel) - 1.0
    ideal = _dcg(np.sort(gains)[::-1], k)
    if ideal == 0.0:
        return math.nan
    return _dcg(gains[_ranking(s, rel)], k) / ideal


def topk_metrics(scores: npt.ArrayLike, relevant: npt.ArrayLike, k: int) -> dict[str, float]:
    """Precision, recall, F1 and binary nDCG of the top ``k`` candidates, pessimistic ties.

    Args:
        scores: ``(n,)`` predicted scores of the candidates (e.g. query items plus sampled negatives).
        relevant: ``(n,)`` bool, True for the relevant candidates.
        k: the cut-off (>= 1); precision divides by ``min(k, n)``.

    Returns:
        ``{"precision", "recall", "f1", "ndcg"}``; all but precision are NaN when no candidate is relevant.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    flags = np.asarray(relevant)
    if flags.dtype != np.bool_:
        raise ValueError(f"relevant must be a bool array, got dtype {flags.dtype}")
    s, rel = _pair(scores, flags, ("scores", "relevant"))
    cut = min(k, len(s))
    hits = float(rel[_ranking(s, rel)[:cut]].sum())
    n_relevant = float(rel.sum())
    precision = hits / cut
    if n_relevant == 0:
        return {"precision": precision, "recall": math.nan, "f1": math.nan, "ndcg": math.nan}
    recall = hits / n_relevant
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "ndcg": ndcg_at_k(s, rel, k)}


def sample_negatives(
    rated_items: Iterable[int] | npt.NDArray[np.integer], n_items: int, n: int, generator: np.random.Generator
) -> npt.NDArray[np.int64]:
    """``n`` distinct items among ``0..n_items-1`` that are not in ``rated_items``, drawn uniformly.

    Args:
        rated_items: the user's rated items (a set, list or array of indices).
        n_items: the number of items.
        n: how many negatives to draw.
        generator: the source of randomness.

    Returns:
        ``(n,)`` int64 item indices, in the order drawn.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if isinstance(rated_items, np.ndarray):
        rated = np.unique(rated_items.astype(np.int64))
    else:
        rated = np.unique(np.fromiter(rated_items, dtype=np.int64))
    if len(rated) and (rated[0] < 0 or rated[-1] >= n_items):
        raise ValueError(f"rated_items must lie in 0..{n_items - 1}, got items from {rated[0]} to {rated[-1]}")
    unrated = np.setdiff1d(np.arange(n_items, dtype=np.int64), rated, assume_unique=True)
    if len(unrated) < n:
        raise ValueError(
            f"cannot draw {n} negatives: only {len(unrated)} of the {n_items} items are unrated by this user; "
            f"ask for at most {len(unrated)}"
        )
    return generator.choice(unrated, size=n, replace=False).astype(np.int64)
