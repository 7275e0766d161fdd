"""Meta-SGD (Li et al. 2017, arXiv:1707.09835): per-parameter inner learning rates are meta-learned."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..typing import Params
from ._functional import check_inner_checkpoint, fine_tune, forward, module_params, subset
from ._losses import resolve_objective
from ._protocol import query_objective

LR_PREFIX = "inner_lr"


def optimizer_groups(params: Params, lr: float, rates_lr: float | None = None) -> list[dict[str, Any]]:
    """Parameter groups for the outer optimiser: the weights at ``lr`` and Meta-SGD's learned inner rates
    (``inner_lr.*``, if any) at ``rates_lr`` (default ``lr``). Adam's steps have an absolute size, so rates that
    start at 10 barely move at the weights' 1e-3; each group also records its ``base_lr`` for schedules."""
    rates = [p for k, p in params.items() if k.startswith(LR_PREFIX + ".")]
    weights = [p for k, p in params.items() if not k.startswith(LR_PREFIX + ".")]
    groups: list[dict[str, Any]] = [{"params": weights, "lr": lr, "base_lr": lr}]
    if rates:
        rate = lr if rates_lr is None else rates_lr
        groups.append({"params": rates, "lr": rate, "base_lr": rate})
    return groups


@dataclass(frozen=True, eq=False)
class MetaSGD:
    """MAML whose inner step is ``theta - alpha * grad`` with ``alpha`` a learned tensor shaped like each
    parameter. Meta-parameters: the model's parameters and ``inner_lr.<name>`` for each of them.

    Args:
        loss, metric: as for :class:`~fastadapt.algorithms.MAML`.
        inner_lr: the initial value of every learned learning rate.
    """

    model: nn.Module
    loss: Any = "cross_entropy"  # LossFn | str; a callable once built
    metric: Any = None  # Metric | str | None; a Metric once built
    inner_lr: float = 0.4
    inner_steps: int = 1
    first_order: bool = False
    checkpoint_inner: bool = False  # recompute inner steps in the backward (memory flat in inner_steps)
    name: str = "metasgd"

    def __post_init__(self) -> None:
        resolve_objective(self)
        check_inner_checkpoint(self)

    @property
    def second_order(self) -> nn.Module | None:
        return None if self.first_order else self.model

    def init_params(self) -> Params:
        weights = module_params(self.model)
        rates = {f"{LR_PREFIX}.{k}": torch.full_like(v, self.inner_lr) for k, v in weights.items()}
        return weights | rates

    @staticmethod
    def weights(params: Params) -> Params:
        return {k: v for k, v in params.items() if not k.startswith(LR_PREFIX + ".")}

    def adapt(self, params: Params, support_x: Tensor, support_y: Tensor, steps: int | None = None) -> Params:
        n = self.inner_steps if steps is None else steps
        rates = subset(params, LR_PREFIX)
        weights = self.weights(params)
        return fine_tune(
            self.model, self.loss, weights, support_x, support_y, rates, n, self.first_order, self.checkpoint_inner
        )

    def predict(self, params: Params, state: Params, x: Tensor) -> Tensor:
        return forward(self.model, state, x)

    def objective(
        self, params: Params, support_x: Tensor, support_y: Tensor, query_x: Tensor, query_y: Tensor
    ) -> tuple[Tensor, Tensor]:
        return query_objective(self, params, support_x, support_y, query_x, query_y)
