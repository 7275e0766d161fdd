"""Reptile (Nichol et al. 2018, arXiv:1803.02999): meta model averaging."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..typing import Params
from ._functional import fine_tune, forward, module_params
from ._losses import resolve_objective


@dataclass(frozen=True, eq=False)
class Reptile:
    """k steps of SGD on the support set give adapted weights ``phi``; the meta-update moves ``theta``
    toward the mean of the ``phi`` of the meta-batch.

    The objective is ``0.5 * ||theta - stop_grad(phi)||^2``, whose gradient is ``theta - phi``; averaged
    over a meta-batch and applied by SGD with step ``epsilon`` it is exactly Reptile's interpolation
    ``theta <- theta + epsilon * (mean(phi) - theta)``. Any outer optimiser (Adam, as in the paper's
    Omniglot runs) can consume it like a gradient.
    """

    model: nn.Module
    loss: Any = "cross_entropy"  # LossFn | str; a callable once built
    metric: Any = None  # Metric | str | None; a Metric once built
    inner_lr: float = 0.001
    inner_steps: int = 5
    name: str = "reptile"

    #: Reptile never differentiates through its inner steps.
    second_order = None

    def __post_init__(self) -> None:
        resolve_objective(self)

    def init_params(self) -> Params:
        return module_params(self.model)

    def adapt(self, params: Params, support_x: Tensor, support_y: Tensor, steps: int | None = None) -> Params:
        n = self.inner_steps if steps is None else steps
        return fine_tune(self.model, self.loss, params, support_x, support_y, self.inner_lr, n, True)

    def predict(self, params: Params, state: Params, x: Tensor) -> Tensor:
        return forward(self.model, state, x)

    def objective(
        self, params: Params, support_x: Tensor, support_y: Tensor, query_x: Tensor, query_y: Tensor
    ) -> tuple[Tensor, Tensor]:
        phi = {k: v.detach() for k, v in self.adapt(params, support_x, support_y).items()}
        pull = sum(0.5 * ((params[k] - phi[k]) ** 2).sum() for k in params)
        with torch.no_grad():
            outputs = forward(self.model, phi, query_x)
            loss = self.loss(outputs, query_y)
        return torch.as_tensor(pull), torch.stack([loss, self.metric(outputs, query_y).to(loss.dtype)])
