"""Strategies for batching the tasks of a meta-batch; all compute the same meta-gradient.

- ``loop``: one task at a time; each task's graph is freed after its backward, so memory is one task's.
- ``vmap``: all tasks at once with ``torch.func.vmap``.
- ``chunked``: ``vmap`` over chunks of ``chunk_size`` tasks, gradients accumulated.

Which is fastest depends on the model and the device and is measured by
``benchmarks/meta_throughput.py``; :func:`default_strategy` holds its verdicts.

``vmap`` and ``chunked`` are refused for an algorithm that differentiates twice through torch's native
batch, instance or layer norm kernels (``NATIVE_NORMS``): on torch 2.13, ``torch.func.grad`` under ``vmap``
through them gives wrong second-order gradients (off by 5e-4 to 3e-2 in float64 for a one-step MAML; first order
is right). ``fastadapt.models.BatchNorm`` computes the
same function from primitive ops under ``torch.func`` and is safe with every strategy.
"""

from __future__ import annotations

from functools import partial
from typing import Literal

import torch
from torch import Tensor, nn

from ..tasks import TaskBatch
from ..typing import Params
from ._functional import CHECKPOINT_UNDER_VMAP, native_norms
from ._protocol import Algorithm

Strategy = Literal["loop", "vmap", "chunked"]
STRATEGIES: tuple[Strategy, ...] = ("loop", "vmap", "chunked")


def vmap_hazard(algorithm: Algorithm) -> str | None:
    """Why ``vmap`` must not batch ``algorithm``'s meta-gradient, or ``None`` when it may."""
    if getattr(algorithm, "checkpoint_inner", False):
        return CHECKPOINT_UNDER_VMAP
    module = getattr(algorithm, "second_order", None)
    norms = native_norms(module) if isinstance(module, nn.Module) else []
    if not norms:
        return None
    return (
        f"{getattr(algorithm, 'name', type(algorithm).__name__)} differentiates twice through torch's native "
        f"normalisation ({', '.join(norms[:3])}), where torch.func.vmap gives wrong second-order gradients; use "
        "training.strategy=loop, algorithm.first_order=true, or fastadapt.models.BatchNorm in the model"
    )


def default_strategy(model: nn.Module, device: torch.device | str, algorithm: Algorithm | None = None) -> str:
    """The fastest strategy measured by ``benchmarks/meta_throughput.py`` for this kind of model.

    On a 2-core CPU the per-task loop wins for convolutional networks (vmap's batched activations
    overflow the caches); vmap wins for MLPs; on GPUs vmap fills the device. ``loop`` wherever
    :func:`vmap_hazard` says vmap would be wrong for ``algorithm``.
    """
    if algorithm is not None and vmap_hazard(algorithm) is not None:
        return "loop"
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
    hazard = vmap_hazard(algorithm) if strategy != "loop" else None
    if hazard is not None:
        raise ValueError(f"strategy {strategy!r} refused: {hazard}")
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
        # randomness="different": a user model's dropout draws its own mask for each task, as in the loop.
        batched = torch.func.vmap(partial(algorithm.objective, params), randomness="different")
        for chunk in batch.chunks(size):
            objectives, chunk_stats = batched(*chunk.tensors())  # (t,), (t, 2)
            accumulate(objectives.sum())
            stats.append(chunk_stats)
    return dict(zip(names, totals, strict=True)), torch.cat(stats)
