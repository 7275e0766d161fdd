"""Plain ``nn.Module`` backbones. Every model has a ``body`` (features) and a linear ``head``; none of
them knows about meta-learning."""

from __future__ import annotations

from ._conv4 import Conv4 as Conv4
from ._melu import FeatureEmbedding as FeatureEmbedding
from ._melu import MeLU as MeLU
from ._mlp import MLP as MLP
from ._norm import BatchNorm as BatchNorm
from ._pool import MaxPool2x2 as MaxPool2x2
from ._pool import max_pool_2x2 as max_pool_2x2
from ._resnet12 import DropBlock as DropBlock
from ._resnet12 import ResNet12 as ResNet12
