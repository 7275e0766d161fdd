"""A logistic-regression head on frozen features: the evaluation of RFS (Tian et al. 2020, arXiv:2003.11539) after
pretraining the body on all training classes (``training.pretrain_steps``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from torch import Tensor, nn

from ..typing import Params
from ._functional import module_params
from ._heads import HeadSplit
from ._losses import resolve_objective


@dataclass(frozen=True, eq=False)
class Logistic:
    """Fits scikit-learn's multinomial logistic regression on the L2-normalised body features of the support set;
    predicts its log-probabilities. Nothing is meta-learned: the body comes from pretraining (or from another
    run), so :meth:`objective` refuses.

    Args:
        model: any ``nn.Module``; head: the sub-module whose input are the features.
        ways: N.
        C: the inverse L2 strength (scikit-learn's default, as RFS uses it on normalised features).
    """

    model: nn.Module
    ways: int
    head: str = "head"
    C: float = 1.0
    loss: Any = "cross_entropy"
    metric: Any = None
    name: str = "logistic"
    split: HeadSplit = field(init=False, repr=False)

    second_order = None

    def __post_init__(self) -> None:
        resolve_objective(self)
        split = HeadSplit(self.model, self.head)
        if split.module is None:
            raise ValueError(
                f"logistic fits on what feeds the head: algorithm.head={self.head!r} must be one sub-module"
            )
        object.__setattr__(self, "split", split)

    def init_params(self) -> Params:
        return self.split.body_params(module_params(self.model))

    def features(self, params: Params, x: Tensor) -> Tensor:
        embedded = self.split.features(params, x).flatten(1)  # (n, D)
        return embedded / embedded.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def adapt(self, params: Params, support_x: Tensor, support_y: Tensor, steps: int | None = None) -> Params:
        features = self.features(params, support_x).detach()
        fit = LogisticRegression(C=self.C, max_iter=1000).fit(features.cpu().double().numpy(), support_y.cpu().numpy())
        weight = np.zeros((self.ways, features.shape[1]))
        bias = np.full(self.ways, -np.inf)  # a class without support examples is never predicted
        classes = fit.classes_.astype(int)
        if len(classes) == 2:  # scikit-learn keeps one row for two classes: p(second) = sigmoid(w.x + b)
            weight[classes[1]], bias[classes[1]], bias[classes[0]] = fit.coef_[0], fit.intercept_[0], 0.0
        else:
            weight[classes], bias[classes] = fit.coef_, fit.intercept_
        like = features
        return {
            "weight": torch.as_tensor(weight, dtype=like.dtype, device=like.device),
            "bias": torch.as_tensor(bias, dtype=like.dtype, device=like.device),
        }

    def predict(self, params: Params, state: Params, x: Tensor) -> Tensor:
        logits = self.features(params, x) @ state["weight"].T + state["bias"]  # (n, N)
        return torch.log_softmax(logits, dim=-1)

    def objective(
        self, params: Params, support_x: Tensor, support_y: Tensor, query_x: Tensor, query_y: Tensor
    ) -> tuple[Tensor, Tensor]:
        raise ValueError(
            "algorithm logistic has nothing to meta-train: pretrain the body (training.pretrain_steps) and set "
            "training.iterations=0, or meta-fine-tune with protonet"
        )
