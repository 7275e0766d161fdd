"""Episodic evaluation: fixed-seed test episodes, mean +- 95% confidence interval."""

from __future__ import annotations

from ._bootstrap import PairedComparison as PairedComparison
from ._bootstrap import bootstrap_ci as bootstrap_ci
from ._bootstrap import paired_comparison as paired_comparison
from ._classification import classification_report as classification_report
from ._classification import confusion_matrix as confusion_matrix
from ._classification import plot_confusion_matrix as plot_confusion_matrix
from ._episodic import EvalResult as EvalResult
from ._episodic import Method as Method
from ._episodic import compare_on_episodes as compare_on_episodes
from ._episodic import evaluate as evaluate
from ._episodic import placement as placement
from ._episodic import score_task as score_task
from ._episodic import to_placement as to_placement
from ._kfold import class_kfold as class_kfold
from ._kfold import group_kfold as group_kfold
from ._ranking import mae as mae
from ._ranking import ndcg_at_k as ndcg_at_k
from ._ranking import rmse as rmse
from ._ranking import sample_negatives as sample_negatives
from ._ranking import topk_metrics as topk_metrics
from ._stats import mean_ci95 as mean_ci95
from ._stats import mean_ci95_t as mean_ci95_t
