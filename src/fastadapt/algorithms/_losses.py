"""Task losses and metrics by name, so that configs can choose them; any callable works from Python.

A loss is ``(outputs, targets) -> scalar`` and is what the inner and outer loops differentiate; a metric is
what evaluation reports and checkpoint selection compares, with the direction that counts as better.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..typing import LossFn


@dataclass(frozen=True)
class Metric:
    """A score of outputs against targets, computed without gradient.

    Attributes:
        name: how reports call it ("accuracy", "mse").
        fn: ``(outputs, targets) -> scalar`` tensor.
        higher_is_better: the direction in which checkpoints and searches improve.
    """

    name: str
    fn: Callable[[Tensor, Tensor], Tensor]
    higher_is_better: bool

    def __call__(self, outputs: Tensor, targets: Tensor) -> Tensor:
        with torch.no_grad():
            return self.fn(outputs, targets)


def accuracy(logits: Tensor, targets: Tensor) -> Tensor:
    """The fraction of rows of ``(n, N)`` logits whose argmax is the class id in ``(n,)`` targets."""
    return (logits.argmax(-1) == targets).to(logits.dtype).mean()


def binary_accuracy(logits: Tensor, targets: Tensor) -> Tensor:
    """The fraction of logits whose sign agrees with 0/1 targets of the same shape."""
    return ((logits > 0).to(logits.dtype) == targets).to(logits.dtype).mean()


#: Named losses for ``algorithm.loss``.
LOSSES: dict[str, LossFn] = {
    "cross_entropy": F.cross_entropy,
    "mse": F.mse_loss,
    "l1": F.l1_loss,
    "huber": F.huber_loss,
    "bce_with_logits": F.binary_cross_entropy_with_logits,
}

#: Named metrics for ``algorithm.metric``.
METRICS: dict[str, Metric] = {
    "accuracy": Metric("accuracy", accuracy, True),
    "binary_accuracy": Metric("binary_accuracy", binary_accuracy, True),
    "mse": Metric("mse", F.mse_loss, False),
    "mae": Metric("mae", F.l1_loss, False),
}

#: The metric reported for a named loss when none is chosen.
DEFAULT_METRIC = {
    "cross_entropy": "accuracy",
    "bce_with_logits": "binary_accuracy",
    "mse": "mse",
    "l1": "mae",
    "huber": "mse",
}


def resolve_loss(loss: str | LossFn) -> LossFn:
    """A loss callable from a name in :data:`LOSSES` or a callable (returned as it is)."""
    if callable(loss):
        return loss
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {sorted(LOSSES)} or pass a callable")
    return LOSSES[loss]


def resolve_metric(metric: str | Metric | None, loss: str | LossFn) -> Metric:
    """A :class:`Metric` from a name, a ``Metric``, or ``None``: the default of a named loss (or of one of
    :data:`LOSSES` passed as a function), else the query loss itself, lower is better."""
    if isinstance(metric, Metric):
        return metric
    if metric is None:
        named = loss if isinstance(loss, str) else next((k for k, f in LOSSES.items() if f is loss), None)
        if named in DEFAULT_METRIC:
            return METRICS[DEFAULT_METRIC[named]]
        return Metric("query_loss", resolve_loss(loss), False)
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {sorted(METRICS)} or pass a fastadapt Metric")
    return METRICS[metric]


def resolve_objective(algorithm: object) -> None:
    """Replaces a frozen algorithm's ``loss`` and ``metric`` fields (names, or ``None`` for the default metric) by
    the callable and the :class:`Metric` they name; called by each algorithm's ``__post_init__``."""
    loss = algorithm.loss  # type: ignore[attr-defined]
    object.__setattr__(algorithm, "metric", resolve_metric(algorithm.metric, loss))  # type: ignore[attr-defined]
    object.__setattr__(algorithm, "loss", resolve_loss(loss))
