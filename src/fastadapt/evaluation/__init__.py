"""Episodic evaluation: fixed-seed test episodes, mean +- 95% confidence interval."""

from __future__ import annotations

from ._episodic import EvalResult as EvalResult
from ._episodic import evaluate as evaluate
from ._stats import mean_ci95 as mean_ci95
