"""Batch normalisation for meta-learning: batch statistics, no running statistics.

Meta-learning runs batch-norm in transductive train mode without running statistics (as MAML's
reference code does). torch 2.13's native batch-norm kernel gives wrong *second-order* gradients when
differentiated with ``torch.func.grad`` under ``torch.func.vmap``, so under ``torch.func`` transforms this module
computes the same function from mean / subtract / multiply / rsqrt, whose derivatives of every order
are right. Elsewhere it calls the native kernel, measured ~1.7x faster for a Conv4 MAML step on CPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._torch import under_functorch


def primitive_batch_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
    """Batch-norm of ``(n, C, ...)`` over all dimensions but the channel one, from primitive ops."""
    dims = [0, *range(2, x.ndim)]
    shape = [1, -1] + [1] * (x.ndim - 2)
    centred = x - x.mean(dim=dims, keepdim=True)
    var = (centred * centred).mean(dim=dims, keepdim=True)  # biased, as batch-norm uses
    return centred * torch.rsqrt(var + eps) * weight.view(shape) + bias.view(shape)


class BatchNorm(nn.Module):
    """Normalises each channel by the statistics of the current batch.

    Same parameters (``weight``, ``bias``) and the same function as ``nn.BatchNorm{1,2}d`` with
    ``track_running_stats=False``. Input ``(n, C)`` or ``(n, C, H, W)``.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        if under_functorch():
            return primitive_batch_norm(x, self.weight, self.bias, self.eps)
        return F.batch_norm(x, None, None, self.weight, self.bias, training=True, eps=self.eps)
