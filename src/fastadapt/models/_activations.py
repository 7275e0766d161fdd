"""Activation and pooling layers by name, so configs can pick smooth twins for gradient checks."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ._pool import MaxPool2x2

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "softplus": nn.Softplus}
_POOLS: dict[str, Callable[[], nn.Module]] = {"max": MaxPool2x2, "avg": lambda: nn.AvgPool2d(2)}


def activation(name: str) -> nn.Module:
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]()


def pool(name: str) -> nn.Module:
    if name not in _POOLS:
        raise ValueError(f"unknown pooling {name!r}; choose one of {sorted(_POOLS)}")
    return _POOLS[name]()
