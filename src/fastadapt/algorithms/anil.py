"""ANIL: almost no inner loop (Raghu et al. 2020, arXiv:1909.09157). Only the head adapts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from ..typing import Params
from ._functional import check_inner_checkpoint, forward, gradient_descent, module_params
from ._heads import HeadSpec, HeadSplit
from ._losses import resolve_objective
from ._protocol import query_objective


@dataclass(frozen=True, eq=False)
class ANIL:
    """MAML on the head alone.

    When the head is one sub-module, the body does not change in the inner loop, so its features are computed
    once per example and reused by every inner step: an inner step costs a head forward and backward. When the
    head is a list of parameter prefixes, each inner step runs the whole model with the body fixed.
    The adaptation state is the adapted head; ``predict`` runs the meta-learned body.

    Args:
        model: any ``nn.Module``.
        head: the sub-module that adapts (``"classifier"``), or a list of parameter-name prefixes.
        loss, metric, inner_lr, inner_steps, first_order, checkpoint_inner: as for :class:`~fastadapt.algorithms.MAML`.
    """

    model: nn.Module
    loss: Any = "cross_entropy"  # LossFn | str; a callable once built
    metric: Any = None  # Metric | str | None; a Metric once built
    inner_lr: float = 0.4
    inner_steps: int = 1
    first_order: bool = False
    checkpoint_inner: bool = False  # recompute inner steps in the backward (memory flat in inner_steps)
    head: HeadSpec = "head"
    name: str = "anil"
    split: HeadSplit = field(init=False, repr=False)

    def __post_init__(self) -> None:
        resolve_objective(self)
        check_inner_checkpoint(self)
        object.__setattr__(self, "split", HeadSplit(self.model, self.head))

    @property
    def second_order(self) -> nn.Module | None:
        if self.first_order:
            return None
        return self.split.module if self.split.module is not None else self.model

    def init_params(self) -> Params:
        return module_params(self.model)

    def _head_outputs(self, params: Params, head: Params, x: Tensor | None, features: Tensor | None) -> Tensor:
        if features is not None:
            return self.split.apply_head(head, features)
        return forward(self.model, self.split.body_params(params) | self.split.full_head(head), x)  # type: ignore[arg-type]

    def _features(self, params: Params, x: Tensor) -> Tensor | None:
        """The body's features (once, not once per step), or ``None`` when the head is not one sub-module."""
        return self.split.features(self.split.body_params(params), x) if self.split.module is not None else None

    def adapt(self, params: Params, support_x: Tensor, support_y: Tensor, steps: int | None = None) -> Params:
        features = self._features(params, support_x)

        def support_loss(head: Params) -> Tensor:
            return self.loss(self._head_outputs(params, head, support_x, features), support_y)

        n = self.inner_steps if steps is None else steps
        head = self.split.head_params(params)
        return gradient_descent(support_loss, head, self.inner_lr, n, self.first_order, self.checkpoint_inner)

    def predict(self, params: Params, state: Params, x: Tensor) -> Tensor:
        return self._head_outputs(params, state, x, self._features(params, x))

    def objective(
        self, params: Params, support_x: Tensor, support_y: Tensor, query_x: Tensor, query_y: Tensor
    ) -> tuple[Tensor, Tensor]:
        return query_objective(self, params, support_x, support_y, query_x, query_y)
