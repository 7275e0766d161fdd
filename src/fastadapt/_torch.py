"""The one place that uses private torch API, so that a torch upgrade that moves it breaks one module.

``torch._C._functorch.peek_interpreter_stack`` tells whether a ``torch.func`` transform (``vmap``, ``grad``) is
active. torch has no public way to ask, and two code paths need to: inner-loop gradients (``torch.autograd.grad``
is ~15 % faster per task on Conv4 than ``torch.func.grad`` but cannot run under ``vmap``) and the primitive
batch-norm (torch's native kernel gives wrong second-order gradients under ``vmap``). A tensor seen inside
``grad`` inside ``vmap`` is a grad wrapper around a batched tensor, so testing the tensor is not enough.

``torch.nn.modules.batchnorm._NormBase`` is the base of every batch and instance norm (``BatchNorm1d/2d/3d``,
``SyncBatchNorm``, ``InstanceNorm*``, the lazy variants) and ``_BatchNorm`` that of the batch norms alone: the
types that say "has running statistics" without listing every class.
"""

from __future__ import annotations

import torch
from torch import nn

#: The base class of torch's batch and instance norms (the modules with running-statistics buffers).
RunningStatsNorm: type[nn.Module] = nn.modules.batchnorm._NormBase
#: The base class of torch's batch norms (1d/2d/3d, SyncBatchNorm, lazy).
BatchNormBase: type[nn.Module] = nn.modules.batchnorm._BatchNorm


def under_functorch() -> bool:
    """Whether the caller runs inside a ``torch.func`` transform (``vmap``, ``grad``, ...)."""
    return torch._C._functorch.peek_interpreter_stack() is not None
