"""The algorithm registry, constructor checks, and the adapt / predict protocol."""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fastadapt.algorithms import (
    ANIL,
    MAML,
    REGISTRY,
    MetaSGD,
    ProtoNet,
    Reptile,
    build_algorithm,
    gradient_descent,
    meta_gradient,
)
from fastadapt.models import MLP
from fastadapt.tasks import TaskBatch
from fastadapt.typing import Params

pytestmark = pytest.mark.usefixtures("single_thread")

NAMES = ["anil", "fomaml", "hypernet", "imaml", "logistic", "maml", "metasgd", "protonet", "reptile", "ridge"]


def small_mlp() -> MLP:
    return MLP(3, (5,), 2, act="tanh").double()


def test_registry_has_every_algorithm() -> None:
    assert sorted(REGISTRY) == NAMES
    for entry in REGISTRY.values():
        assert "arXiv:" in entry.reference and entry.summary


@pytest.mark.parametrize("name", [n for n in NAMES if n != "ridge"])
def test_build_each_algorithm(name: str) -> None:
    options = {"ways": 2} if name in ("protonet", "hypernet", "logistic") else {}
    algorithm = build_algorithm(name, small_mlp(), **options)
    assert algorithm.name == name and algorithm.loss is F.cross_entropy and algorithm.metric.name == "accuracy"


def test_ridge_needs_a_model_with_ridge_terms() -> None:
    """Ridge regresses (its default loss is MSE) and names what a model must offer when it lacks it."""
    algorithm = build_algorithm("ridge", small_mlp())
    assert algorithm.name == "ridge" and algorithm.loss is F.mse_loss and algorithm.metric.name == "mse"
    params = algorithm.init_params()
    with pytest.raises(TypeError, match=r"algorithm ridge needs a model whose forward takes terms=True and theta="):
        algorithm.adapt(params, torch.zeros(3, 4), torch.zeros(3, 1))


def test_fomaml_is_first_order_maml() -> None:
    algorithm = build_algorithm("fomaml", small_mlp(), inner_steps=3)
    assert isinstance(algorithm, MAML) and algorithm.first_order and algorithm.inner_steps == 3
    assert not build_algorithm("maml", small_mlp()).first_order  # type: ignore[attr-defined]


def test_unknown_algorithm_names_the_choices() -> None:
    message = f"unknown algorithm 'mamal'; choose one of {NAMES}"
    with pytest.raises(ValueError, match=re.escape(message)):
        build_algorithm("mamal", small_mlp())


def test_bad_options_name_the_algorithm() -> None:
    with pytest.raises(ValueError, match=r"bad options for algorithm 'maml': .*inner_rate"):
        build_algorithm("maml", small_mlp(), inner_rate=0.1)
    with pytest.raises(ValueError, match="bad options for algorithm 'protonet'"):
        build_algorithm("protonet", small_mlp())  # ways is required


@pytest.mark.parametrize("cls", [MAML, ANIL, MetaSGD, Reptile])
def test_unknown_loss_and_metric_name_the_choices(cls: type) -> None:
    with pytest.raises(ValueError, match=re.escape("unknown loss 'ranking'; choose one of ['bce_with_logits', ")):
        cls(small_mlp(), loss="ranking")
    with pytest.raises(ValueError, match=re.escape("unknown metric 'auc'; choose one of ['accuracy', ")):
        cls(small_mlp(), metric="auc")


def test_losses_and_metrics_by_name_and_callable() -> None:
    model = small_mlp()
    assert MAML(model, loss="mse").metric.name == "mse" and not MAML(model, loss="mse").metric.higher_is_better
    assert MAML(model, loss="l1").metric.name == "mae"

    def hinge(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.multi_margin_loss(outputs, targets)

    custom = MAML(model, loss=hinge, metric="accuracy")
    assert custom.loss is hinge and custom.metric.name == "accuracy"
    assert MAML(model, loss=hinge).metric.name == "query_loss"  # no metric: the loss itself, lower is better
    assert MAML(model, loss=F.cross_entropy).metric.name == "accuracy"  # a named loss passed as a function
    x, y = torch.randn(6, 3, dtype=torch.float64), torch.tensor([0, 1, 0, 1, 1, 0])
    params = custom.init_params()
    loss, stats = custom.objective(params, x, y, x, y)
    outputs = custom.predict(params, custom.adapt(params, x, y), x)
    torch.testing.assert_close(loss, hinge(outputs, y))
    assert float(stats[1]) == float((outputs.argmax(1) == y).double().mean())


def test_structure_requirements() -> None:
    bare = nn.Linear(3, 2)
    with pytest.raises(ValueError, match=re.escape("algorithm.head='head' names no parameters of Linear")):
        ANIL(bare)
    with pytest.raises(ValueError, match=re.escape("algorithm.head='head' names no parameters of Linear")):
        ProtoNet(bare, ways=2)
    with pytest.raises(ValueError, match=re.escape("algorithm.head=['head'] covers every parameter")):
        ANIL(nn.Sequential(OrderedDict(head=nn.Linear(3, 2))))
    with pytest.raises(ValueError, match=re.escape("algorithm.head='classifier' names no parameters of MLP")):
        ANIL(small_mlp(), head="classifier")


def test_init_params_are_detached_copies() -> None:
    model = small_mlp()
    params = MAML(model).init_params()
    assert list(params) == [k for k, _ in model.named_parameters()]
    assert all(not v.requires_grad for v in params.values())
    params["head.bias"].add_(1.0)
    assert not torch.equal(params["head.bias"], model.head.bias)


def test_metasgd_params_have_a_rate_per_entry() -> None:
    model = small_mlp()
    params = MetaSGD(model, inner_lr=0.25).init_params()
    names = [k for k, _ in model.named_parameters()]
    assert list(params) == names + [f"inner_lr.{k}" for k in names]
    for k in names:
        assert params[f"inner_lr.{k}"].shape == params[k].shape
        assert torch.all(params[f"inner_lr.{k}"] == 0.25)
    assert list(MetaSGD.weights(params)) == names


def test_metasgd_with_constant_rates_is_maml(
    make_batch: Callable[..., TaskBatch], leaves: Callable[[Params], Params]
) -> None:
    model = small_mlp()
    maml, metasgd = MAML(model, inner_lr=0.3, inner_steps=2), MetaSGD(model, inner_lr=0.3, inner_steps=2)
    batch = make_batch(2, 2, 2, 2, (3,))
    weights = leaves(maml.init_params())
    maml_grads, maml_stats = meta_gradient(maml, weights, batch)
    all_params = leaves(metasgd.init_params())
    sgd_grads, sgd_stats = meta_gradient(metasgd, all_params, batch)
    for k, g in maml_grads.items():
        torch.testing.assert_close(sgd_grads[k], g, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(sgd_stats, maml_stats, rtol=1e-12, atol=0)


def test_steps_override_and_zero_steps(make_batch: Callable[..., TaskBatch]) -> None:
    model = small_mlp()
    algorithm = MAML(model, inner_lr=0.3, inner_steps=1)
    params = algorithm.init_params()
    task = make_batch(1, 2, 2, 2, (3,))[0]
    unchanged = algorithm.adapt(params, task.support_x, task.support_y, steps=0)
    assert all(torch.equal(unchanged[k], params[k]) for k in params)
    three = algorithm.adapt(params, task.support_x, task.support_y, steps=3)
    again = MAML(model, inner_lr=0.3, inner_steps=3).adapt(params, task.support_x, task.support_y)
    assert all(torch.equal(three[k], again[k]) for k in params)


def test_adaptation_lowers_the_support_loss(make_batch: Callable[..., TaskBatch]) -> None:
    model = small_mlp()
    task = make_batch(1, 2, 4, 2, (3,))[0]
    for algorithm in (MAML(model, inner_lr=0.5, inner_steps=5), ANIL(model, inner_lr=0.5, inner_steps=5)):
        params = algorithm.init_params()
        before = nn.functional.cross_entropy(model(task.support_x), task.support_y)
        state = algorithm.adapt(params, task.support_x, task.support_y)
        after = nn.functional.cross_entropy(algorithm.predict(params, state, task.support_x), task.support_y)
        assert after < before


@pytest.mark.parametrize("strategy", ["loop", "vmap"])
def test_adapt_under_no_grad_matches_training_mode(strategy: str, make_batch: Callable[..., TaskBatch]) -> None:
    """Evaluation adapts meta-parameters that do not require grad, inside torch.no_grad."""
    model = small_mlp()
    algorithm = MAML(model, inner_lr=0.3, inner_steps=3)
    batch = make_batch(2, 2, 2, 2, (3,))
    params = algorithm.init_params()
    with torch.no_grad():
        if strategy == "loop":
            adapted = [algorithm.adapt(params, t.support_x, t.support_y) for t in batch]
        else:
            stacked = torch.func.vmap(lambda sx, sy: algorithm.adapt(params, sx, sy))(batch.support_x, batch.support_y)
            adapted = [{k: v[t] for k, v in stacked.items()} for t in range(len(batch))]
    trained = [
        algorithm.adapt({k: v.requires_grad_() for k, v in algorithm.init_params().items()}, t.support_x, t.support_y)
        for t in batch
    ]
    for a, b in zip(adapted, trained, strict=True):
        for k in a:
            assert not a[k].requires_grad
            torch.testing.assert_close(a[k], b[k].detach(), rtol=1e-12, atol=1e-14)


def test_gradient_descent_on_a_quadratic() -> None:
    """``f(p) = 0.5 * sum(c * p^2)``: each step multiplies ``p`` by ``1 - lr * c``."""
    c = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    start = {"p": torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64, requires_grad=True)}
    out = gradient_descent(lambda q: 0.5 * (c * q["p"] ** 2).sum(), start, lr=0.1, steps=4, first_order=False)
    torch.testing.assert_close(out["p"], start["p"].detach() * (1 - 0.1 * c) ** 4, rtol=1e-14, atol=0)
    (grad,) = torch.autograd.grad(out["p"].sum(), start["p"])
    torch.testing.assert_close(grad, (1 - 0.1 * c) ** 4, rtol=1e-14, atol=0)
    rates = {"p": torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)}
    out = gradient_descent(lambda q: 0.5 * (c * q["p"] ** 2).sum(), start, lr=rates, steps=2, first_order=True)
    torch.testing.assert_close(out["p"], start["p"].detach() * (1 - rates["p"] * c) ** 2, rtol=1e-14, atol=0)
    (grad,) = torch.autograd.grad(out["p"].sum(), start["p"])
    torch.testing.assert_close(grad, torch.ones(3, dtype=torch.float64), rtol=0, atol=0)  # identity path only
