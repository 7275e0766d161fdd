"""The hypernetwork: generated shapes, gradients through the generator (float64 gradcheck), one-pass adaptation
at k = 0, its untrained behaviour, batching, and that it learns."""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable
from functools import partial

import pytest
import torch
from torch import Tensor
from torch.autograd import gradcheck

from fastadapt.algorithms import HyperNet, ProtoNet, meta_gradient
from fastadapt.models import MLP, Conv4
from fastadapt.tasks import SinusoidTasks, TaskBatch
from fastadapt.training import build_experiment, resolve_config
from fastadapt.typing import Params

pytestmark = pytest.mark.usefixtures("single_thread")


def perturbed(params: Params, scale: float = 0.3) -> Params:
    """The generator's output layer starts at zero; move every tensor so that all gradients are non-trivial."""
    return {k: v + scale * torch.randn_like(v) for k, v in params.items()}


def classifier(steps: int = 0, ways: int = 3) -> HyperNet:
    return HyperNet(
        MLP(4, (6,), ways, act="tanh").double(), ways=ways, inner_lr=0.3, inner_steps=steps, generator_width=5
    )


def regressor(steps: int = 0) -> HyperNet:
    model = MLP(1, (5, 4), 1, act="tanh").double()
    return HyperNet(model, inner_lr=0.05, inner_steps=steps, task_dim=3, generator_width=6)


def test_generated_shapes(make_batch: Callable[..., TaskBatch]) -> None:
    conv = Conv4(1, 5, image_size=8, hidden=4, pooled_blocks=3).double()
    algorithm = HyperNet(conv, ways=5)
    task = make_batch(1, 5, 2, 3, (1, 8, 8))[0]
    head = algorithm.adapt(algorithm.init_params(), task.support_x, task.support_y)
    assert {k: tuple(v.shape) for k, v in head.items()} == {"weight": (5, conv.feature_dim), "bias": (5,)}
    assert algorithm.predict(algorithm.init_params(), head, task.query_x).shape == (15, 5)

    net = regressor()
    task = make_batch(1, 1, 7, 4, (1,), regression=True)[0]
    weights = net.adapt(net.init_params(), task.support_x, task.support_y)
    assert {k: v.shape for k, v in weights.items()} == {k: v.shape for k, v in net.model.named_parameters()}
    assert net.predict(net.init_params(), weights, task.query_x).shape == (4, 1)


def test_meta_parameters_are_the_generator_and_the_encoder() -> None:
    assert {k.split(".")[0] for k in classifier().init_params()} == {"body", "generator"}
    assert {k.split(".")[0] for k in regressor().init_params()} == {"encoder", "generator"}


@pytest.mark.parametrize("make", [classifier, regressor], ids=["classification", "regression"])
def test_gradcheck_through_the_generator(make: Callable[[int], HyperNet], make_batch: Callable[..., TaskBatch]) -> None:
    """The generated weights as a function of every meta-parameter, against finite differences."""
    algorithm = make(0)
    params = perturbed(algorithm.init_params())
    regression = not algorithm.classifies
    task = make_batch(1, 3, 2, 2, (1,) if regression else (4,), regression=regression)[0]
    keys = list(params)

    def generated(*tensors: Tensor) -> tuple[Tensor, ...]:
        out = algorithm.generate(dict(zip(keys, tensors, strict=True)), task.support_x, task.support_y)
        return tuple(out.values())

    inputs = tuple(params[k].detach().clone().requires_grad_() for k in keys)
    assert gradcheck(generated, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("make", [classifier, regressor], ids=["classification", "regression"])
@pytest.mark.parametrize("strategy", ["loop", "vmap"])
def test_gradcheck_meta_objective_through_one_refinement_step(
    make: Callable[[int], HyperNet], strategy: str, make_batch: Callable[..., TaskBatch]
) -> None:
    """k = 1: second-order terms through the refinement step from the generated weights."""
    algorithm = make(1)
    params = perturbed(algorithm.init_params())
    regression = not algorithm.classifies
    batch = make_batch(2, 3, 2, 2, (1,) if regression else (4,), regression=regression)
    keys = list(params)

    def objective(*tensors: Tensor) -> Tensor:
        p = dict(zip(keys, tensors, strict=True))
        if strategy == "loop":
            return torch.stack([algorithm.objective(p, *task.tensors())[0] for task in batch]).mean()
        return torch.func.vmap(partial(algorithm.objective, p))(*batch.tensors())[0].mean()

    inputs = tuple(params[k].detach().clone().requires_grad_() for k in keys)
    assert gradcheck(objective, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("make", [classifier, regressor], ids=["classification", "regression"])
def test_vmap_meta_gradient_matches_the_loop(
    make: Callable[[int], HyperNet], make_batch: Callable[..., TaskBatch]
) -> None:
    algorithm = make(2)
    params = {k: v.requires_grad_() for k, v in perturbed(algorithm.init_params()).items()}
    regression = not algorithm.classifies
    batch = make_batch(4, 3, 2, 3, (1,) if regression else (4,), regression=regression)
    expected, expected_stats = meta_gradient(algorithm, params, batch, "loop")
    grads, stats = meta_gradient(algorithm, params, batch, "vmap")
    for k in expected:
        torch.testing.assert_close(grads[k], expected[k], rtol=1e-9, atol=1e-12)
        assert float(expected[k].abs().max()) > 0, f"{k} has no gradient"
    torch.testing.assert_close(stats, expected_stats)


def test_zero_steps_adapt_is_one_forward_pass(
    monkeypatch: pytest.MonkeyPatch, make_batch: Callable[..., TaskBatch]
) -> None:
    """k = 0 takes no gradient at all (no graph through inner steps); k = 1 does, so the check can fail."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("adapt took a gradient")

    for make, regression in ((classifier, False), (regressor, True)):
        algorithm = make(0)
        params = {k: v.requires_grad_() for k, v in perturbed(algorithm.init_params()).items()}
        task = make_batch(1, 3, 2, 2, (1,) if regression else (4,), regression=regression)[0]
        with monkeypatch.context() as patch:
            patch.setattr(torch.autograd, "grad", refuse)
            patch.setattr(torch.func, "grad", refuse)
            state = algorithm.adapt(params, task.support_x, task.support_y)
            with pytest.raises(AssertionError, match="adapt took a gradient"):
                algorithm.adapt(params, task.support_x, task.support_y, steps=1)
        generated = algorithm.generate(params, task.support_x, task.support_y)
        for k in state:
            torch.testing.assert_close(state[k], generated[k], rtol=0, atol=0)
        # The meta-gradient still reaches the generator: it is one differentiable forward pass.
        loss = algorithm.objective(params, *task.tensors())[0]
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        assert all(g is not None and float(g.abs().max()) > 0 for g in grads)


def test_untrained_classifier_is_the_nearest_class_mean(make_batch: Callable[..., TaskBatch]) -> None:
    """With the generator's output layer at zero, logits are ProtoNet's plus |e|^2, a per-query constant."""
    model = MLP(4, (6,), 3, act="tanh").double()
    hyper, proto = HyperNet(model, ways=3), ProtoNet(model, ways=3)
    task = make_batch(1, 3, 2, 5, (4,))[0]
    body = proto.init_params()
    hyper_params = body | {k: v for k, v in hyper.init_params().items() if k.startswith("generator.")}
    logits = hyper.predict(hyper_params, hyper.adapt(hyper_params, task.support_x, task.support_y), task.query_x)
    reference = proto.predict(body, proto.adapt(body, task.support_x, task.support_y), task.query_x)
    embedded = proto.embed(body, task.query_x)
    torch.testing.assert_close(logits, reference + (embedded * embedded).sum(1, keepdim=True))


def test_untrained_regressor_emits_the_models_initial_weights(make_batch: Callable[..., TaskBatch]) -> None:
    algorithm = regressor()
    task = make_batch(1, 1, 5, 2, (1,), regression=True)[0]
    weights = algorithm.adapt(algorithm.init_params(), task.support_x, task.support_y)
    for k, v in algorithm.model.named_parameters():
        torch.testing.assert_close(weights[k], v.detach())
    empty = algorithm.represent(perturbed(algorithm.init_params()), task.support_x[:0], task.support_y[:0])
    assert torch.equal(empty, torch.zeros(3, dtype=torch.float64))  # an empty support set: r = 0, no NaN


def test_the_set_encoder_ignores_the_order_of_the_support_set(make_batch: Callable[..., TaskBatch]) -> None:
    for algorithm, regression in ((classifier(), False), (regressor(), True)):
        params = perturbed(algorithm.init_params())
        task = make_batch(1, 3, 3, 2, (1,) if regression else (4,), regression=regression)[0]
        order = torch.randperm(len(task.support_y))
        a = algorithm.generate(params, task.support_x, task.support_y)
        b = algorithm.generate(params, task.support_x[order], task.support_y[order])
        for k in a:
            torch.testing.assert_close(a[k], b[k])


def test_bad_construction_names_the_fix() -> None:
    with pytest.raises(ValueError, match=r"a classifying HyperNet needs ways >= 2 \(the N of N-way\), got 1"):
        HyperNet(MLP(2, (3,), 2), ways=1)
    with pytest.raises(ValueError, match=re.escape("algorithm.head='head' names no parameters of Linear")):
        HyperNet(torch.nn.Linear(2, 2), ways=2)
    net = torch.nn.Sequential(OrderedDict(body=torch.nn.Linear(2, 3), head=torch.nn.Sequential(torch.nn.Linear(3, 2))))
    with pytest.raises(ValueError, match=re.escape("generates a linear head, but algorithm.head='head' of Sequential")):
        HyperNet(net, ways=2)
    with pytest.raises(ValueError, match=r"inner_steps must be >= 0 \(0: amortised adaptation only\), got -1"):
        HyperNet(MLP(2, (3,), 2), ways=2, inner_steps=-1)
    with pytest.raises(ValueError, match="generator_width must be >= 1, got 0"):
        HyperNet(MLP(2, (3,), 2), ways=2, generator_width=0)
    conv = Conv4(1, 1, image_size=8, hidden=2, pooled_blocks=3)
    with pytest.raises(ValueError, match=r"a regression HyperNet generates every weight of an MLP .*Conv4 is not one"):
        HyperNet(conv)


def test_a_classifying_hypernet_trains_on_more_ways_than_it_tests() -> None:
    """The generator is per class, so training episodes may have more classes (as ProtoNet's)."""
    config = resolve_config("digits_hypernet", ["task.train_ways=5", "model.channels=4"])
    experiment = build_experiment(config)
    assert experiment.train_algorithm.ways == 5 and experiment.algorithm.ways == 3  # type: ignore[attr-defined]
    assert experiment.train_algorithm.init_params().keys() == experiment.algorithm.init_params().keys()
    batch = experiment.sources["train"].sample_batch(2, torch.Generator().manual_seed(0))
    params = {k: v.requires_grad_() for k, v in experiment.algorithm.init_params().items()}
    grads, stats = meta_gradient(experiment.train_algorithm, params, batch, "loop")
    assert stats.shape == (2, 2) and all(bool(torch.isfinite(g).all()) for g in grads.values())


def test_amortised_sinusoid_learns() -> None:
    """300 meta-iterations: the generated weights fit new sinusoids far better than the shared initial ones."""
    torch.manual_seed(0)
    algorithm = HyperNet(MLP(1, (40, 40), 1), inner_steps=0)
    params = {k: v.requires_grad_() for k, v in algorithm.init_params().items()}
    optimizer = torch.optim.Adam(params.values(), lr=1e-3)
    tasks, generator = SinusoidTasks(shots=10, queries=10), torch.Generator().manual_seed(0)
    test = tasks.sample_batch(200, torch.Generator().manual_seed(1))

    def test_mse() -> float:
        with torch.no_grad():
            fixed = {k: v.detach() for k, v in params.items()}
            return float(torch.func.vmap(partial(algorithm.objective, fixed))(*test.tensors())[1][:, 0].mean())

    before = test_mse()
    for _ in range(300):
        grads, _ = meta_gradient(algorithm, params, tasks.sample_batch(25, generator), "vmap")
        for k, p in params.items():
            p.grad = grads[k]
        optimizer.step()
    assert test_mse() < 0.5 * before


def test_the_generators_fast_path_is_the_mlp() -> None:
    """``_two_layers`` (plain F.linear calls) computes what ``functional_call`` on the generator module does."""
    from fastadapt.algorithms import forward, subset
    from fastadapt.algorithms.hypernet import _two_layers

    algorithm = regressor()
    params = perturbed(algorithm.init_params())
    x = torch.randn(4, 3, dtype=torch.float64)
    for prefix, module in (("encoder", algorithm._encoder), ("generator", algorithm._generator)):
        inputs = x[:, :2] if prefix == "encoder" else x
        torch.testing.assert_close(_two_layers(params, prefix, inputs), forward(module, subset(params, prefix), inputs))
