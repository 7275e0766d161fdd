"""Per-user rating and ranking metrics: hand-computed cases, nDCG against scikit-learn, degenerate cases."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from sklearn.metrics import ndcg_score

from fastadapt.evaluation import mae, ndcg_at_k, rmse, sample_negatives, topk_metrics


def _dcg(gains: list[float]) -> float:
    return sum(g / math.log2(i + 2) for i, g in enumerate(gains))


def test_mae_and_rmse_by_hand() -> None:
    pred, true = np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 5.0])
    assert mae(pred, true) == pytest.approx(1.0)
    assert rmse(pred, true) == pytest.approx(math.sqrt(5 / 3))
    assert mae([4.0], [4.0]) == 0.0


def test_mae_rejects_mismatched_or_empty_input() -> None:
    with pytest.raises(ValueError, match=re.escape("must be 1-D of the same length, got (2,) and (3,)")):
        mae(np.zeros(2), np.zeros(3))
    with pytest.raises(ValueError, match="pred is empty"):
        rmse(np.zeros(0), np.zeros(0))
    with pytest.raises(ValueError, match="pred holds NaN"):
        rmse(np.array([np.nan]), np.array([1.0]))


def test_ndcg_by_hand() -> None:
    scores, ratings = np.array([0.9, 0.8, 0.1]), np.array([3.0, 5.0, 0.0])
    # Ranked: ratings 3, 5, 0; ideal: 5, 3, 0. Gains 2^r - 1.
    assert ndcg_at_k(scores, ratings, 2) == pytest.approx(_dcg([7, 31]) / _dcg([31, 7]))
    assert ndcg_at_k(scores, ratings, 1) == pytest.approx(7 / 31)
    assert ndcg_at_k(-scores, ratings, 3) == pytest.approx(_dcg([0, 31, 7]) / _dcg([31, 7, 0]))
    assert ndcg_at_k(ratings, ratings, 3) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(5))
def test_ndcg_matches_sklearn_without_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 30))
    scores = rng.random(n)  # continuous: no ties
    ratings = rng.integers(0, 6, size=n).astype(float)
    ratings[0] = 4.0  # at least one relevant item
    for k in (1, 3, 5, 10, n + 5):
        # scikit-learn's gains are the relevances themselves: pass 2^r - 1.
        expected = ndcg_score((2.0**ratings - 1)[None], scores[None], k=k)
        assert ndcg_at_k(scores, ratings, k) == pytest.approx(expected, abs=1e-12)


def test_ndcg_is_nan_without_a_relevant_item() -> None:
    assert math.isnan(ndcg_at_k(np.array([0.3, 0.2]), np.array([0.0, 0.0]), 2))


def test_ndcg_breaks_ties_pessimistically() -> None:
    ratings = np.array([5.0, 0.0, 0.0, 3.0])
    constant = np.zeros(4)
    worst = _dcg([0, 0, 7, 31]) / _dcg([31, 7, 0, 0])
    assert ndcg_at_k(constant, ratings, 4) == pytest.approx(worst)
    # The order the items are listed in gives a constant predictor no credit.
    for permutation in ([0, 1, 2, 3], [3, 0, 2, 1], [1, 2, 3, 0]):
        assert ndcg_at_k(constant, ratings[permutation], 4) == pytest.approx(worst)
    # Ties only among some items: the tied pair (scores 1, 1) puts rating 3 before rating 5.
    partial = ndcg_at_k(np.array([1.0, 0.0, 0.0, 1.0]), ratings, 2)
    assert partial == pytest.approx(_dcg([7, 31]) / _dcg([31, 7]))
    assert partial < 1.0


def test_constant_predictor_scores_one_only_when_relevances_are_equal() -> None:
    assert ndcg_at_k(np.full(5, 3.5), np.array([4.0, 4.0, 4.0, 4.0, 4.0]), 3) == pytest.approx(1.0)
    assert ndcg_at_k(np.full(5, 3.5), np.array([4.0, 4.0, 4.0, 4.0, 3.0]), 5) < 1.0


def test_ndcg_with_fewer_items_than_k_and_bad_arguments() -> None:
    scores, ratings = np.array([0.1, 0.9]), np.array([2.0, 1.0])
    assert ndcg_at_k(scores, ratings, 10) == pytest.approx(_dcg([1, 3]) / _dcg([3, 1]))
    with pytest.raises(ValueError, match="k must be >= 1, got 0"):
        ndcg_at_k(scores, ratings, 0)
    with pytest.raises(ValueError, match="relevance must be >= 0"):
        ndcg_at_k(scores, np.array([-1.0, 1.0]), 2)


def test_topk_metrics_by_hand() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    relevant = np.array([True, False, True, False, False])
    got = topk_metrics(scores, relevant, 2)
    assert got["precision"] == pytest.approx(0.5)
    assert got["recall"] == pytest.approx(0.5)
    assert got["f1"] == pytest.approx(0.5)
    assert got["ndcg"] == pytest.approx(1 / _dcg([1, 1]))
    got = topk_metrics(scores, relevant, 3)
    assert (got["precision"], got["recall"]) == pytest.approx((2 / 3, 1.0))
    assert got["f1"] == pytest.approx(2 * (2 / 3) / (2 / 3 + 1))
    assert got["ndcg"] == pytest.approx(_dcg([1, 0, 1]) / _dcg([1, 1]))


def test_topk_metrics_ties_are_pessimistic() -> None:
    relevant = np.array([True, False, False, False])
    got = topk_metrics(np.array([1.0, 1.0, 1.0, 0.0]), relevant, 1)
    assert got["precision"] == 0.0 and got["recall"] == 0.0 and got["f1"] == 0.0 and got["ndcg"] == 0.0
    got = topk_metrics(np.array([1.0, 1.0, 1.0, 0.0]), relevant, 3)
    assert got["precision"] == pytest.approx(1 / 3)
    assert got["ndcg"] == pytest.approx(_dcg([0, 0, 1]))
    constant = topk_metrics(np.zeros(4), relevant, 4)
    assert constant["ndcg"] == pytest.approx(_dcg([0, 0, 0, 1])) and constant["ndcg"] < 1.0


def test_topk_metrics_with_fewer_candidates_than_k() -> None:
    got = topk_metrics(np.array([0.3, 0.2, 0.1]), np.array([True, False, True]), 10)
    assert got["precision"] == pytest.approx(2 / 3)  # divided by min(k, n) = 3
    assert got["recall"] == pytest.approx(1.0)
    assert got["ndcg"] == pytest.approx(_dcg([1, 0, 1]) / _dcg([1, 1]))


def test_topk_metrics_without_relevant_candidates() -> None:
    got = topk_metrics(np.array([0.3, 0.2, 0.1]), np.zeros(3, dtype=bool), 2)
    assert got["precision"] == 0.0
    assert math.isnan(got["recall"]) and math.isnan(got["f1"]) and math.isnan(got["ndcg"])


def test_topk_metrics_rejects_non_boolean_relevance() -> None:
    with pytest.raises(ValueError, match="relevant must be a bool array, got dtype float64"):
        topk_metrics(np.zeros(3), np.array([1.0, 0.0, 0.0]), 2)


@pytest.mark.parametrize("rated", [{0, 3, 5, 9}, np.array([9, 0, 3, 5, 3]), [0, 3, 5, 9]])
def test_sample_negatives_draws_distinct_unrated_items(rated: object) -> None:
    draws = [sample_negatives(rated, 12, 6, np.random.default_rng(7)) for _ in range(2)]  # type: ignore[arg-type]
    got = draws[0]
    assert got.dtype == np.int64 and len(got) == 6 and len(set(got.tolist())) == 6
    assert not set(got.tolist()) & {0, 3, 5, 9}
    assert ((got >= 0) & (got < 12)).all()
    np.testing.assert_array_equal(draws[0], draws[1])  # a function of the generator's state
    every = sample_negatives(rated, 12, 8, np.random.default_rng(1))  # type: ignore[arg-type]
    assert sorted(every.tolist()) == [1, 2, 4, 6, 7, 8, 10, 11]


def test_sample_negatives_errors() -> None:
    rng = np.random.default_rng(0)
    message = "cannot draw 3 negatives: only 2 of the 4 items are unrated by this user; ask for at most 2"
    with pytest.raises(ValueError, match=re.escape(message)):
        sample_negatives({0, 1}, 4, 3, rng)
    with pytest.raises(ValueError, match=re.escape("rated_items must lie in 0..3, got items from 0 to 4")):
        sample_negatives([0, 4], 4, 1, rng)
    assert len(sample_negatives(set(), 4, 0, rng)) == 0
