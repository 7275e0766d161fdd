"""Bootstrap confidence intervals and paired comparisons of two methods scored on the same episodes.

The interval is the percentile bootstrap (Efron & Tibshirani, *An Introduction to the Bootstrap*, 1993,
ch. 13): resample the episodes with replacement, recompute the statistic, and take the
``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of the resampled statistics (linear
interpolation, numpy's default). Pairing matters when two methods see the same episodes: the episode-to-episode
variance is shared, so the interval of the mean *difference* is far narrower than two separate intervals
suggest, and overlapping per-method intervals do not mean "no difference".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ._stats import mean_ci95

#: Resampled values held in memory at once (float64), about 8 MB, whatever the sample size.
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


def _chunks(total: int, n: int) -> list[int]:
    """Sizes of the chunks of ``total`` resamples of ``n`` values each that fit in ``_CHUNK_ELEMENTS``."""
    size = max(1, min(total, _CHUNK_ELEMENTS // n))
    return [min(size, total - start) for start in range(0, total, size)]


def bootstrap_ci(
    values: npt.ArrayLike,
    statistic: Callable[..., Any] = np.mean,
    resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Point estimate and percentile-bootstrap confidence interval of ``statistic(values)``.

    Resamples are drawn in chunks (at most ~1M values at a time) from ``np.random.default_rng(seed)``:
    chunk ``j`` holds the index rows ``rng.integers(0, n, size=(chunk, n))``, so the same seed and input
    always give the same interval.

    Args:
        values: ``(n,)`` per-episode scores (no NaN).
        statistic: a reduction called as ``statistic(x, axis=-1)`` on a ``(chunk, n)`` array, returning
            ``(chunk,)``; ``np.mean``, ``np.median`` and ``np.std`` qualify.
        resamples: the number of bootstrap resamples (>= 1).
        confidence: the coverage of the interval, in (0, 1).
        seed: the seed of the resampling generator.

    Returns:
        ``(estimate, low, high)``; ``estimate`` is the statistic of ``values`` themselves.
    """
    x = _scores(values, "values")
    _check(resamples, confidence)
    n = len(x)
    rng = np.random.default_rng(seed)
    stats = np.empty(resamples)
    start = 0
    for size in _chunks(resamples, n):
        idx = rng.integers(0, n, size=(size, n))  # (size, n)
        out = np.asarray(statistic(x[idx], axis=-1), dtype=np.float64)  # (size,)
        if out.shape != (size,):
            raise ValueError(
                f"statistic must reduce the last axis when called as statistic(x, axis=-1): got shape "
                f"{out.shape} from input {idx.shape}; wrap it, e.g. lambda x, axis: np.quantile(x, 0.9, axis=axis)"
            )
        stats[start : start + size] = out
        start += size
    low, high = np.quantile(stats, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(statistic(x, axis=-1)), float(low), float(high)


@dataclass(frozen=True)
class PairedComparison:
    """Method ``a`` against method ``b`` on the same ``n`` episodes; ``difference`` is ``mean(a - b)``.

    ``ci_low``/``ci_high`` are the percentile-bootstrap interval (at ``confidence``) of the mean paired
    difference; ``t_ci95`` is the normal-approximation half-width ``1.96 * s / sqrt(n)`` of that difference
    (as :func:`mean_ci95` reports); ``p_value`` is the two-sided paired sign-flip permutation test;
    ``significant`` is True when the bootstrap interval excludes 0.
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
    significant: bool

    def summary(self) -> dict[str, Any]:
        """All fields as a plain dict (for JSON reports)."""
        return asdict(self)


def _sign_flip_p_value(d: npt.NDArray[np.float64], resamples: int, seed: int) -> float:
    """Two-sided p-value of ``mean(d) = 0`` under the null that each difference is symmetric about 0.

    With ``2**n <= resamples`` all sign patterns are enumerated and the p-value is exact; otherwise
    ``resamples`` random patterns from ``np.random.default_rng([seed, 1])`` (a stream apart from the
    bootstrap's) give ``(1 + #{|T*| >= |T|}) / (1 + resamples)``, which is never 0 (Phipson & Smyth, 2010,
    arXiv:1603.05766).
    """
    n = len(d)
    observed = abs(float(d.mean()))
    # Sign patterns that mirror the observed one give the same |T| up to rounding; count them as ties.
    tolerance = 1e-10 * float(np.abs(d).mean())
    if 2**n <= resamples:
        signs = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1) * 2 - 1  # (2**n, n), every pattern once
        extreme = np.abs((signs * d).mean(axis=1)) >= observed - tolerance
        return float(extreme.mean())
    rng = np.random.default_rng([seed, 1])
    count = 0
    for size in _chunks(resamples, n):
        signs = rng.integers(0, 2, size=(size, n)) * 2 - 1  # (size, n)
        count += int((np.abs((signs * d).mean(axis=1)) >= observed - tolerance).sum())
    return (1 + count) / (1 + resamples)


def paired_comparison(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedComparison:
    """Compares two methods scored on the same episodes (or users), episode by episode.

    The bootstrap resamples episodes, i.e. the same indices for ``a`` and ``b``; it is
    ``bootstrap_ci(a - b, np.mean, resamples, confidence, seed)``. The p-value comes from a sign-flip
    permutation test rather than a paired t-test, so it needs no distributional assumption beyond symmetry
    of the differences under the null, and no scipy.

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
    d = x - y  # (n,) paired differences
    difference, low, high = bootstrap_ci(d, np.mean, resamples, confidence, seed)
    _, half_width = mean_ci95(d.tolist())
    return PairedComparison(
        n=len(d),
        mean_a=float(x.mean()),
        mean_b=float(y.mean()),
        difference=difference,
        ci_low=low,
        ci_high=high,
        confidence=confidence,
        t_ci95=half_width,
        p_value=_sign_flip_p_value(d, resamples, seed),
        significant=bool(low > 0 or high < 0),
    )
