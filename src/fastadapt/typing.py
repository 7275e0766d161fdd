"""Type aliases shared across fastadapt."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

#: Parameters (or any named tensors) of a model, keyed as in ``nn.Module.named_parameters``.
Params = dict[str, Tensor]

#: A task loss: ``(outputs, targets) -> scalar``.
LossFn = Callable[[Tensor, Tensor], Tensor]
