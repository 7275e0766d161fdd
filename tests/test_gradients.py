"""Meta-gradients in float64 against finite differences, a closed form, and hand-written references."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd import gradcheck
from torch.func import functional_call

from fastadapt.algorithms import ANIL, MAML, Algorithm, MetaSGD, ProtoNet, Reptile, meta_gradient
from fastadapt.models import MLP, Conv4
from fastadapt.tasks import TaskBatch
from fastadapt.typing import Params

pytestmark = pytest.mark.usefixtures("single_thread")


def meta_objective(algorithm: Algorithm, params: Params, batch: TaskBatch, strategy: str) -> Tensor:
    """The mean task objective over ``batch``, tasks one by one (``loop``) or under ``vmap``."""
    if strategy == "loop":
        return torch.stack([algorithm.objective(params, *task.tensors())[0] for task in batch]).mean()
    objectives, _ = torch.func.vmap(partial(algorithm.objective, params))(*batch.tensors())
    return objectives.mean()


def check_meta_gradient(
    algorithm: Algorithm, params: Params, batch: TaskBatch, strategy: str, wrt: Sequence[str] | None = None
) -> None:
    """``gradcheck`` of the meta-objective as a function of the flat tensors ``params[k] for k in wrt``."""
    keys = list(params) if wrt is None else list(wrt)
    inputs = tuple(params[k].detach().clone().requires_grad_() for k in keys)

    def objective(*tensors: Tensor) -> Tensor:
        return meta_objective(algorithm, params | dict(zip(keys, tensors, strict=True)), batch, strategy)

    assert gradcheck(objective, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


# --- finite differences ---------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["loop", "vmap"])
def test_maml_two_steps_gradcheck(strategy: str, make_batch: Callable[..., TaskBatch]) -> None:
    model = MLP(2, (4,), 2, act="tanh").double()
    algorithm = MAML(model, inner_lr=0.5, inner_steps=2)
    check_meta_gradient(algorithm, algorithm.init_params(), make_batch(2, 2, 2, 3, (2,)), strategy)


@pytest.mark.parametrize("strategy", ["loop", "vmap"])
def test_metasgd_learning_rate_gradcheck(strategy: str, make_batch: Callable[..., TaskBatch]) -> None:
    model = MLP(2, (3,), 2, act="tanh").double()
    algorithm = MetaSGD(model, inner_lr=0.3, inner_steps=2)
    params = algorithm.init_params()
    params = params | {k: v + 0.1 * torch.rand_like(v) for k, v in params.items() if k.startswith("inner_lr.")}
    rates = [k for k in params if k.startswith("inner_lr.")]
    assert len(rates) == 4
    check_meta_gradient(algorithm, params, make_batch(2, 2, 2, 3, (2,)), strategy, wrt=rates)


@pytest.mark.parametrize("strategy", ["loop", "vmap"])
def test_maml_conv4_smooth_twin_gradcheck(strategy: str, make_batch: Callable[..., TaskBatch]) -> None:
    """Through batch-norm: the loop path differentiates the native kernel twice, vmap the primitive one."""
    model = Conv4(in_channels=1, out_features=2, image_size=4, hidden=2, pooled_blocks=2, act="tanh", pool_kind="avg")
    algorithm = MAML(model.double(), inner_lr=0.4, inner_steps=1)
    check_meta_gradient(algorithm, algorithm.init_params(), make_batch(2, 2, 2, 2, (1, 4, 4)), strategy)


# --- closed form ----------------------------------------------------------------------------------


def test_maml_linear_regression_closed_form() -> None:
    """One inner step on ``y = w.x + b`` with MSE. With ``z = [x, 1]`` and ``theta = [w, b]``:
    ``grad L_s = 2 mean(r z)``, ``hess L_s = H = 2 mean(z z^T)``; ``theta' = theta - a grad L_s(theta)``,
    so ``d L_q(theta') / d theta = (I - a H) grad L_q(theta')``."""
    d, a = 3, 0.05
    model = MLP(d, (), 1).double()
    algorithm = MAML(model, loss="mse", inner_lr=a, inner_steps=1)
    params = {k: v.requires_grad_() for k, v in algorithm.init_params().items()}
    sx, qx = torch.randn(6, d, dtype=torch.float64), torch.randn(9, d, dtype=torch.float64)
    sy, qy = torch.randn(6, 1, dtype=torch.float64), torch.randn(9, 1, dtype=torch.float64)
    grads, stats = meta_gradient(algorithm, params, TaskBatch(sx[None], sy[None], qx[None], qy[None]))

    theta = torch.cat([params["head.weight"].detach().flatten(), params["head.bias"].detach()])  # (d + 1,)
    zs, zq = F.pad(sx, (0, 1), value=1.0), F.pad(qx, (0, 1), value=1.0)  # (n, d + 1)
    support_grad = 2 * ((zs @ theta - sy.flatten())[:, None] * zs).mean(0)
    adapted = theta - a * support_grad
    query_residual = zq @ adapted - qy.flatten()
    query_grad = 2 * (query_residual[:, None] * zq).mean(0)
    hessian = 2 * zs.T @ zs / len(zs)
    expected = (torch.eye(d + 1, dtype=torch.float64) - a * hessian) @ query_grad

    torch.testing.assert_close(grads["head.weight"].flatten(), expected[:d], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grads["head.bias"], expected[d:], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(stats[0, 0], (query_residual**2).mean(), rtol=1e-12, atol=0)
    # the second-order term matters: first-order MAML drops (I - a H)
    assert not torch.allclose(expected, query_grad, rtol=1e-3)


# --- hand-written references ----------------------------------------------------------------------


def test_fomaml_is_the_query_gradient_at_adapted_params(make_batch: Callable[..., TaskBatch]) -> None:
    model = MLP(3, (5,), 2, act="tanh").double()
    algorithm = MAML(model, inner_lr=0.3, inner_steps=3, first_order=True)
    params = {k: v.requires_grad_() for k, v in algorithm.init_params().items()}
    batch = make_batch(1, 2, 3, 4, (3,))
    task = batch[0]
    grads, _ = meta_gradient(algorithm, params, batch)

    adapted = {
        k: v.detach().requires_grad_() for k, v in algorithm.adapt(params, task.support_x, task.support_y).items()
    }
    loss = F.cross_entropy(functional_call(model, adapted, (task.query_x,)), task.query_y)
    expected = torch.autograd.grad(loss, list(adapted.values()))
    for k, g in zip(adapted, expected, strict=True):
        torch.testing.assert_close(grads[k], g, rtol=1e-12, atol=1e-14)


def sgd_by_hand(model: torch.nn.Module, params: Params, x: Tensor, y: Tensor, lr: float, steps: int) -> Params:
    """``steps`` of plain SGD on the cross-entropy of ``model`` on ``(x, y)``."""
    phi = {k: v.detach().clone() for k, v in params.items()}
    for _ in range(steps):
        leaves = [v.requires_grad_() for v in phi.values()]
        loss = F.cross_entropy(functional_call(model, phi, (x,)), y)
        phi = {
            k: (v - lr * g).detach() for (k, v), g in zip(phi.items(), torch.autograd.grad(loss, leaves), strict=True)
        }
    return phi


def test_reptile_update_is_interpolation(make_batch: Callable[..., TaskBatch]) -> None:
    model = MLP(3, (5,), 2, act="relu").double()
    lr, steps, epsilon = 0.2, 4, 0.3
    algorithm = Reptile(model, inner_lr=lr, inner_steps=steps)
    params = {k: v.requires_grad_() for k, v in algorithm.init_params().items()}
    batch = make_batch(4, 2, 3, 2, (3,))
    theta = {k: v.detach().clone() for k, v in params.items()}
    phis = [sgd_by_hand(model, theta, task.support_x, task.support_y, lr, steps) for task in batch]

    grads, _ = meta_gradient(algorithm, params, batch)
    optimiser = torch.optim.SGD(params.values(), lr=epsilon)
    for k, p in params.items():
        p.grad = grads[k]
    optimiser.step()

    for k, p in params.items():
        mean_phi = torch.stack([phi[k] for phi in phis]).mean(0)
        torch.testing.assert_close(p.detach(), theta[k] + epsilon * (mean_phi - theta[k]), rtol=1e-12, atol=1e-14)
        assert not torch.allclose(mean_phi, theta[k]), "the inner loop did not move"


def test_protonet_logits_are_negative_squared_distances() -> None:
    ways, dim = 3, 4
    model = MLP(5, (dim,), 7, act="tanh").double()
    algorithm = ProtoNet(model, ways=ways)
    params = algorithm.init_params()
    support_y = torch.tensor([2, 0, 1, 2, 0, 2])  # not class-major, uneven shots
    support_x, query_x = torch.randn(6, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)

    with torch.no_grad():
        support_e, query_e = model.body(support_x), model.body(query_x)
        prototypes = []
        for c in range(ways):
            members = [support_e[i] for i in range(len(support_y)) if support_y[i] == c]
            prototypes.append(sum(members) / len(members))
        expected = torch.empty(len(query_x), ways, dtype=torch.float64)
        for i in range(len(query_x)):
            for c in range(ways):
                expected[i, c] = -sum((query_e[i, j] - prototypes[c][j]) ** 2 for j in range(dim))

    state = algorithm.adapt(params, support_x, support_y)
    torch.testing.assert_close(state["prototypes"], torch.stack(prototypes), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(algorithm.predict(params, state, query_x), expected, rtol=1e-12, atol=1e-14)
    assert set(params) == {f"body.{k}" for k, _ in model.body.named_parameters()}


def test_anil_runs_the_body_once_per_example_set(make_batch: Callable[..., TaskBatch]) -> None:
    model = MLP(3, (6, 5), 2, act="tanh").double()
    algorithm = ANIL(model, inner_lr=0.3, inner_steps=5)
    params = {k: v.requires_grad_() for k, v in algorithm.init_params().items()}
    batch = make_batch(3, 2, 2, 3, (3,))
    calls: list[int] = []
    handle = model.body.register_forward_hook(lambda module, inputs, output: calls.append(inputs[0].shape[0]))
    try:
        algorithm.objective(params, *batch[0].tensors())
        assert calls == [4, 6], "the body ran once for the support set and once for the query set"
        calls.clear()
        meta_gradient(algorithm, params, batch, strategy="loop")
        assert len(calls) == 2 * len(batch)
    finally:
        handle.remove()


@pytest.mark.parametrize("first_order", [False, True])
def test_anil_matches_hand_written_head_only_maml(first_order: bool, make_batch: Callable[..., TaskBatch]) -> None:
    model = MLP(3, (6,), 2, act="tanh").double()
    lr, steps = 0.4, 3
    algorithm = ANIL(model, inner_lr=lr, inner_steps=steps, first_order=first_order)
    params = {k: v.requires_grad_() for k, v in algorithm.init_params().items()}
    batch = make_batch(3, 2, 2, 3, (3,))
    grads, _ = meta_gradient(algorithm, params, batch)

    # reference: the whole model runs on every step, only head.* is updated by hand-written SGD
    total = torch.zeros((), dtype=torch.float64)
    for task in batch:
        fast = dict(params)
        for _ in range(steps):
            head = {k: fast[k] for k in ("head.weight", "head.bias")}
            if first_order:
                head = {k: v.detach().requires_grad_() for k, v in head.items()}
            loss = F.cross_entropy(functional_call(model, fast | head, (task.support_x,)), task.support_y)
            head_grads = torch.autograd.grad(loss, list(head.values()), create_graph=not first_order)
            fast = fast | {k: fast[k] - lr * g for k, g in zip(head, head_grads, strict=True)}
        total = total + F.cross_entropy(functional_call(model, fast, (task.query_x,)), task.query_y)
    expected = torch.autograd.grad(total / len(batch), list(params.values()))
    for k, g in zip(params, expected, strict=True):
        torch.testing.assert_close(grads[k], g, rtol=1e-11, atol=1e-13)
