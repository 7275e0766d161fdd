"""Bootstrap confidence intervals and paired comparisons of two methods scored on the same episodes.

The interval is the percentile bootstrap (Efron & Tibshirani, *An Introduction to the Bootstrap*, 1993,
ch. 13) as :func:`scipy.stats.bootstrap` computes it with ``method="percentile"``: resample the episodes with
replacement, recompute the statistic, and take the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2``
quantiles of the resampled statistics (linear interpolation). Pairing matters when two methods see the same
episodes: the episode-to-episode variance is shared, so the interval of the mean *difference* is far narrower
than two separate intervals suggest, and overlapping per-method intervals do not mean "no difference".

The paired p-values come from :func:`scipy.stats.permutation_test` (the sign-flip test),
:func:`scipy.stats.ttest_rel` and :func:`scipy.stats.wilcoxon`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ._stats import mean_ci95

#: Resampled values held in memory at once (float64), about 8 MB, whatever the sample size; passed to scipy
#: as its ``batch`` (resamples per vectorised call of the statistic).
_CHUNK_ELEMENTS = 1 << 20


def _scores(values: npt.ArrayLike, name: str) -> npt.NDArray[np.float64]:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one score per episode), got shape {x.shape}")
    if len(x) == 0:
        raise ValueError(f"{name} is empty: the bootstrap needs at least one score")
    if np.isnan(x).any():
        raise ValueError(f"{name} holds NaN; drop (and report) the episodes that could not be scored first")
    return x


def _check(resamples: int, confidence: float) -> None:
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples} (10_000 is the usual choice)")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}; pass 0.95 for a 95% interval")


def _batch(n: int) -> int:
    """Resamples of ``n`` values each that fit in ``_CHUNK_ELEMENTS``."""
    return max(1, _CHUNK_ELEMENTS // n)


def _reducing(statistic: Callable[..., Any]) -> Callable[..., npt.NDArray[np.float64]]:
    """``statistic`` as scipy calls it (``axis=-1`` on a ``(batch, n)`` array), checked to return ``(batch,)``;
    scipy's own error for a statistic that keeps the axis would not say what is wrong."""

    def reduce(sample: npt.NDArray[np.float64], axis: int = -1) -> npt.NDArray[np.float64]:
        out = np.asarray(statistic(sample, axis=axis), dtype=np.float64)
        if out.shape != sample.shape[:-1]:
            raise ValueError(
                f"statistic must reduce the last axis when called as statistic(x, axis=-1): got shape "
                f"{out.shape} from input {sample.shape}; wrap it, e.g. lambda x, axis: np.quantile(x, 0.9, axis=axis)"
            )
        return out

    return reduce


def bootstrap_ci(
    values: npt.ArrayLike,
    statistic: Callable[..., Any] = np.mean,
    resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Point estimate and percentile-bootstrap confidence interval of ``statistic(values)``.

    The interval is ``scipy.stats.bootstrap(..., method="percentile", vectorized=True)`` with the resampling
    generator ``np.random.default_rng(seed)``, so the same seed and input always give the same interval.
    Resamples are evaluated in batches of at most ~1M values. When all values are equal (``n = 1`` included,
    which scipy rejects) every resample is the input itself, and the interval is the estimate.

    Args:
        values: ``(n,)`` per-episode scores (no NaN).
        statistic: a reduction called as ``statistic(x, axis=-1)`` on a ``(batch, n)`` array, returning
            ``(batch,)``; ``np.mean``, ``np.median`` and ``np.std`` qualify.
        resamples: the number of bootstrap resamples (>= 1).
        confidence: the coverage of the interval, in (0, 1).
        seed: the seed of the resampling generator.

    Returns:
        ``(estimate, low, high)``; ``estimate`` is the statistic of ``values`` themselves.
    """
    x = _scores(values, "values")
    _check(resamples, confidence)
    from scipy import stats  # on use: importing scipy.stats takes ~1 s, which `import fastadapt` should not pay

    reduce = _reducing(statistic)
    reduce(x[np.newaxis])  # (1,): checks the contract before any resampling, on every path below
    estimate = float(statistic(x, axis=-1))
    if (x == x[0]).all():
        return estimate, estimate, estimate
    result = stats.bootstrap(
        (x,),
        reduce,
        n_resamples=resamples,
        batch=_batch(len(x)),
        vectorized=True,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    low, high = result.confidence_interval
    return estimate, float(low), float(high)


@dataclass(frozen=True)
class PairedComparison:
    """Method ``a`` against method ``b`` on the same ``n`` episodes; ``difference`` is ``mean(a - b)``.

    ``ci_low``/``ci_high`` are the percentile-bootstrap interval (at ``confidence``) of the mean paired
    difference; ``t_ci95`` is the normal-approximation half-width ``1.96 * s / sqrt(n)`` of that difference
    (as :func:`mean_ci95` reports); ``p_value`` is the two-sided paired sign-flip permutation test,
    ``t_p_value`` the two-sided paired t-test and ``wilcoxon_p_value`` the two-sided Wilcoxon signed-rank test
    (zero differences dropped, scipy's default); ``significant`` is True when the bootstrap interval
    excludes 0. When every difference is 0 all three p-values are 1.0: no episode tells the methods apart,
    so there is no evidence against the null (the t statistic would be 0/0 and the signed-rank test would
    have no ranks left). When the differences are one constant shift (up to rounding), ``t_p_value`` is 0.0,
    the limit of ``|t| -> inf``.
    """

    n: int
    mean_a: float
    mean_b: float
    difference: float
    ci_low: float
    ci_high: float
    confidence: float
    t_ci95: float
    p_value: float
    t_p_value: float
    wilcoxon_p_value: float
    significant: bool

    def summary(self) -> dict[str, Any]:
        """All fields as a plain dict (for JSON reports)."""
        return asdict(self)


def _sign_flip_p_value(d: npt.NDArray[np.float64], resamples: int, seed: int) -> float:
    """Two-sided p-value of ``mean(d) = 0`` under the null that each difference is symmetric about 0.

    ``scipy.stats.permutation_test`` with ``permutation_type="samples"`` flips the signs of the differences;
    with ``2**n <= resamples`` it enumerates all sign patterns and the p-value is exact, otherwise it draws
    ``resamples`` random patterns from ``np.random.default_rng([seed, 1])`` (a stream apart from the
    bootstrap's) and returns ``(1 + #{|T*| >= |T|}) / (1 + resamples)``, never 0 (Phipson & Smyth, 2010,
    arXiv:1603.05766). The statistic is ``|mean(d)|`` with ``alternative="greater"`` rather than ``mean(d)``
    with ``"two-sided"``: scipy's two-sided p-value doubles the smaller one-sided one, which is the same when
    exact (the null is symmetric) but floors at ``2 / (1 + resamples)`` instead of ``1 / (1 + resamples)``.

    Args:
        d: ``(n,)`` paired differences, not all 0.
        resamples: random sign patterns when ``2**n > resamples``.
        seed: the seed of the sign-pattern stream.

    Returns:
        The p-value, in ``(0, 1]``.
    """
    from scipy import stats

    # Tied scores (accuracies are multiples of 1/queries) make patterns whose |T*| equals |T| exactly but for
    # rounding, and scipy's tolerance is relative to |T|, which may itself be rounding noise around 0. Putting
    # |T| on a grid of 1e-10 * mean|d| (mean|d| is the same under every sign pattern) counts them as ties.
    scale = float(np.abs(d).mean())

    def abs_mean(sample: npt.NDArray[np.float64], axis: int = -1) -> npt.NDArray[np.float64]:
        return np.round(np.abs(np.mean(sample, axis=axis)) / scale, 10)  # (batch,) in [0, 1]

    result = stats.permutation_test(
        (d,),
        abs_mean,
        permutation_type="samples",
        vectorized=True,
        n_resamples=resamples,
        batch=_batch(len(d)),
        alternative="greater",
        rng=np.random.default_rng([seed, 1]),
    )
    return float(result.pvalue)


def paired_comparison(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedComparison:
    """Compares two methods scored on the same episodes (or users), episode by episode.

    The bootstrap resamples episodes, i.e. the same indices for ``a`` and ``b``; it is
    ``bootstrap_ci(a - b, np.mean, resamples, confidence, seed)``. ``p_value`` comes from the sign-flip
    permutation test, which needs no distributional assumption beyond symmetry of the differences under the
    null; the paired t-test (``scipy.stats.ttest_rel``) and the Wilcoxon signed-rank test
    (``scipy.stats.wilcoxon``) are reported beside it.

    Args:
        a: ``(n,)`` per-episode scores of the first method.
        b: ``(n,)`` scores of the second method on the same episodes, in the same order.
        resamples: bootstrap resamples, and random sign patterns for the p-value.
        confidence: the coverage of the bootstrap interval, in (0, 1).
        seed: the seed of both resampling streams.

    Returns:
        A :class:`PairedComparison`; positive ``difference`` means ``a`` scores higher.
    """
    x, y = _scores(a, "a"), _scores(b, "b")
    if len(x) != len(y):
        raise ValueError(
            f"a and b must score the same episodes, got len(a)={len(x)} and len(b)={len(y)}; "
            "pair the scores episode by episode"
        )
    if len(x) < 2:
        raise ValueError(f"a paired comparison needs at least 2 episodes, got n={len(x)}")
    _check(resamples, confidence)
    from scipy import stats

    d = x - y  # (n,) paired differences
    difference, low, high = bootstrap_ci(d, np.mean, resamples, confidence, seed)
    _, half_width = mean_ci95(d.tolist())
    # scipy warns on differences without spread (0/0, or a variance lost to cancellation when the spread is
    # below ~1e-14 of the mean); their limits are plain: all zero is no evidence of a difference, and a constant
    # shift (up to rounding, e.g. a = b + 0.1) has |t| = inf.
    if not d.any():
        p_value = t_p_value = wilcoxon_p_value = 1.0
    else:
        p_value = _sign_flip_p_value(d, resamples, seed)
        shift_only = np.ptp(d) <= 1e-12 * abs(float(d.mean()))
        t_p_value = 0.0 if shift_only else float(stats.ttest_rel(x, y).pvalue)
        wilcoxon_p_value = float(stats.wilcoxon(x, y).pvalue)
    return PairedComparison(
        n=len(d),
        mean_a=float(x.mean()),
        mean_b=float(y.mean()),
        difference=difference,
        ci_low=low,
        ci_high=high,
        confidence=confidence,
        t_ci95=half_width,
        p_value=p_value,
        t_p_value=t_p_value,
        wilcoxon_p_value=wilcoxon_p_value,
        significant=bool(low > 0 or high < 0),
    )
