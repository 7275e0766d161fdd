"""A task -> weights generator (hypernetwork; Ha et al. 2016, arXiv:1609.09106): adaptation is one forward pass.

A permutation-invariant set encoder reads the support set and a generator maps its representation to the
weights of the target network (the amortised inference of VERSA, Gordon et al. 2019, arXiv:1805.09921, and
LEO, Rusu et al. 2019, arXiv:1807.05960). Optionally ``k`` gradient steps refine the generated weights on the
support set, which makes them a task-specific MAML initialisation; ``k = 0`` is the pure amortised mode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models import MLP
from ..typing import Params
from ._functional import class_means, fine_tune, forward, gradient_descent, module_params
from ._heads import HeadSplit
from ._losses import resolve_objective
from ._protocol import query_objective


def _generator(in_features: int, width: int, out_features: int) -> MLP:
    """A one-hidden-layer ReLU network whose output layer starts at zero (so it first emits its bias)."""
    net = MLP(in_features, (width,), out_features)
    nn.init.zeros_(net.head.weight)
    nn.init.zeros_(net.head.bias)
    return net


def _two_layers(params: Params, prefix: str, x: Tensor) -> Tensor:
    """The one-hidden-layer MLP under ``prefix.`` applied to ``x`` ``(..., in)`` with plain ``F.linear`` calls:
    the same function as ``forward(MLP, ...)`` without ``functional_call``'s per-call overhead, which is most
    of the cost of adapting at this size."""
    hidden = F.relu(F.linear(x, params[f"{prefix}.body.1.weight"], params[f"{prefix}.body.1.bias"]))
    return F.linear(hidden, params[f"{prefix}.head.weight"], params[f"{prefix}.head.bias"])


@dataclass(frozen=True, eq=False)
class HyperNet:
    """Generates the target network's weights from the support set; ``inner_steps`` refine them.

    Classification (the VERSA design): the model's ``body`` embeds the support examples, ``(n, D)``; they are
    mean-pooled per class, ``c`` ``(N, D)``, and the generator maps each class's ``[c_j, mean_j c_j]`` to that
    class's row of the ``head``: ``w_j = 2 c_j + dw_j``, ``b_j = -|c_j|^2 + db_j``. The generator's output
    layer starts at zero, so an untrained generator is the nearest-class-mean classifier
    (ProtoNet's logits up to a per-query constant); it learns corrections that depend on the whole task.
    Meta-parameters: the body's (every model parameter outside ``head``) and ``generator.*``. The state is the
    head ``{"weight": (N, D), "bias": (N,)}``; refinement steps adapt only the head, on body features computed
    once (as ANIL).

    Regression: a set encoder embeds each support pair ``[x, y]`` and mean-pools them, ``r`` ``(task_dim,)``
    (an empty support set gives ``r = 0``); the generator maps ``r`` to every weight of the model, flattened.
    Its output bias starts at the model's initial weights and its output weights at zero, so an untrained
    generator emits the same weights for every task (a MAML initialisation) and learns task-dependent
    offsets. Meta-parameters: ``encoder.*`` and ``generator.*``; the state is a full parameter dict of the
    model, and refinement steps adapt all of it (as MAML).

    Args:
        model: the target network: any ``nn.Module`` whose ``head`` is a linear layer for classification, an
            :class:`~fastadapt.models.MLP` for regression.
        ways: N for classification (a static size, so that it vmaps); ``None`` generates every weight (regression).
        head: classification: the linear sub-module that is generated.
        loss, metric: default cross-entropy / accuracy with ``ways``, MSE without.
        inner_lr, inner_steps: the refinement steps (0: pure amortised adaptation).
        first_order: refinement steps without second-order terms.
        task_dim: width of the regression set encoder's task representation.
        generator_width: hidden width of the set encoder and of the generator.
    """

    model: nn.Module
    ways: int | None = None
    loss: Any = None  # LossFn | str | None; a callable once built
    metric: Any = None  # Metric | str | None; a Metric once built
    head: str = "head"
    inner_lr: float = 0.1
    inner_steps: int = 0
    first_order: bool = False
    task_dim: int = 64
    generator_width: int = 128
    name: str = "hypernet"
    _encoder: nn.Module = field(init=False, repr=False)
    _generator: nn.Module = field(init=False, repr=False)
    _shapes: dict[str, torch.Size] = field(init=False, repr=False)
    _split: HeadSplit | None = field(init=False, repr=False)

    @property
    def classifies(self) -> bool:
        """Whether it generates a per-class head (``ways`` given) rather than every weight."""
        return self.ways is not None

    @property
    def second_order(self) -> nn.Module | None:
        if self.first_order or self.inner_steps == 0:
            return None
        return self._split.module if self._split is not None else self.model

    def __post_init__(self) -> None:
        if self.loss is None:
            object.__setattr__(self, "loss", "cross_entropy" if self.classifies else "mse")
        resolve_objective(self)
        object.__setattr__(self, "_split", None)
        if self.inner_steps < 0:
            raise ValueError(f"inner_steps must be >= 0 (0: amortised adaptation only), got {self.inner_steps}")
        width = self.generator_width
        for name in ("task_dim", "generator_width"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        dtype = next(self.model.parameters()).dtype
        if self.ways is not None:
            if self.ways < 2:
                raise ValueError(f"a classifying HyperNet needs ways >= 2 (the N of N-way), got {self.ways}")
            split = HeadSplit(self.model, self.head)
            if not isinstance(split.module, nn.Linear):
                raise ValueError(
                    f"a classifying HyperNet generates a linear head, but algorithm.head={self.head!r} of "
                    f"{type(self.model).__name__} is {type(split.module).__name__}; name an nn.Linear sub-module"
                )
            object.__setattr__(self, "_split", split)
            dim = split.module.in_features
            object.__setattr__(self, "_generator", _generator(2 * dim, width, dim + 1).to(dtype))
            object.__setattr__(self, "_encoder", nn.Identity())
            object.__setattr__(self, "_shapes", {})
            return
        if not isinstance(self.model, MLP):
            raise ValueError(
                f"a regression HyperNet generates every weight of an MLP (fastadapt.models.MLP, model.name=mlp); "
                f"{type(self.model).__name__} is not one: use anil or maml for it"
            )
        shapes = {k: v.shape for k, v in self.model.named_parameters()}
        total = sum(math.prod(s) for s in shapes.values())
        encoder = MLP(self._pair_width(), (width,), self.task_dim)
        generator = _generator(self.task_dim, width, total)
        with torch.no_grad():
            generator.head.bias.copy_(torch.cat([v.detach().flatten() for v in self.model.parameters()]))
        object.__setattr__(self, "_encoder", encoder.to(dtype))
        object.__setattr__(self, "_generator", generator.to(dtype))
        object.__setattr__(self, "_shapes", shapes)

    def _pair_width(self) -> int:
        linears = [m for m in self.model.modules() if isinstance(m, nn.Linear)]
        return linears[0].in_features + linears[-1].out_features  # [x, y] of one support pair

    def init_params(self) -> Params:
        generator = module_params(self._generator, "generator")
        if self._split is not None:
            return self._split.body_params(module_params(self.model)) | generator
        return module_params(self._encoder, "encoder") | generator

    # -- the task representation and the generated weights ------------------------------------
    def _features(self, params: Params, x: Tensor) -> Tensor:
        assert self._split is not None
        return self._split.features(self._split.body_params(params), x).flatten(1)  # (n, D)

    def _head(self, params: Params, features: Tensor, support_y: Tensor) -> Params:
        """The head from support features ``(n, D)`` and class ids ``(n,)``: weight ``(N, D)``, bias ``(N,)``."""
        centres = class_means(features, support_y, self.ways or 0)  # (N, D)
        context = centres.mean(0, keepdim=True).expand_as(centres)  # (N, D): what the other classes look like
        out = _two_layers(params, "generator", torch.cat([centres, context], 1))  # (N, D+1)
        weight = 2 * centres + out[:, :-1]
        bias = -(centres * centres).sum(1) + out[:, -1]
        return {"weight": weight, "bias": bias}

    def represent(self, params: Params, support_x: Tensor, support_y: Tensor) -> Tensor:
        """Regression: the permutation-invariant task representation ``(task_dim,)`` of the support pairs."""
        pairs = torch.cat([support_x.flatten(1), support_y.flatten(1)], 1)  # (n, dx + dy)
        embedded = _two_layers(params, "encoder", pairs)  # (n, task_dim)
        return embedded.sum(0) / max(pairs.shape[0], 1)

    def generate(self, params: Params, support_x: Tensor, support_y: Tensor) -> Params:
        """The generated weights (the state before refinement): one forward pass, no gradient steps.

        Args:
            support_x: ``(n, *x_shape)``; support_y: ``(n,)`` class ids or ``(n, d)`` regression targets.

        Returns:
            Classification: the head, ``{"weight": (N, D), "bias": (N,)}``. Regression: every parameter of the
            model, shaped as in ``model.named_parameters()``.
        """
        if self.classifies:
            return self._head(params, self._features(params, support_x), support_y)
        flat = _two_layers(params, "generator", self.represent(params, support_x, support_y))  # (P,)
        pieces = torch.split(flat, [math.prod(s) for s in self._shapes.values()])
        return {k: piece.reshape(s) for (k, s), piece in zip(self._shapes.items(), pieces, strict=True)}

    # -- the protocol --------------------------------------------------------------------------
    def adapt(self, params: Params, support_x: Tensor, support_y: Tensor, steps: int | None = None) -> Params:
        n = self.inner_steps if steps is None else steps
        if not self.classifies:
            generated = self.generate(params, support_x, support_y)
            return fine_tune(self.model, self.loss, generated, support_x, support_y, self.inner_lr, n, self.first_order)
        features = self._features(params, support_x)  # once, for the generator and every refinement step
        assert self._split is not None
        split = self._split

        def head_loss(p: Params) -> Tensor:
            return self.loss(split.apply_head(p, features), support_y)

        return gradient_descent(head_loss, self._head(params, features, support_y), self.inner_lr, n, self.first_order)

    def predict(self, params: Params, state: Params, x: Tensor) -> Tensor:
        """``(n, N)`` logits or ``(n, d)`` values for ``x`` ``(n, *x_shape)`` with the generated (refined) weights."""
        if self._split is None:
            return forward(self.model, state, x)
        return self._split.apply_head(state, self._features(params, x))

    def objective(
        self, params: Params, support_x: Tensor, support_y: Tensor, query_x: Tensor, query_y: Tensor
    ) -> tuple[Tensor, Tensor]:
        return query_objective(self, params, support_x, support_y, query_x, query_y)
