"""Prototypical Networks (Snell et al. 2017, arXiv:1703.05175)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from ..typing import Params
from ._functional import class_means, forward, module_params
from ._heads import HeadSplit
from ._losses import resolve_objective
from ._protocol import query_objective


@dataclass(frozen=True, eq=False)
class ProtoNet:
    """Embeds with the model's body; a class's prototype is the mean embedding of its support
    examples; logits are negative squared Euclidean distances to the prototypes.

    Args:
        model: any ``nn.Module``.
        ways: N; class ids in a support set are ``0..ways-1`` (a static size, so it vmaps).
        head: the sub-module the embedding skips (its input is the embedding; its parameters are not
            meta-parameters), or ``None``: the model's output is the embedding.
        loss, metric: over the distance logits (cross-entropy and accuracy by default).
    """

    model: nn.Module
    ways: int
    head: str | None = "head"
    loss: Any = "cross_entropy"  # LossFn | str; a callable once built
    metric: Any = None  # Metric | str | None; a Metric once built
    name: str = "protonet"
    split: HeadSplit | None = field(init=False, repr=False)

    #: No inner loop: nothing is differentiated twice.
    second_order = None

    def __post_init__(self) -> None:
        resolve_objective(self)
        split = None if self.head is None else HeadSplit(self.model, self.head)
        if split is not None and split.module is None:
            raise ValueError(
                f"ProtoNet embeds with what feeds its head: algorithm.head={self.head!r} must be one sub-module"
            )
        object.__setattr__(self, "split", split)

    def init_params(self) -> Params:
        params = module_params(self.model)
        return params if self.split is None else self.split.body_params(params)

    def embed(self, params: Params, x: Tensor) -> Tensor:
        if self.split is None:
            return forward(self.model, params, x)  # (n, D)
        return self.split.features(params, x).flatten(1)  # (n, D)

    def adapt(self, params: Params, support_x: Tensor, support_y: Tensor, steps: int | None = None) -> Params:
        return {"prototypes": class_means(self.embed(params, support_x), support_y, self.ways)}  # (N, D)

    def predict(self, params: Params, state: Params, x: Tensor) -> Tensor:
        embedded = self.embed(params, x)  # (n, D)
        prototypes = state["prototypes"]  # (N, D)
        # ||e - p||^2 = ||e||^2 - 2 e.p + ||p||^2: one matmul instead of an (n, N, D) difference tensor.
        squared = (embedded * embedded).sum(-1, keepdim=True) - 2 * embedded @ prototypes.T
        return -(squared + (prototypes * prototypes).sum(-1))  # (n, N)

    def objective(
        self, params: Params, support_x: Tensor, support_y: Tensor, query_x: Tensor, query_y: Tensor
    ) -> tuple[Tensor, Tensor]:
        return query_objective(self, params, support_x, support_y, query_x, query_y)
