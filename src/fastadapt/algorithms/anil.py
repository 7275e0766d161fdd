"""ANIL: almost no inner loop (Raghu et al. 2020, arXiv:1909.09157). Only the head adapts."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from ..typing import Params
from ._functional import check_task_type, forward, gradient_descent, module_params, subset, task_loss
from ._protocol import query_objective


@dataclass(frozen=True, eq=False)
class ANIL:
    """MAML on the head alone. The body does not change in the inner loop, so its features are computed
    once per example and reused by every inner step: an inner step costs a head forward and backward.

    The model must have ``body`` and ``head`` sub-modules (every fastadapt model has).
    The adaptation state is the adapted head; ``predict`` runs the meta-learned body.
    """

    model: nn.Module
    task_type: str = "classification"
    inner_lr: float = 0.4
    inner_steps: int = 1
    first_order: bool = False
    name: str = "anil"

    def __post_init__(self) -> None:
        check_task_type(self.task_type)
        for part in ("body", "head"):
            if not isinstance(getattr(self.model, part, None), nn.Module):
                raise ValueError(f"ANIL needs a model with a '{part}' sub-module; {type(self.model).__name__} has none")

    def init_params(self) -> Params:
        return module_params(self.model)

    def _part(self, name: str) -> nn.Module:
        return self.model.get_submodule(name)

    def _features(self, params: Params, x: Tensor) -> Tensor:
        return forward(self._part("body"), subset(params, "body"), x)  # (n, feature_dim)

    def adapt(self, params: Params, support_x: Tensor, support_y: Tensor, steps: int | None = None) -> Params:
        features = self._features(params, support_x)  # once, not once per step

        def support_loss(head: Params) -> Tensor:
            return task_loss(self.task_type, forward(self._part("head"), head, features), support_y)

        n = self.inner_steps if steps is None else steps
        return gradient_descent(support_loss, subset(params, "head"), self.inner_lr, n, self.first_order)

    def predict(self, params: Params, state: Params, x: Tensor) -> Tensor:
        return forward(self._part("head"), state, self._features(params, x))

    def objective(
        self, params: Params, support_x: Tensor, support_y: Tensor, query_x: Tensor, query_y: Tensor
    ) -> tuple[Tensor, Tensor]:
        return query_objective(self, params, support_x, support_y, query_x, query_y)
