"""Multi-layer perceptron (MAML's sinusoid network is ``MLP(1, (40, 40), 1)``)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ._activations import activation


class MLP(nn.Module):
    """``body`` (linear + activation layers) followed by a linear ``head``.

    Args:
        in_features: input width; inputs are flattened from dimension 1 on.
        hidden: widths of the hidden layers.
        out_features: output width.
        act: activation name ("relu", "tanh", "softplus").
    """

    def __init__(self, in_features: int, hidden: Sequence[int], out_features: int, act: str = "relu") -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), activation(act)]
            width = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, out_features)
        self.feature_dim = width

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))  # (n, out_features)
