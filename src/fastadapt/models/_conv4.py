"""Conv4: the four-block convolutional network of Vinyals et al. 2016 (arXiv:1606.04080), used by
MAML, ProtoNets, Meta-SGD and Reptile on Omniglot."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .._torch import under_functorch
from ._activations import activation, pool
from ._norm import BatchNorm


class _ChannelsLastConv2d(nn.Conv2d):
    """A ``Conv2d`` whose output is in ``channels_last`` memory format, so that every later layer runs in it (a
    one-channel input is both formats at once, and torch then keeps NCHW). Same parameters and function."""

    def forward(self, x: Tensor) -> Tensor:
        out = super().forward(x)
        return out if under_functorch() else out.contiguous(memory_format=torch.channels_last)


class Conv4(nn.Module):
    """Four blocks of [3x3 conv (padding 1), batch-norm without running statistics, activation, 2x2
    pooling], then a linear ``head`` over the flattened features. (With max-pooling the block runs
    pooling before the activation: the same function, as every activation offered is non-decreasing.)

    Args:
        in_channels: image channels (1 for Omniglot).
        out_features: classes (N of N-way).
        image_size: input height = width (28 for Omniglot, 8 for digits).
        hidden: filters per block (64 in the papers; MAML's mini-ImageNet model has 32), or four widths, one per
            block.
        pooled_blocks: how many of the 4 blocks pool (small images run out of pixels: 8x8 digits use 3).
        act: activation name; pool_kind: "max" or "avg" ("tanh" + "avg" give a smooth twin for
            finite-difference checks).
        channels_last: run the blocks in ``channels_last`` memory format (the same function, the same parameter
            names): on CPU torch's max-pooling and its backward are several times faster there
            (docs/performance.md); outside ``torch.func`` transforms only (under ``vmap`` it is a no-op).

    Input ``(n, in_channels, image_size, image_size)``; output ``(n, out_features)``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_features: int = 5,
        image_size: int = 28,
        hidden: int | Sequence[int] = 64,
        pooled_blocks: int = 4,
        act: str = "relu",
        pool_kind: str = "max",
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        if not 0 <= pooled_blocks <= 4:
            raise ValueError(f"pooled_blocks must be in 0..4, got {pooled_blocks}")
        widths = [hidden] * 4 if isinstance(hidden, int) else list(hidden)
        if len(widths) != 4:
            raise ValueError(f"Conv4 has four blocks; got widths {widths}")
        blocks: list[nn.Module] = []
        size, channels = image_size, in_channels
        for i, width in enumerate(widths):
            conv = _ChannelsLastConv2d if channels_last and i == 0 else nn.Conv2d
            blocks += [conv(channels, width, 3, padding=1), BatchNorm(width)]
            if i < pooled_blocks:
                # Max-pooling commutes with any non-decreasing activation, so pooling first gives the
                # same function and gradients while the activation touches a quarter of the values.
                pair = [pool(pool_kind), activation(act)] if pool_kind == "max" else [activation(act), pool(pool_kind)]
                blocks += pair
                size //= 2
            else:
                blocks.append(activation(act))
            channels = width
        if size < 1:
            raise ValueError(
                f"image_size={image_size} is too small for {pooled_blocks} pooling blocks; lower pooled_blocks"
            )
        self.body = nn.Sequential(*blocks, nn.Flatten())
        self.feature_dim = channels * size * size
        self.head = nn.Linear(self.feature_dim, out_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))  # (n, out_features)
