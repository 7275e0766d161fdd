"""2x2 max-pooling with stride 2 for NCHW tensors on CPU, without torch's slow NCHW pooling kernel.

torch 2.13's CPU ``max_pool2d_with_indices`` in NCHW (contiguous) format is slower than the convolution before it
in Conv4 (docs/performance.md: 12.8 ms forward for 80 x 64 x 28 x 28, against 1.5 ms for the three ``maximum`` s
of the four strided window corners). :func:`max_pool_2x2` computes the same values and the same indices (the
first maximum of each window in row-major order, or its last NaN, as torch's kernel picks) from those corners,
and hands the backward to torch's own ``max_pool2d_with_indices_backward``. That op is differentiable, so the
double backward of second-order MAML is torch's own (a gather by the indices) too, and every gradient is the
same as ``F.max_pool2d``'s, ties and NaNs included.

Anything else goes to ``F.max_pool2d``: channels-last inputs (torch's kernel is fast there), CUDA, inputs
under ``torch.func`` transforms (an ``autograd.Function`` without a vmap rule), unbatched or integer inputs,
and tensors of fewer than 2**17 or more than 2**23 values, where it measures no faster.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._torch import under_functorch

_ATEN = torch.ops.aten
# Where the corners measure faster, forward + backward on 2 cores (docs/performance.md): below 2**17 values the ten
# small ops cost more than the kernel saves (10 x 64 x 14 x 14: 0.50 against 0.37 ms); above 2**23 the passes over
# memory do (75 x 32 x 84 x 84: 99 against 92 ms); between, 1.4-2.3x faster.
_NUMEL_RANGE = (2**17, 2**23)


def _window_corners(x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    return x[..., 0:h:2, 0:w:2], x[..., 0:h:2, 1:w:2], x[..., 1:h:2, 0:w:2], x[..., 1:h:2, 1:w:2]


def _pool_with_indices(x: Tensor) -> tuple[Tensor, Tensor]:
    """Values and flat ``h * W + w`` indices of each window's first maximum (row-major) or last NaN, as torch
    returns them."""
    top_left, top_right, bottom_left, bottom_right = _window_corners(x)
    top = torch.maximum(top_left, top_right)
    bottom = torch.maximum(bottom_left, bottom_right)
    values = torch.maximum(top, bottom)
    # strict comparisons: on a tie the earlier corner wins, as in torch's kernel
    right_in_top = top_right > top_left
    right_in_bottom = bottom_right > bottom_left
    down = bottom > top
    if values.isnan().any():  # torch's kernel takes a NaN over anything, and a later NaN over an earlier one
        right_in_top |= top_right.isnan()
        right_in_bottom |= bottom_right.isnan()
        down |= bottom.isnan()
    right = right_in_top ^ (down & (right_in_top ^ right_in_bottom))
    width = x.shape[-1]
    rows = torch.arange(values.shape[-2], device=x.device)[:, None] * (2 * width)
    corner = rows + torch.arange(values.shape[-1], device=x.device) * 2  # (h2, w2), the top-left of each window
    indices = torch.add(corner, down, alpha=width)
    indices += right
    return values, indices


class _MaxPool2x2(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        values, indices = _pool_with_indices(x)
        ctx.save_for_backward(x, indices)
        return values

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        x, indices = ctx.saved_tensors
        # The input only gives the shape, and this op's derivative in it is zero: detached, the double backward
        # does not allocate that zero tensor.
        return _ATEN.max_pool2d_with_indices_backward(grad, x.detach(), [2, 2], [2, 2], [0, 0], [1, 1], False, indices)


def max_pool_2x2(x: Tensor) -> Tensor:
    """``F.max_pool2d(x, 2)``: the same values and gradients of every order, faster for NCHW on CPU."""
    if (
        x.ndim != 4
        or x.device.type != "cpu"
        or not x.is_floating_point()
        or not _NUMEL_RANGE[0] <= x.numel() <= _NUMEL_RANGE[1]
        or not x.is_contiguous()
        or under_functorch()
    ):
        return F.max_pool2d(x, 2)
    if not (torch.is_grad_enabled() and x.requires_grad):
        top_left, top_right, bottom_left, bottom_right = _window_corners(x)
        return torch.maximum(torch.maximum(top_left, top_right), torch.maximum(bottom_left, bottom_right))
    return _MaxPool2x2.apply(x)


class MaxPool2x2(nn.MaxPool2d):
    """``nn.MaxPool2d(2)`` through :func:`max_pool_2x2`."""

    def __init__(self) -> None:
        super().__init__(2)

    def forward(self, x: Tensor) -> Tensor:
        return max_pool_2x2(x)
