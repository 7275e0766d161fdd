"""Every batching strategy computes the same meta-gradient as a plain per-task loop."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from fastadapt.algorithms import (
    ANIL,
    MAML,
    STRATEGIES,
    Algorithm,
    HyperNet,
    MetaSGD,
    ProtoNet,
    Reptile,
    default_strategy,
    meta_gradient,
)
from fastadapt.models import MLP, Conv4
from fastadapt.tasks import TaskBatch
from fastadapt.typing import Params

pytestmark = pytest.mark.usefixtures("single_thread")

WAYS, TASKS, CHUNK = 3, 5, 2  # CHUNK does not divide TASKS: the last chunk is short

ALGORITHMS: dict[str, Callable[[nn.Module], Algorithm]] = {
    "maml-1": lambda m: MAML(m, inner_lr=0.4, inner_steps=1),
    "maml-5": lambda m: MAML(m, inner_lr=0.4, inner_steps=5),
    "fomaml-3": lambda m: MAML(m, inner_lr=0.4, inner_steps=3, first_order=True, name="fomaml"),
    "metasgd-2": lambda m: MetaSGD(m, inner_lr=0.3, inner_steps=2),
    "anil-5": lambda m: ANIL(m, inner_lr=0.4, inner_steps=5),
    "protonet": lambda m: ProtoNet(m, ways=WAYS),
    "reptile-3": lambda m: Reptile(m, inner_lr=0.1, inner_steps=3),
    "hypernet-0": lambda m: HyperNet(m, ways=WAYS, generator_width=5),
    "hypernet-2": lambda m: HyperNet(m, ways=WAYS, inner_lr=0.3, inner_steps=2, generator_width=5),
}


def mlp() -> tuple[nn.Module, tuple[int, ...]]:
    return MLP(4, (8, 6), WAYS, act="relu").double(), (4,)


def conv4() -> tuple[nn.Module, tuple[int, ...]]:
    """Batch-norm in every block: the native kernel in the loop, the primitive one under vmap."""
    return Conv4(1, WAYS, image_size=8, hidden=4, pooled_blocks=3, act="relu", pool_kind="max").double(), (1, 8, 8)


MODELS = {"mlp": mlp, "conv4": conv4}


def assert_grads_close(actual: Params, expected: Params, tol: float) -> None:
    """Relative to the largest gradient entry: a conv bias before batch-norm has an exact-zero gradient,
    so its computed value is rounding noise that no relative tolerance can judge on its own."""
    assert actual.keys() == expected.keys()
    scale = max(float(g.abs().max()) for g in expected.values())
    assert scale > 0
    for k in expected:
        torch.testing.assert_close(actual[k], expected[k], rtol=tol, atol=tol * scale, msg=lambda m, k=k: f"{k}: {m}")


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("algorithm_name", ALGORITHMS)
def test_strategies_agree_with_loop(
    model_name: str, algorithm_name: str, make_batch: Callable[..., TaskBatch], leaves: Callable[[Params], Params]
) -> None:
    model, x_shape = MODELS[model_name]()
    algorithm = ALGORITHMS[algorithm_name](model)
    params = leaves(algorithm.init_params())
    batch = make_batch(TASKS, WAYS, 1, 2, x_shape)
    expected, expected_stats = meta_gradient(algorithm, params, batch, strategy="loop")
    assert expected_stats.shape == (TASKS, 2)
    for strategy in ("vmap", "chunked"):
        grads, stats = meta_gradient(algorithm, params, batch, strategy=strategy, chunk_size=CHUNK)
        assert_grads_close(grads, expected, tol=1e-9)
        torch.testing.assert_close(stats, expected_stats, rtol=1e-9, atol=1e-12)
    assert all(p.grad is None for p in params.values()), "meta_gradient must not write .grad"


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("algorithm_name", ALGORITHMS)
def test_loop_matches_plain_autograd(
    model_name: str, algorithm_name: str, make_batch: Callable[..., TaskBatch], leaves: Callable[[Params], Params]
) -> None:
    """The reference: the mean of the per-task objectives, differentiated once by torch.autograd.grad."""
    model, x_shape = MODELS[model_name]()
    algorithm = ALGORITHMS[algorithm_name](model)
    params = leaves(algorithm.init_params())
    batch = make_batch(3, WAYS, 2, 2, x_shape)
    grads, stats = meta_gradient(algorithm, params, batch, strategy="loop")

    outcomes = [algorithm.objective(params, *task.tensors()) for task in batch]
    mean = torch.stack([objective for objective, _ in outcomes]).mean()
    expected = torch.autograd.grad(mean, list(params.values()), allow_unused=True)
    expected_grads = {
        k: torch.zeros_like(p) if g is None else g for (k, p), g in zip(params.items(), expected, strict=True)
    }
    assert_grads_close(grads, expected_grads, tol=1e-12)
    torch.testing.assert_close(stats, torch.stack([s for _, s in outcomes]), rtol=1e-12, atol=0)


def test_stats_are_query_loss_and_metric(
    make_batch: Callable[..., TaskBatch], leaves: Callable[[Params], Params]
) -> None:
    model, x_shape = mlp()
    algorithm = MAML(model, inner_lr=0.4, inner_steps=2)
    params = leaves(algorithm.init_params())
    batch = make_batch(3, WAYS, 2, 4, x_shape)
    _, stats = meta_gradient(algorithm, params, batch, strategy="vmap")
    for t, task in enumerate(batch):
        logits = algorithm.predict(params, algorithm.adapt(params, task.support_x, task.support_y), task.query_x)
        loss = nn.functional.cross_entropy(logits, task.query_y)
        accuracy = (logits.argmax(-1) == task.query_y).double().mean()
        torch.testing.assert_close(stats[t], torch.stack([loss, accuracy]).detach(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_scale_divides_the_sum(
    strategy: str, make_batch: Callable[..., TaskBatch], leaves: Callable[[Params], Params]
) -> None:
    """A distributed shard passes the global batch size: the sum of shard gradients is the global mean."""
    model, x_shape = mlp()
    algorithm = MAML(model, inner_lr=0.4, inner_steps=1)
    params = leaves(algorithm.init_params())
    batch = make_batch(4, WAYS, 1, 2, x_shape)
    whole, _ = meta_gradient(algorithm, params, batch, strategy=strategy, chunk_size=3)
    shards = [meta_gradient(algorithm, params, batch.shard(r, 2), strategy=strategy, scale=4)[0] for r in range(2)]
    assert_grads_close({k: shards[0][k] + shards[1][k] for k in whole}, whole, tol=1e-12)


def test_meta_gradient_rejects_bad_options(make_batch: Callable[..., TaskBatch]) -> None:
    model, x_shape = mlp()
    algorithm = MAML(model)
    batch = make_batch(2, WAYS, 1, 1, x_shape)
    with pytest.raises(
        ValueError, match=r"unknown batching strategy 'pmap'; choose one of \('loop', 'vmap', 'chunked'\)"
    ):
        meta_gradient(algorithm, algorithm.init_params(), batch, strategy="pmap")
    with pytest.raises(ValueError, match="chunk_size must be >= 1, got 0"):
        meta_gradient(algorithm, algorithm.init_params(), batch, strategy="chunked", chunk_size=0)


def test_default_strategy() -> None:
    assert default_strategy(conv4()[0], "cpu") == "loop"
    assert default_strategy(mlp()[0], "cpu") == "vmap"
    assert default_strategy(conv4()[0], torch.device("cuda")) == "vmap"
