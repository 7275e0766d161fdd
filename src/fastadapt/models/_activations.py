"""Activation and pooling layers by name, so configs can pick smooth twins for gradient checks."""

from __future__ import annotations

from torch import nn

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "softplus": nn.Softplus}
_POOLS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


def activation(name: str) -> nn.Module:
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]()


def pool(name: str) -> nn.Module:
    if name not in _POOLS:
        raise ValueError(f"unknown pooling {name!r}; choose one of {sorted(_POOLS)}")
    return _POOLS[name](2)
