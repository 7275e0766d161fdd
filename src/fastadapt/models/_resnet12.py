"""ResNet-12, the backbone of TADAM (Oreshkin et al. 2018, arXiv:1805.10123), MetaOptNet (Lee et al. 2019,
arXiv:1904.03758) and RFS (Tian et al. 2020, arXiv:2003.11539), with the DropBlock of Ghiasi et al. 2018
(arXiv:1810.12890) as MetaOptNet applies it (the last two blocks, block size 5)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._norm import BatchNorm
from ._pool import max_pool_2x2


class DropBlock(nn.Module):
    """Drops ``block_size`` x ``block_size`` squares of each feature map while training, rescaling the rest so that
    the mean activation is unchanged; the identity in eval mode or at ``rate`` 0 (Ghiasi et al. 2018,
    arXiv:1810.12890, as MetaOptNet's code applies it, with a constant rate).

    Block seeds are drawn only where a whole block fits (the top-left corners of the
    ``(H - block_size + 1) x (W - block_size + 1)`` valid positions), at the rate ``gamma`` of Ghiasi's eq. 1, so
    that about ``rate`` of the positions are dropped even on maps hardly larger than a block (the 5x5 maps of
    ResNet-12's last block on 84x84 images). Its one draw, ``torch.rand_like``, works under ``functional_call``
    and under ``torch.func.vmap(..., randomness="different")`` (a mask per task).

    Input and output ``(n, C, H, W)``.
    """

    def __init__(self, rate: float, block_size: int = 5) -> None:
        super().__init__()
        if not 0 <= rate < 1:
            raise ValueError(f"DropBlock rate must be in [0, 1), got {rate}")
        if block_size < 1:
            raise ValueError(f"DropBlock block_size must be at least 1, got {block_size}")
        self.rate, self.block_size = rate, block_size

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.rate == 0:
            return x
        h, w = x.shape[-2:]
        block = min(self.block_size, h, w)
        valid_h, valid_w = h - block + 1, w - block + 1
        # gamma: the seed rate that drops about ``rate`` of the positions once seeds grow into blocks (Ghiasi eq. 1)
        gamma = self.rate / block**2 * (h * w) / (valid_h * valid_w)
        seeds = (torch.rand_like(x[..., :valid_h, :valid_w]) < gamma).to(x.dtype)  # (n, C, valid_h, valid_w)
        # a seed at (i, j) drops rows i..i+block-1 and columns j..j+block-1: pad by block - 1, then a max-pool
        dropped = F.max_pool2d(F.pad(seeds, (block - 1,) * 4), block, stride=1)  # (n, C, H, W)
        keep = 1 - dropped
        return x * keep * (keep.numel() / keep.sum().clamp_min(1.0))


class _Block(nn.Module):
    def __init__(self, channels_in: int, channels: int, drop: float, block_size: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels, 3, padding=1, bias=False)
        self.bn1 = BatchNorm(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = BatchNorm(channels)
        self.conv3 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn3 = BatchNorm(channels)
        self.shortcut = nn.Sequential(nn.Conv2d(channels_in, channels, 1, bias=False), BatchNorm(channels))
        self.drop = DropBlock(drop, block_size)

    def forward(self, x: Tensor) -> Tensor:  # x: (n, channels_in, h, w)
        h, w = x.shape[-2:]
        if min(h, w) < 2:
            raise ValueError(
                f"a {h}x{w} feature map is too small to pool; ResNet-12 halves its input four times and needs "
                "images of at least 16x16"
            )
        out = F.leaky_relu(self.bn1(self.conv1(x)), 0.1)
        out = F.leaky_relu(self.bn2(self.conv2(out)), 0.1)
        out = self.bn3(self.conv3(out))
        out = F.leaky_relu(out + self.shortcut(x), 0.1)  # (n, channels, h, w)
        return self.drop(max_pool_2x2(out))  # (n, channels, h // 2, w // 2); DropBlock after pooling, as MetaOptNet


class ResNet12(nn.Module):
    """Four residual blocks (three 3x3 convolutions with batch norm and leaky ReLU 0.1, a 1x1 shortcut, 2x2
    max-pooling), global average pooling, and a linear ``head``. Batch norm uses batch statistics (fastadapt's
    :class:`BatchNorm`), so every algorithm and batching strategy differentiates it correctly.

    Args:
        in_channels: image channels.
        out_features: classes (N of N-way).
        widths: the blocks' widths (64, 160, 320, 640 in the papers; 12.4 M parameters).
        drop_rate: DropBlock rate in the last two blocks while training (MetaOptNet: 0.1), constant (MetaOptNet
            ramps it up over training; a schedule belongs to the training loop, not the model).
        drop_block_size: DropBlock's square side (5 in MetaOptNet).

    Input ``(n, in_channels, H, W)`` with H, W >= 16; output ``(n, out_features)``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_features: int = 5,
        widths: Sequence[int] = (64, 160, 320, 640),
        drop_rate: float = 0.0,
        drop_block_size: int = 5,
    ) -> None:
        super().__init__()
        if len(widths) != 4:
            raise ValueError(f"ResNet-12 has four blocks; got widths {list(widths)}")
        blocks: list[nn.Module] = []
        channels = in_channels
        for i, width in enumerate(widths):
            blocks.append(_Block(channels, width, drop_rate if i >= 2 else 0.0, drop_block_size))
            channels = width
        self.body = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())  # (n, widths[-1])
        self.feature_dim = channels
        self.head = nn.Linear(channels, out_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))  # (n, out_features)
