"""The one protocol every algorithm follows, as pure functions over a parameter dict.

    adapt(params, support_x, support_y) -> state      (fast weights, prototypes, generated weights)
    predict(params, state, x) -> outputs
    objective(params, *task) -> (outer objective, [query loss, query metric])

The meta-gradient of a meta-batch is the gradient of the mean objective; how the tasks are batched
(loop, vmap, chunked vmap) is a separate strategy, see ``_batching.py``.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from ..typing import Params
from ._functional import task_loss, task_metric


class Algorithm(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def task_type(self) -> str:
        """ "classification" or "regression"."""
        ...

    def init_params(self) -> Params:
        """Fresh meta-parameters (detached; the trainer makes them leaves that require grad)."""
        ...

    def adapt(self, params: Params, support_x: Tensor, support_y: Tensor, steps: int | None = None) -> Params:
        """Adapts to one support set; ``steps`` overrides the training number of inner steps."""
        ...

    def predict(self, params: Params, state: Params, x: Tensor) -> Tensor:
        """Outputs ``(n, N)`` logits or ``(n, d)`` regression values for ``x`` after adaptation."""
        ...

    def objective(
        self, params: Params, support_x: Tensor, support_y: Tensor, query_x: Tensor, query_y: Tensor
    ) -> tuple[Tensor, Tensor]:
        """The scalar whose gradient is this task's meta-gradient, and ``[query loss, metric]``."""
        ...


def query_objective(
    algorithm: Algorithm, params: Params, support_x: Tensor, support_y: Tensor, query_x: Tensor, query_y: Tensor
) -> tuple[Tensor, Tensor]:
    """The usual meta-objective: the query loss of the adapted model."""
    outputs = algorithm.predict(params, algorithm.adapt(params, support_x, support_y), query_x)
    loss = task_loss(algorithm.task_type, outputs, query_y)
    return loss, torch.stack([loss.detach(), task_metric(algorithm.task_type, outputs, query_y)])
