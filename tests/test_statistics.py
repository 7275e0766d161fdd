"""Reviewer statistics: classification reports against scikit-learn, confusion-matrix plots, the bootstrap
against scipy and an exactly known bootstrap distribution, paired comparisons against scipy's tests and exact
enumeration, and cross-validation over class splits against scikit-learn's splitters."""

from __future__ import annotations

import itertools
import math
import re
import sys
import warnings
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image
from scipy import stats
from sklearn.metrics import accuracy_score, precision_recall_fscore_support
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from sklearn.model_selection import GroupKFold, KFold

from fastadapt.evaluation import (
    PairedComparison,
    _bootstrap,
    bootstrap_ci,
    class_kfold,
    classification_report,
    confusion_matrix,
    group_kfold,
    mean_ci95,
    paired_comparison,
    plot_confusion_matrix,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# --- classification report and confusion matrix ---------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classification_report_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 6, size=300)
    y_pred = np.where(rng.random(300) < 0.6, y_true, rng.integers(0, 6, size=300))
    y_pred[y_pred == 3] = 4  # class 3 is never predicted: its precision is 0 by convention
    n_classes = 7  # class 6 occurs nowhere: listed with zeros, left out of the macro means
    report = classification_report(y_true, y_pred, n_classes=n_classes)

    labels = list(range(n_classes))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, average=None, zero_division=0)
    np.testing.assert_allclose(report["precision"], p, rtol=0, atol=1e-12)
    np.testing.assert_allclose(report["recall"], r, rtol=0, atol=1e-12)
    np.testing.assert_allclose(report["f1"], f, rtol=0, atol=1e-12)
    assert report["support"] == s.tolist()
    mp, mr, mf, _ = precision_recall_fscore_support(y_true, y_pred, average="macro", zero_division=0)
    assert report["macro_precision"] == pytest.approx(mp, abs=1e-12)
    assert report["macro_recall"] == pytest.approx(mr, abs=1e-12)
    assert report["macro_f1"] == pytest.approx(mf, abs=1e-12)
    assert report["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-12)
    assert report["precision"][3] == 0.0 and report["support"][3] > 0
    assert report["support"][6] == 0 and report["f1"][6] == 0.0
    assert (report["n_classes"], report["n_classes_averaged"], report["n_samples"]) == (7, 6, 300)

    np.testing.assert_array_equal(
        confusion_matrix(y_true, y_pred, n_classes), sk_confusion_matrix(y_true, y_pred, labels=labels)
    )


def test_classification_report_by_hand() -> None:
    report = classification_report([0, 0, 1, 2], [0, 1, 1, 1])
    assert report["accuracy"] == 0.5
    assert report["precision"] == pytest.approx([1.0, 1 / 3, 0.0])  # class 2 never predicted
    assert report["recall"] == pytest.approx([0.5, 1.0, 0.0])
    assert report["f1"] == pytest.approx([2 / 3, 0.5, 0.0])
    assert report["support"] == [2, 1, 1]
    assert report["macro_f1"] == pytest.approx((2 / 3 + 0.5) / 3)
    np.testing.assert_array_equal(confusion_matrix([0, 0, 1, 2], [0, 1, 1, 1]), [[1, 1, 0], [0, 1, 0], [0, 1, 0]])


def test_classification_report_rejects_bad_labels() -> None:
    with pytest.raises(ValueError, match=re.escape("must be 1-D of the same length, got (2,) and (3,)")):
        classification_report([0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="y_true is empty"):
        confusion_matrix(np.zeros(0, dtype=int), np.zeros(0, dtype=int))
    with pytest.raises(ValueError, match="y_pred must hold integer class ids, got dtype float64"):
        classification_report([0, 1], [0.0, 1.0])
    with pytest.raises(ValueError, match="y_true holds the negative class id -1"):
        confusion_matrix([-1, 0], [0, 0])
    with pytest.raises(ValueError, match=re.escape("class id 5 is out of range for n_classes=3; pass n_classes > 5")):
        confusion_matrix([0, 5], [0, 1], n_classes=3)


@pytest.mark.parametrize("n_classes", [5, 150])
def test_plot_confusion_matrix_writes_png(tmp_path: Path, n_classes: int) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, n_classes, size=20 * n_classes)
    noisy = np.where(rng.random(len(y)) < 0.7, y, rng.integers(0, n_classes, size=len(y)))
    backend = matplotlib.get_backend()
    names = [f"intent_{i}" for i in range(n_classes)]
    out = plot_confusion_matrix(
        confusion_matrix(y, noisy, n_classes), tmp_path / "sub" / "cm.png", class_names=names, title="test"
    )
    assert out == tmp_path / "sub" / "cm.png"
    assert out.read_bytes()[:8] == PNG_MAGIC
    with Image.open(out) as image:
        assert min(image.size) > 200
    assert matplotlib.get_backend() == backend  # no global side effect


def test_plot_confusion_matrix_counts_and_errors(tmp_path: Path) -> None:
    out = plot_confusion_matrix(np.array([[3, 1], [0, 4]]), tmp_path / "counts.png", normalise=False)
    assert out.read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError, match=re.escape("must be a non-empty square (C, C) array, got shape (2, 3)")):
        plot_confusion_matrix(np.zeros((2, 3)), tmp_path / "x.png")
    with pytest.raises(ValueError, match="class_names has 1 names for a matrix of 2 classes"):
        plot_confusion_matrix(np.eye(2), tmp_path / "x.png", class_names=["a"])
    with pytest.raises(ValueError, match=re.escape("path must end in .png (the plot is written as PNG), got 'x.pdf'")):
        plot_confusion_matrix(np.eye(2), tmp_path / "x.pdf")


def test_plot_confusion_matrix_without_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules makes the import fail
    with pytest.raises(ImportError, match=re.escape("plotting needs matplotlib: pip install 'fastadapt[plots]'")):
        plot_confusion_matrix(np.eye(2), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


# --- bootstrap --------------------------------------------------------------------------------------------


def _scipy_bootstrap(values: list[float], statistic=np.mean, batch: int | None = None, **kwargs) -> tuple[float, float]:
    res = stats.bootstrap(
        (np.asarray(values),), statistic, method="percentile", vectorized=True, batch=batch, **kwargs
    ).confidence_interval
    return float(res.low), float(res.high)


@pytest.mark.parametrize("statistic", [np.mean, np.median, np.std])
def test_bootstrap_matches_scipy(statistic) -> None:
    values = [0.2, 0.9, 0.4, 0.55, 0.7, 0.1, 0.8]
    est, low, high = bootstrap_ci(values, statistic=statistic, resamples=500, confidence=0.9, seed=3)
    expected = _scipy_bootstrap(values, statistic, n_resamples=500, confidence_level=0.9, rng=np.random.default_rng(3))
    assert (low, high) == pytest.approx(expected, abs=1e-12)
    assert est == pytest.approx(float(statistic(values)), abs=1e-12)


def test_bootstrap_percentiles_of_an_exactly_known_distribution() -> None:
    # Means of 3 draws from {0, 0, 1}: k/3 with k ~ Binomial(3, 1/3), P(k=0) = 8/27, P(k <= 1) = 20/27 and
    # P(k <= 2) = 26/27, so the 10% and 90% quantiles are 0 and 2/3 whatever the resampling stream.
    est, low, high = bootstrap_ci([0.0, 0.0, 1.0], resamples=10_000, confidence=0.8, seed=1)
    assert (est, low, high) == pytest.approx((1 / 3, 0.0, 2 / 3), abs=1e-12)
    # P(k = 1) = 12/27 covers both the 35% and the 65% quantile (P(k = 0) = 0.296, P(k <= 1) = 0.741).
    assert bootstrap_ci([0.0, 0.0, 1.0], resamples=10_000, confidence=0.3, seed=1)[1:] == pytest.approx((1 / 3, 1 / 3))


def test_bootstrap_holds_a_bounded_number_of_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_bootstrap, "_CHUNK_ELEMENTS", 10)  # n=5: 2 resamples per call of the statistic
    seen: list[tuple[int, ...]] = []

    def mean(x: np.ndarray, axis: int) -> np.ndarray:
        seen.append(x.shape)
        return np.mean(x, axis=axis)

    values = [1.0, 4.0, 2.0, 8.0, 5.0]
    _, low, high = bootstrap_ci(values, statistic=mean, resamples=7, confidence=0.8, seed=11)
    assert seen[:2] == [(1, 5), (5,)]  # the contract check, then the estimate
    resampled = seen[2:]
    assert sum(shape[0] for shape in resampled) == 7 and all(shape[0] * shape[1] <= 10 for shape in resampled)
    expected = _scipy_bootstrap(values, batch=2, n_resamples=7, confidence_level=0.8, rng=np.random.default_rng(11))
    assert (low, high) == pytest.approx(expected, abs=1e-12)


def test_bootstrap_covers_the_true_mean_and_shrinks_like_one_over_sqrt_n() -> None:
    rng = np.random.default_rng(0)
    big = rng.normal(1.0, 1.0, size=4000)
    est, low, high = bootstrap_ci(big, resamples=2000)
    assert low < 1.0 < high and low < est < high
    assert high - low == pytest.approx(2 * 1.96 / math.sqrt(4000), rel=0.1)
    _, low_small, high_small = bootstrap_ci(big[:1000], resamples=2000)
    assert (high_small - low_small) / (high - low) == pytest.approx(2.0, rel=0.15)


def test_bootstrap_seed_and_statistic() -> None:
    values = np.random.default_rng(1).exponential(size=50)
    assert bootstrap_ci(values, seed=5, resamples=1000) == bootstrap_ci(values, seed=5, resamples=1000)
    assert bootstrap_ci(values, seed=5, resamples=1000) != bootstrap_ci(values, seed=6, resamples=1000)
    est, low, high = bootstrap_ci(values, statistic=np.median, resamples=1000)
    assert est == pytest.approx(float(np.median(values))) and low <= est <= high
    assert bootstrap_ci([2.5], resamples=10) == (2.5, 2.5, 2.5)


def test_bootstrap_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="values is empty: the bootstrap needs at least one score"):
        bootstrap_ci([])
    with pytest.raises(ValueError, match=re.escape("confidence must be in (0, 1), got 95; pass 0.95")):
        bootstrap_ci([1.0, 2.0], confidence=95)
    with pytest.raises(ValueError, match="resamples must be >= 1, got 0"):
        bootstrap_ci([1.0, 2.0], resamples=0)
    with pytest.raises(ValueError, match="values holds NaN"):
        bootstrap_ci([1.0, math.nan])
    with pytest.raises(ValueError, match=re.escape("values must be 1-D (one score per episode), got shape (2, 2)")):
        bootstrap_ci(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="statistic must reduce the last axis"):
        bootstrap_ci([1.0, 2.0], statistic=lambda x, axis: x, resamples=3)


# --- paired comparison ------------------------------------------------------------------------------------


def _scores_with_shift(shift: float, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    difficulty = rng.normal(0.6, 0.15, size=n)  # shared per-episode variance
    return difficulty + shift + rng.normal(0, 0.03, size=n), difficulty + rng.normal(0, 0.03, size=n)


def test_paired_comparison_detects_a_shift() -> None:
    a, b = _scores_with_shift(0.1)
    result = paired_comparison(a, b, resamples=2000)
    assert isinstance(result, PairedComparison)
    assert result.difference == pytest.approx(0.1, abs=0.01)
    assert 0 < result.ci_low < result.difference < result.ci_high
    assert result.significant
    assert result.p_value == pytest.approx(1 / 2001)  # no sign flip beats the observed mean
    assert (result.ci_low, result.ci_high) == pytest.approx(bootstrap_ci(a - b, resamples=2000)[1:])
    assert result.t_ci95 == pytest.approx(mean_ci95((a - b).tolist())[1])
    assert result.t_ci95 == pytest.approx((result.ci_high - result.ci_low) / 2, rel=0.15)
    assert (result.mean_a, result.mean_b, result.n) == (pytest.approx(a.mean()), pytest.approx(b.mean()), 400)
    assert result.summary()["significant"] is True
    assert set(result.summary()) >= {"p_value", "t_p_value", "wilcoxon_p_value", "t_ci95", "ci_low"}
    assert result.t_p_value == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-12) and result.t_p_value < 1e-6
    assert result.wilcoxon_p_value == pytest.approx(stats.wilcoxon(a, b).pvalue, rel=1e-12)
    assert result.wilcoxon_p_value < 1e-6

    swapped = paired_comparison(b, a, resamples=2000)
    assert swapped.difference == pytest.approx(-result.difference)
    assert (swapped.ci_low, swapped.ci_high) == pytest.approx((-result.ci_high, -result.ci_low))
    assert swapped.p_value == result.p_value and swapped.significant
    assert (swapped.t_p_value, swapped.wilcoxon_p_value) == pytest.approx((result.t_p_value, result.wilcoxon_p_value))


def test_paired_comparison_of_identical_scores() -> None:
    a, _ = _scores_with_shift(0.0)
    result = paired_comparison(a, a.copy(), resamples=500)
    assert (result.difference, result.ci_low, result.ci_high, result.t_ci95) == (0.0, 0.0, 0.0, 0.0)
    assert not result.significant and result.p_value == 1.0
    assert (result.t_p_value, result.wilcoxon_p_value) == (1.0, 1.0)  # documented: no evidence of a difference


def test_paired_comparison_of_a_constant_shift() -> None:
    b = np.random.default_rng(0).random(50)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scipy's ttest_rel would warn of catastrophic cancellation here
        result = paired_comparison(b + 0.1, b, resamples=1000)
    assert result.difference == pytest.approx(0.1) and result.significant
    assert result.t_p_value == 0.0  # |t| -> inf
    assert result.p_value == pytest.approx(1 / 1001)
    assert result.wilcoxon_p_value == pytest.approx(stats.wilcoxon(b + 0.1, b).pvalue)


def test_paired_comparison_no_difference_is_not_significant() -> None:
    a, b = _scores_with_shift(0.0)
    result = paired_comparison(a, b, resamples=2000)
    assert result.ci_low < 0 < result.ci_high and not result.significant and result.p_value > 0.05


def test_sign_flip_p_value_exact_and_monte_carlo() -> None:
    # n=3 <= log2(resamples): all 8 sign patterns; |mean| >= 2 only for (+,+,+) and (-,-,-).
    assert paired_comparison([1.0, 2.0, 3.0], [0.0, 0.0, 0.0]).p_value == pytest.approx(0.25)
    d = np.random.default_rng(2).normal(0.3, 1.0, size=14)
    patterns = np.array(list(itertools.product([-1, 1], repeat=14)))  # (16384, 14) > resamples: Monte Carlo
    exact = float((np.abs((patterns * d).mean(axis=1)) >= abs(d.mean()) - 1e-12).mean())
    assert paired_comparison(d, np.zeros(14), resamples=10_000).p_value == pytest.approx(exact, abs=0.02)
    # Exact, scipy's own two-sided test agrees: the sign-flip null is symmetric.
    d = d[:9]
    scipy_p = stats.permutation_test(
        (d,), lambda x, axis: np.mean(x, axis=axis), permutation_type="samples", vectorized=True
    ).pvalue
    assert paired_comparison(d, np.zeros(9)).p_value == pytest.approx(scipy_p, abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_sign_flip_p_value_counts_tied_scores_exactly(seed: int) -> None:
    # Accuracy differences are multiples of 1/queries: many sign patterns tie with the observed |mean| up to
    # rounding, including a mean of exactly 0 that floats make 1e-18.
    rng = np.random.default_rng(seed)
    k = rng.integers(-4, 5, size=11)
    k[-1] -= k.sum() if seed % 2 else 0  # odd seeds: an observed sum of exactly 0
    patterns = np.array(list(itertools.product([-1, 1], repeat=11)))  # (2048, 11), integers: no rounding
    exact = float((np.abs((patterns * k).sum(axis=1)) >= abs(k.sum())).mean())
    assert paired_comparison(k / 75, np.zeros(11)).p_value == pytest.approx(exact, abs=1e-12)


def test_paired_comparison_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=re.escape("got len(a)=3 and len(b)=4")):
        paired_comparison([1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match="a paired comparison needs at least 2 episodes, got n=1"):
        paired_comparison([1.0], [0.5])
    with pytest.raises(ValueError, match="b holds NaN"):
        paired_comparison([1.0, 2.0], [1.0, math.nan])
    with pytest.raises(ValueError, match=re.escape("confidence must be in (0, 1), got 1.0")):
        paired_comparison([1.0, 2.0], [0.0, 1.0], confidence=1.0)


# --- cross-validation over classes ------------------------------------------------------------------------


def test_class_kfold_partitions_the_classes() -> None:
    classes = np.random.default_rng(0).choice(10_000, size=23, replace=False)
    folds = class_kfold(classes, k=5, seed=3)
    assert len(folds) == 5
    tested = np.concatenate([test for _, test in folds])
    assert sorted(tested.tolist()) == sorted(classes.tolist())  # each class tested exactly once
    assert {len(test) for _, test in folds} == {4, 5}
    for train, test in folds:
        assert not set(train.tolist()) & set(test.tolist())
        assert sorted(train.tolist() + test.tolist()) == sorted(classes.tolist())
    again = class_kfold(classes, k=5, seed=3)
    assert all(np.array_equal(x[1], y[1]) for x, y in zip(folds, again, strict=True))
    other = class_kfold(classes, k=5, seed=4)
    assert not all(np.array_equal(x[1], y[1]) for x, y in zip(folds, other, strict=True))
    assert [t.tolist() for _, t in class_kfold([7, 3], k=2)] in ([[3], [7]], [[7], [3]])


def test_class_kfold_is_sklearn_kfold() -> None:
    classes = np.array([40, 3, 17, 8, 99, 12, 5])
    for (train, test), (sk_train, sk_test) in zip(
        class_kfold(classes, k=3, seed=7), KFold(3, shuffle=True, random_state=7).split(classes), strict=True
    ):
        assert train.dtype == np.int64 and test.dtype == np.int64
        assert test.tolist() == sorted(classes[sk_test].tolist())
        assert train.tolist() == sorted(classes[sk_train].tolist())


def test_class_kfold_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="k must be >= 2"):
        class_kfold([1, 2, 3], k=1)
    with pytest.raises(ValueError, match=re.escape("k=4 exceeds the number of classes (3)")):
        class_kfold([1, 2, 3], k=4)
    with pytest.raises(ValueError, match="classes lists class 2 more than once"):
        class_kfold([1, 2, 2, 3], k=2)


def _domains() -> dict[str, list[int]]:
    """CLINC150's shape: 10 domains of 15 intents (intent ids shuffled across domains)."""
    intents = np.random.default_rng(0).permutation(150).tolist()
    return {f"domain{d}": intents[15 * d : 15 * (d + 1)] for d in range(10)}


def test_group_kfold_leave_one_group_out() -> None:
    groups = _domains()
    folds = group_kfold(groups)
    assert [held for _, _, held in folds] == [[name] for name in groups]
    for train, test, (name,) in folds:
        assert test.tolist() == sorted(groups[name])
        assert len(train) == 135 and not set(train.tolist()) & set(test.tolist())


def test_group_kfold_never_splits_a_group() -> None:
    groups = _domains()
    folds = group_kfold(groups, k=3, seed=1)
    assert sorted(len(held) for _, _, held in folds) == [3, 3, 4]
    assert sorted(name for _, _, held in folds for name in held) == sorted(groups)  # each group held out once
    for train, test, held in folds:
        for name, ids in groups.items():
            inside = set(ids) <= set(test.tolist())
            assert inside == (name in held)
            assert inside or set(ids) <= set(train.tolist())  # whole group on one side
        assert len(train) + len(test) == 150
    assert [h for _, _, h in group_kfold(groups, k=3, seed=1)] == [h for _, _, h in folds]


def test_group_kfold_unequal_groups() -> None:
    groups = {"a": [0, 1, 2, 3, 4, 5], "b": [6], "c": [7, 8], "d": [9], "e": [10, 11, 12]}
    for seed in range(10):
        folds = group_kfold(groups, k=2, seed=seed)
        assert sorted(len(held) for _, _, held in folds) == [2, 3]  # groups balanced, classes not
        assert sorted(c for _, test, _ in folds for c in test.tolist()) == list(range(13))
        for train, test, held in folds:
            assert held == [name for name in groups if name in held]  # the mapping's order
            assert test.tolist() == sorted(c for name in held for c in groups[name])
            assert train.tolist() == sorted(set(range(13)) - set(test.tolist()))
    labels = np.repeat(np.arange(5), [6, 1, 2, 1, 3])
    sk = GroupKFold(2, shuffle=True, random_state=4).split(np.arange(13), groups=labels)
    assert [t.tolist() for _, t, _ in group_kfold(groups, k=2, seed=4)] == [sorted(t.tolist()) for _, t in sk]


def test_group_kfold_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="class 2 is in both group 'a' and group 'b'; groups must be disjoint"):
        group_kfold({"a": [1, 2], "b": [2, 3]})
    with pytest.raises(ValueError, match=re.escape("k=3 exceeds the number of groups (2)")):
        group_kfold({"a": [1], "b": [2]}, k=3)
    with pytest.raises(ValueError, match="group_kfold needs at least 2 groups"):
        group_kfold({"a": [1, 2]})
    with pytest.raises(ValueError, match="group 'b' has no classes"):
        group_kfold({"a": [1], "b": []})


def test_t_interval_matches_scipys_for_a_few_seeds() -> None:
    from scipy import stats

    from fastadapt.evaluation import mean_ci95, mean_ci95_t

    values = [0.871, 0.884, 0.869, 0.902, 0.878]
    mean, half = mean_ci95_t(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert mean == pytest.approx(np.mean(values)) and half == pytest.approx((high - low) / 2)
    assert half / mean_ci95(values)[1] == pytest.approx(2.7764 / 1.96, rel=1e-4)  # wider than the normal one
    assert mean_ci95_t([0.5]) == (0.5, 0.0)
