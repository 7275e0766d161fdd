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
from torch import Tensor, nn

from ..typing import LossFn, Params
from ._losses import Metric


class Algorithm(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def loss(self) -> LossFn:
        """The task loss ``(outputs, targets) -> scalar`` of the inner and the outer loop."""
        ...

    @property
    def metric(self) -> Metric:
        """What evaluation reports (accuracy, MSE, ...) and in which direction it improves."""
        ...

    @property
    def second_order(self) -> nn.Module | None:
        """The module whose forward the meta-gradient differentiates twice (``None``: first order only).

        The batching strategies check it: ``vmap`` gives wrong second-order gradients through torch's native
        normalisation kernels (see ``_batching.py``).
        """
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
    loss = algorithm.loss(outputs, query_y)
    return loss, torch.stack([loss.detach(), algorithm.metric(outputs, query_y).to(loss.dtype)])
