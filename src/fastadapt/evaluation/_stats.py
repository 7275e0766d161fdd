"""Summary statistics as the few-shot literature reports them."""

from __future__ import annotations

import math
from collections.abc import Sequence


def mean_ci95(values: Sequence[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% confidence interval, ``1.96 * std / sqrt(n)`` with the
    sample standard deviation (ddof=1); the half-width is 0 for a single value."""
    n = len(values)
    if n == 0:
        raise ValueError("cannot summarise zero episodes")
    mean = math.fsum(values) / n
    if n == 1:
        return mean, 0.0
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, 1.96 * math.sqrt(var / n)


def mean_ci95_t(values: Sequence[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% Student-t interval, ``t(0.975, n - 1) * std / sqrt(n)`` (SciPy's t
    quantile, sample standard deviation): the interval for a handful of seeds, where the normal approximation of
    :func:`mean_ci95` is too narrow (at 5 seeds by 2.776 / 1.96 = 1.42x); 0 for a single value."""
    mean, normal = mean_ci95(values)
    if len(values) < 2:
        return mean, 0.0
    from scipy import stats

    return mean, normal / 1.96 * float(stats.t.ppf(0.975, len(values) - 1))
