"""Episodic evaluation: fixed-seed test episodes, mean +- 95% confidence interval."""

from __future__ import annotations

from ._episodic import EvalResult as EvalResult
from ._episodic import evaluate as evaluate
from ._ranking import mae as mae
from ._ranking import ndcg_at_k as ndcg_at_k
from ._ranking import rmse as rmse
from ._ranking import sample_negatives as sample_negatives
from ._ranking import topk_metrics as topk_metrics
from ._stats import mean_ci95 as mean_ci95
