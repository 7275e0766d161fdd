"""Strategies for batching the tasks of a meta-batch; all compute the same meta-gradient.

- ``loop``: one task at a time; each task's graph is freed after its backward, so memory is one task's.
- ``vmap``: all tasks at once with ``torch.func.vmap``.
- ``chunked``: ``vmap`` over chunks of ``chunk_size`` tasks, gradients accumulated.

Which is fastest depends on the model and the device and is measured by
``benchmarks/meta_throughput.py``; :func:`default_strategy` holds its verdicts.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor, nn

from ..tasks import TaskBatch
from ..typing import Params
from ._protocol import Algorithm

STRATEGIES = ("loop", "vmap", "chunked")


def default_strategy(model: nn.Module, device: torch.device | str) -> str:
    """The fastest strategy measured by ``benchmarks/meta_throughput.py`` for this kind of model.

    On a 2-core CPU the per-task loop wins for convolutional networks (vmap's batched activations
    overflow the caches); vmap wins for MLPs; on GPUs vmap fills the device.
    """
    if torch.device(device).type != "cpu":
        return "vmap"
    has_conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
    return "loop" if has_conv else "vmap"


def meta_gradient(
    algorithm: Algorithm,
    params: Params,
    batch: TaskBatch,
    strategy: str = "loop",
    chunk_size: int = 8,
    scale: float | None = None,
) -> tuple[Params, Tensor]:
    """The gradient of the mean task objective over ``batch`` with respect to ``params``.

    Args:
        params: meta-parameters; leaves with ``requires_grad=True``.
        strategy: one of :data:`STRATEGIES`.
        scale: what to divide the summed objectives by (default: ``len(batch)``); a distributed run
            passes the global meta-batch size so that summing shards gives the global mean.

    Returns:
        ``(grads, stats)``: a gradient per parameter (zeros for parameters the objective ignores) and
        the per-task ``[query loss, metric]`` rows, ``(T, 2)``.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown batching strategy {strategy!r}; choose one of {STRATEGIES}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    divisor = float(len(batch) if scale is None else scale)
    names = list(params)
    leaves = [params[k] for k in names]
    totals = [torch.zeros_like(p) for p in leaves]
    stats: list[Tensor] = []

    def accumulate(objective: Tensor) -> None:
        grads = torch.autograd.grad(objective / divisor, leaves, allow_unused=True)
        for total, g in zip(totals, grads, strict=True):
            if g is not None:
                total.add_(g)

    if strategy == "loop":
        for task in batch:
            objective, task_stats = algorithm.objective(params, *task.tensors())
            accumulate(objective)
            stats.append(task_stats.unsqueeze(0))
    else:
        size = len(batch) if strategy == "vmap" else chunk_size
        batched = torch.func.vmap(partial(algorithm.objective, params))
        for chunk in batch.chunks(size):
            objectives, chunk_stats = batched(*chunk.tensors())  # (t,), (t, 2)
            accumulate(objectives.sum())
            stats.append(chunk_stats)
    return dict(zip(names, totals, strict=True)), torch.cat(stats)
