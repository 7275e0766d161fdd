"""Prototypical Networks (Snell et al. 2017, arXiv:1703.05175)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from ..typing import Params
from ._functional import class_means, forward, module_params, subset
from ._protocol import query_objective


@dataclass(frozen=True, eq=False)
class ProtoNet:
    """Embeds with the model's ``body``; a class's prototype is the mean embedding of its support
    examples; logits are negative squared Euclidean distances to the prototypes.

    Args:
        ways: N; class ids in a support set are ``0..ways-1`` (a static size, so it vmaps).
    """

    model: nn.Module
    ways: int
    task_type: str = "classification"
    name: str = "protonet"

    def __post_init__(self) -> None:
        if self.task_type != "classification":
            raise ValueError("ProtoNet is a classifier; use task_type='classification'")
        if not isinstance(getattr(self.model, "body", None), nn.Module):
            raise ValueError(f"ProtoNet needs a model with a 'body' sub-module; {type(self.model).__name__} has none")

    def init_params(self) -> Params:
        return module_params(self.model.get_submodule("body"), "body")

    def embed(self, params: Params, x: Tensor) -> Tensor:
        return forward(self.model.get_submodule("body"), subset(params, "body"), x)  # (n, D)

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
