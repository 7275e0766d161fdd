"""Closed-form ridge adaptation of a linear head with a meta-learned prior (R2-D2, Bertinetto et al. 2019,
arXiv:1805.08136, for regression; the matrix-factorisation fold-in of a new user with a learned prior).

The model is linear in a per-task vector ``theta`` (``k`` values) given the meta-parameters::

    y_hat = offset(x) + design(x) . theta

and ``theta`` is the ridge solution on the support set, shrunk toward a prior mean with a learned precision::

    theta = argmin  sum_j (y_j - offset_j - design_j . theta)^2 + (theta - m)' diag(exp(log_precision)) (theta - m)
          = (A'A + L)^-1 (A' (y - offset) + L m)

The solve is differentiable, so the meta-gradient reaches everything that shapes ``offset``, ``design``, the
prior mean ``m`` and the precision: exact second order in one linear solve, batched over tasks by ``vmap``.

A model takes part by answering ``forward(x, terms=True)`` with ``(offset (n,), design (n, k), prior (n, k),
log_precision (k,))`` (``prior``: the prior mean per example, e.g. from the user's features; the task's is their
mean over the support rows) and ``forward(x, theta=theta)`` with its ``(n, 1)`` outputs for one ``theta``
(bounded as the model likes; ``forward(x)`` uses the prior mean).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ..typing import Params
from ._functional import module_params
from ._losses import resolve_objective
from ._protocol import query_objective


def ridge_solve(design: Tensor, target: Tensor, prior: Tensor, precision: Tensor) -> Tensor:
    """``(A'A + diag(precision))^-1 (A' target + precision * prior)`` for ``design`` ``(n, k)``, ``target``
    ``(n,)``, ``prior`` and ``precision`` ``(k,)``; ``(k,)``."""
    gram = design.T @ design + torch.diag(precision)  # (k, k)
    return torch.linalg.solve(gram, design.T @ target + precision * prior)


@dataclass(frozen=True, eq=False)
class Ridge:
    """Adapts ``theta`` in closed form (see the module docstring); every meta-parameter is the model's.

    Args:
        model: a module answering ``forward(x, terms=True)`` and ``forward(x, theta=...)``.
        loss, metric: the outer loss and the reported metric (``"mse"``: ridge fits squared error).
        inner_steps: 0 predicts from the prior mean without looking at the support set (the "before
            adaptation" score); 1 solves. ``inner_lr`` is not used (there is no step size; the configs'
            ``algorithm.inner_lr`` is passed and ignored).
    """

    model: nn.Module
    loss: Any = "mse"
    metric: Any = None
    inner_lr: float = 0.0
    inner_steps: int = 1
    name: str = "ridge"

    def __post_init__(self) -> None:
        resolve_objective(self)
        if self.inner_steps not in (0, 1):
            raise ValueError(
                f"algorithm ridge solves in closed form: inner_steps is 0 (the prior, no adaptation) or 1 (the "
                f"solve), got {self.inner_steps}"
            )

    @property
    def second_order(self) -> nn.Module | None:
        return self.model

    def init_params(self) -> Params:
        return module_params(self.model)

    def _call(self, params: Params, x: Tensor, **options: Any) -> Any:
        return functional_call(self.model, params, (x,), options)

    def terms(self, params: Params, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        accepted = inspect.signature(self.model.forward).parameters
        if not {"terms", "theta"} <= set(accepted):
            raise TypeError(
                f"algorithm ridge needs a model whose forward takes terms=True and theta= ({type(self.model).__name__}"
                f"'s takes {', '.join(accepted)}); see fastadapt.algorithms.ridge"
            )
        offset, design, prior, log_precision = self._call(params, x, terms=True)
        return offset, design, prior, log_precision

    def adapt(self, params: Params, support_x: Tensor, support_y: Tensor, steps: int | None = None) -> Params:
        offset, design, prior, log_precision = self.terms(params, support_x)
        mean = prior.mean(0)  # (k,): the rows of one task share their prior
        n = self.inner_steps if steps is None else steps
        if n == 0:
            return {"theta": mean}
        target = support_y.reshape(-1) - offset  # (n_support,)
        return {"theta": ridge_solve(design, target, mean, log_precision.exp())}

    def predict(self, params: Params, state: Params, x: Tensor) -> Tensor:
        return self._call(params, x, theta=state["theta"])  # type: ignore[no-any-return]

    def objective(
        self, params: Params, support_x: Tensor, support_y: Tensor, query_x: Tensor, query_y: Tensor
    ) -> tuple[Tensor, Tensor]:
        return query_objective(self, params, support_x, support_y, query_x, query_y)
