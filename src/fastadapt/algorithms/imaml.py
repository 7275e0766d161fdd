"""Implicit MAML (Rajeswaran et al. 2019, arXiv:1909.04630): the meta-gradient by the implicit function theorem,
with memory that does not grow with the number of inner steps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .._torch import under_functorch
from ..typing import Params
from ._functional import forward, gradients, module_params
from ._losses import resolve_objective


def _dot(a: Params, b: Params) -> Tensor:
    return sum((a[k] * b[k]).sum() for k in a)  # type: ignore[return-value]


def conjugate_gradient(apply: Any, b: Params, steps: int) -> Params:
    """``steps`` iterations of conjugate gradient for ``apply(x) = b`` from ``x = 0``, ``apply`` symmetric positive
    definite on parameter dicts. A fixed number of iterations and no data-dependent stop, so that it runs under
    ``torch.func.vmap`` too; a residual that reaches zero stops changing ``x`` (its step is 0/0 guarded to 0)."""
    x = {k: torch.zeros_like(v) for k, v in b.items()}
    r = dict(b)
    p = dict(b)
    rr = _dot(r, r)
    for _ in range(steps):
        ap = apply(p)
        pap = _dot(p, ap)
        alpha = torch.where(pap > 0, rr / torch.where(pap > 0, pap, 1.0), 0.0)
        x = {k: x[k] + alpha * p[k] for k in x}
        r = {k: r[k] - alpha * ap[k] for k in r}
        rr_new = _dot(r, r)
        beta = torch.where(rr > 0, rr_new / torch.where(rr > 0, rr, 1.0), 0.0)
        p = {k: r[k] + beta * p[k] for k in p}
        rr = rr_new
    return x


@dataclass(frozen=True, eq=False)
class IMAML:
    """Adapts all parameters by ``inner_steps`` of gradient descent on the support loss plus the proximal term
    ``proximal / 2 * ||phi - params||^2``, keeping no graph; the meta-gradient is the implicit one,
    ``(I + H / proximal)^-1 g``, where ``g`` is the query loss's gradient at the adapted ``phi`` and ``H`` the support
    loss's Hessian there, solved by ``cg_steps`` of conjugate gradient on Hessian-vector products.

    The meta-gradient is exact when the inner problem is solved (``phi`` its minimiser) and conjugate gradient has
    converged; memory is that of one support forward and its double backward whatever ``inner_steps`` is.

    Args:
        model, loss, metric: as for :class:`~fastadapt.algorithms.MAML`.
        inner_lr: step size of the inner gradient descent.
        inner_steps: inner steps in meta-training (and evaluation, unless ``steps`` is given to ``adapt``).
        proximal: the proximal strength lambda (> 0): larger keeps ``phi`` nearer ``params``.
        cg_steps: conjugate-gradient iterations (each one Hessian-vector product).
    """

    model: nn.Module
    loss: Any = "cross_entropy"  # LossFn | str; a callable once built
    metric: Any = None  # Metric | str | None; a Metric once built
    inner_lr: float = 0.1
    inner_steps: int = 10
    proximal: float = 0.5
    cg_steps: int = 5
    name: str = "imaml"

    def __post_init__(self) -> None:
        if not self.proximal > 0:
            raise ValueError(f"proximal must be > 0, got {self.proximal}")
        if self.cg_steps < 1:
            raise ValueError(f"cg_steps must be >= 1, got {self.cg_steps}")
        resolve_objective(self)

    @property
    def second_order(self) -> nn.Module | None:
        return self.model  # Hessian-vector products through the model

    def init_params(self) -> Params:
        return module_params(self.model)

    def _support_loss(self, support_x: Tensor, support_y: Tensor) -> Any:
        def support_loss(phi: Params) -> Tensor:
            return self.loss(forward(self.model, phi, support_x), support_y)

        return support_loss

    def adapt(self, params: Params, support_x: Tensor, support_y: Tensor, steps: int | None = None) -> Params:
        """The proximally regularised inner solution, detached from ``params``."""
        anchor = {k: v.detach() for k, v in params.items()}
        support_loss = self._support_loss(support_x, support_y)
        phi = anchor
        for _ in range(self.inner_steps if steps is None else steps):
            grads = gradients(support_loss, phi, create_graph=False)
            phi = {k: v - self.inner_lr * (grads[k] + self.proximal * (v - anchor[k])) for k, v in phi.items()}
        return phi

    def predict(self, params: Params, state: Params, x: Tensor) -> Tensor:
        return forward(self.model, state, x)

    def _hvp(self, support_loss: Any, phi: Params) -> Any:
        """``v -> H v``, the support loss's Hessian at ``phi`` (one double backward per product)."""
        if under_functorch():
            # Reverse over reverse: torch.func.jvp would load torch's TorchScript decompositions, deprecated.
            grad = torch.func.grad(support_loss)
            return lambda v: torch.func.grad(lambda p: _dot(grad(p), v))(phi)
        with torch.enable_grad():
            leaves = {k: v.detach().requires_grad_() for k, v in phi.items()}
            first = torch.autograd.grad(support_loss(leaves), list(leaves.values()), create_graph=True)

        def product(v: Params) -> Params:
            out = torch.autograd.grad(first, list(leaves.values()), grad_outputs=list(v.values()), retain_graph=True)
            return {k: g.detach() for k, g in zip(leaves, out, strict=True)}

        return product

    def objective(
        self, params: Params, support_x: Tensor, support_y: Tensor, query_x: Tensor, query_y: Tensor
    ) -> tuple[Tensor, Tensor]:
        """The query loss at the adapted ``phi`` as value, with the implicit meta-gradient as its gradient with
        respect to ``params`` (``value = loss + sum(params * grad) - sum(params * grad).detach()``)."""
        phi = self.adapt(params, support_x, support_y)

        def query_loss(p: Params) -> tuple[Tensor, Tensor]:
            outputs = forward(self.model, p, query_x)
            return self.loss(outputs, query_y), outputs

        if under_functorch():
            query_grad, (loss, outputs) = torch.func.grad_and_value(query_loss, has_aux=True)(phi)
        else:
            with torch.enable_grad():
                leaves = {k: v.detach().requires_grad_() for k, v in phi.items()}
                loss, outputs = query_loss(leaves)
                raw = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
            query_grad = {
                k: torch.zeros_like(v) if g is None else g for (k, v), g in zip(phi.items(), raw, strict=True)
            }
        hvp = self._hvp(self._support_loss(support_x, support_y), phi)
        meta = conjugate_gradient(
            lambda v: {k: v[k] + h / self.proximal for k, h in hvp(v).items()},
            {k: g.detach() for k, g in query_grad.items()},
            self.cg_steps,
        )
        surrogate = _dot({k: params[k] for k in meta}, meta)  # gradient: meta (CG output, no graph)
        value = loss.detach() + surrogate - surrogate.detach()
        loss = loss.detach()
        metric = self.metric(outputs.detach(), query_y).to(loss.dtype)
        return value, torch.stack([loss, metric])
