"""Functional building blocks shared by the algorithms: calling a module with a parameter dict, and gradient
descent on a parameter dict."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.utils.checkpoint
from torch import Tensor, nn
from torch.func import functional_call

from .._torch import BatchNormBase, RunningStatsNorm, under_functorch
from ..typing import LossFn, Params

#: torch's own normalisation layers whose kernels give wrong second-order gradients under ``vmap`` (torch 2.13,
#: float64, one MAML step through a small MLP: batch norm 7e-4, layer norm 5e-4, instance norm 3e-2 off the loop's;
#: group norm agrees to 4e-16 and is not listed).
NATIVE_NORMS: tuple[type[nn.Module], ...] = (RunningStatsNorm, nn.LayerNorm)


def _no_running_statistics(module: nn.Module) -> dict[str, None]:
    """``None`` for every running-statistics buffer of the batch-norm layers in ``module``.

    Passed to ``functional_call``, a stock ``nn.BatchNorm*d`` then normalises by the statistics of the batch it
    sees, in train and eval mode alike (its forward uses batch statistics when there are no running ones), and
    the module's own ``running_mean`` / ``running_var`` / ``num_batches_tracked`` are never touched: adaptation
    on one task must not leak into the next, and vmap cannot write a batched statistic into a shared buffer.
    Found anew on every call (a walk over the sub-modules, microseconds), so a swapped layer is never missed.
    Instance norms are left alone: they normalise each example by itself, and one built with
    ``track_running_stats=True`` needs its buffers in eval mode.
    """
    return {
        f"{name}.{buffer}" if name else buffer: None
        for name, sub in module.named_modules()
        if isinstance(sub, BatchNormBase)
        for buffer in ("running_mean", "running_var", "num_batches_tracked")
        if getattr(sub, buffer, None) is not None
    }


def forward(module: nn.Module, params: Params, x: Tensor) -> Tensor:
    """``module(x)`` with ``params`` in place of the module's own parameters.

    Batch-norm layers use the statistics of ``x`` (transductive, as MAML's reference code); their running
    statistics are neither read nor written. Parameters missing from ``params`` are the module's own.
    """
    statistics = _no_running_statistics(module)
    values = params | statistics if statistics else params
    return functional_call(module, values, (x,))  # type: ignore[arg-type, no-any-return]


def native_norms(module: nn.Module) -> list[str]:
    """The names of ``module``'s sub-modules that run torch's native normalisation kernels."""
    return [name or type(module).__name__ for name, sub in module.named_modules() if isinstance(sub, NATIVE_NORMS)]


def subset(params: Params, prefix: str) -> Params:
    """The entries under ``prefix.``, with the prefix removed (for calling a sub-module)."""
    start = prefix + "."
    return {k[len(start) :]: v for k, v in params.items() if k.startswith(start)}


def module_params(module: nn.Module, prefix: str = "") -> Params:
    """Detached copies of a module's parameters, optionally under ``prefix.``."""
    lead = prefix + "." if prefix else ""
    return {lead + k: v.detach().clone() for k, v in module.named_parameters()}


def gradients(loss_fn: Callable[[Params], Tensor], params: Params, create_graph: bool) -> Params:
    """``d loss_fn / d params``; differentiable again if ``create_graph``.

    Outside ``torch.func`` transforms it uses ``torch.autograd.grad``, measured ~15 % faster per task
    on Conv4 than ``torch.func.grad``; under ``vmap`` it must use ``torch.func.grad``. Parameters that do
    not require grad (evaluation, first-order steps) are differentiated as fresh leaves.
    """
    if under_functorch():
        return torch.func.grad(loss_fn)(params)  # type: ignore[no-any-return]
    with torch.enable_grad():
        leaves = {k: v if v.requires_grad else v.detach().requires_grad_() for k, v in params.items()}
        loss = loss_fn(leaves)
        grads = torch.autograd.grad(loss, list(leaves.values()), create_graph=create_graph, allow_unused=True)
    return {k: torch.zeros_like(v) if g is None else g for (k, v), g in zip(leaves.items(), grads, strict=True)}


def gradient_descent(
    loss_fn: Callable[[Params], Tensor],
    params: Params,
    lr: float | Params,
    steps: int,
    first_order: bool,
    checkpoint: bool = False,
) -> Params:
    """``steps`` of plain gradient descent on ``loss_fn`` starting from ``params``.

    The result stays differentiable with respect to ``params`` (and ``lr`` if it is a dict of tensors,
    as in Meta-SGD): second-order MAML differentiates through the inner gradients. ``first_order``
    takes the inner gradient at detached parameters, so the outer gradient flows only through the
    identity path (FOMAML, arXiv:1703.03400 section 5.2).

    Args:
        lr: one learning rate, or one tensor per parameter (same keys as ``params``).
        checkpoint: keep only each step's output weights, not its graph, and recompute the step in the backward
            pass (``torch.utils.checkpoint``, non-reentrant, which supports the gradient taken inside the step):
            second-order memory then stays about one step's whatever ``steps`` is, for about one more support
            forward and backward per step. Not under ``torch.func`` transforms (use the loop strategy).
    """

    def step(fast: Params) -> Params:
        at = {k: v.detach() for k, v in fast.items()} if first_order else fast
        grads = gradients(loss_fn, at, create_graph=not first_order and torch.is_grad_enabled())
        if isinstance(lr, dict):
            return {k: v - lr[k] * grads[k] for k, v in fast.items()}
        return {k: v - lr * grads[k] for k, v in fast.items()}

    recompute = checkpoint and not first_order and torch.is_grad_enabled()
    if recompute and under_functorch():
        raise ValueError(CHECKPOINT_UNDER_VMAP)
    fast = params
    names = list(params)
    for _ in range(steps):
        if recompute:
            values = torch.utils.checkpoint.checkpoint(
                lambda *v: tuple(step(dict(zip(names, v, strict=True))).values()),
                *(fast[k] for k in names),
                use_reentrant=False,
            )
            fast = dict(zip(names, values, strict=True))
        else:
            fast = step(fast)
    return fast


def check_inner_checkpoint(algorithm: object) -> None:
    """Refuses ``checkpoint_inner`` with ``first_order``: a first-order inner loop keeps no graph to recompute."""
    if getattr(algorithm, "checkpoint_inner", False) and getattr(algorithm, "first_order", False):
        name = getattr(algorithm, "name", type(algorithm).__name__)
        raise ValueError(f"checkpoint_inner applies to second order; first-order {name} keeps no inner graph")


CHECKPOINT_UNDER_VMAP = (
    "algorithm.checkpoint_inner recomputes the inner steps with torch.utils.checkpoint, which does not compose "
    "with torch.func.vmap; use training.strategy=loop"
)


def class_means(features: Tensor, labels: Tensor, ways: int) -> Tensor:
    """Mean feature of each class, ``(ways, D)``, from ``features`` ``(n, D)`` and class ids ``labels`` ``(n,)``;
    a matmul with the one-hot membership matrix (a static shape, so it vmaps). A class without examples has
    the zero vector."""
    members = labels.unsqueeze(0) == torch.arange(ways, device=labels.device).unsqueeze(1)
    members = members.to(features.dtype)  # (ways, n)
    return members @ features / members.sum(1, keepdim=True).clamp_min(1.0)


def fine_tune(
    model: nn.Module,
    loss: LossFn,
    params: Params,
    support_x: Tensor,
    support_y: Tensor,
    lr: float | Params,
    steps: int,
    first_order: bool,
    checkpoint: bool = False,
) -> Params:
    """``steps`` of gradient descent on the whole model's support loss (MAML, Meta-SGD, Reptile)."""

    def support_loss(p: Params) -> Tensor:
        return loss(forward(model, p, support_x), support_y)

    return gradient_descent(support_loss, params, lr, steps, first_order, checkpoint)
