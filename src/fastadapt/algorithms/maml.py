"""MAML (Finn et al. 2017, arXiv:1703.03400) and first-order MAML as a detach on the same path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from ..typing import Params
from ._functional import check_inner_checkpoint, fine_tune, forward, module_params
from ._losses import resolve_objective
from ._protocol import query_objective


@dataclass(frozen=True, eq=False)
class MAML:
    """Adapts all parameters by ``inner_steps`` of SGD on the support loss.

    Args:
        model: the network, any ``nn.Module`` (parameters are taken from it once, by :meth:`init_params`).
        loss: the task loss, a name in ``fastadapt.algorithms.LOSSES`` or ``(outputs, targets) -> scalar``.
        metric: what evaluation reports (default: accuracy for cross-entropy, the loss itself otherwise).
        inner_lr: inner-loop step size (0.4 for Omniglot 5-way, 0.01 for sinusoid in the paper).
        inner_steps: inner steps during meta-training.
        first_order: FOMAML: no gradient through the inner gradients.
        checkpoint_inner: recompute each inner step in the backward pass (``torch.utils.checkpoint``) instead of
            keeping its graph: memory about flat in ``inner_steps``, for one more support forward and backward
            per step; loop strategy only.
    """

    model: nn.Module
    loss: Any = "cross_entropy"  # LossFn | str; a callable once built
    metric: Any = None  # Metric | str | None; a Metric once built
    inner_lr: float = 0.4
    inner_steps: int = 1
    first_order: bool = False
    checkpoint_inner: bool = False  # recompute inner steps in the backward (memory flat in inner_steps)
    name: str = "maml"

    def __post_init__(self) -> None:
        resolve_objective(self)
        check_inner_checkpoint(self)

    @property
    def second_order(self) -> nn.Module | None:
        return None if self.first_order else self.model

    def init_params(self) -> Params:
        return module_params(self.model)

    def adapt(self, params: Params, support_x: Tensor, support_y: Tensor, steps: int | None = None) -> Params:
        n = self.inner_steps if steps is None else steps
        return fine_tune(
            self.model,
            self.loss,
            params,
            support_x,
            support_y,
            self.inner_lr,
            n,
            self.first_order,
            self.checkpoint_inner,
        )

    def predict(self, params: Params, state: Params, x: Tensor) -> Tensor:
        return forward(self.model, state, x)

    def objective(
        self, params: Params, support_x: Tensor, support_y: Tensor, query_x: Tensor, query_y: Tensor
    ) -> tuple[Tensor, Tensor]:
        return query_objective(self, params, support_x, support_y, query_x, query_y)
