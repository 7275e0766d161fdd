"""Implicit MAML against finite differences, and the inner-loop checkpointing of second-order MAML."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from fastadapt.algorithms import ANIL, IMAML, MAML, MetaSGD, conjugate_gradient, meta_gradient
from fastadapt.evaluation import evaluate
from fastadapt.models import MLP, Conv4
from fastadapt.tasks import TaskBatch
from fastadapt.training import ConfigError, Trainer, build_experiment, resolve_config
from fastadapt.typing import Params

pytestmark = pytest.mark.usefixtures("single_thread")


def flat(params: Params) -> torch.Tensor:
    return torch.cat([v.reshape(-1) for v in params.values()])


def test_conjugate_gradient_solves_a_spd_system() -> None:
    generator = torch.Generator().manual_seed(0)
    m = torch.randn(6, 6, generator=generator, dtype=torch.float64)
    a = m @ m.T + 0.5 * torch.eye(6, dtype=torch.float64)
    b = torch.randn(6, generator=generator, dtype=torch.float64)
    x = conjugate_gradient(lambda v: {"x": a @ v["x"]}, {"x": b}, steps=6)
    torch.testing.assert_close(x["x"], torch.linalg.solve(a, b), rtol=1e-9, atol=1e-9)
    # A zero right-hand side stays zero (no 0/0), so the fixed iteration count is safe.
    assert torch.equal(
        conjugate_gradient(lambda v: {"x": a @ v["x"]}, {"x": torch.zeros(6, dtype=torch.float64)}, 4)["x"],
        torch.zeros(6, dtype=torch.float64),
    )


def test_imaml_meta_gradient_matches_finite_differences(make_batch: Callable[..., TaskBatch]) -> None:
    """With the inner problem solved (many steps) and conjugate gradient exact (as many iterations as
    parameters), the implicit meta-gradient is the derivative of the query loss at the inner minimiser."""
    torch.manual_seed(0)
    model = MLP(2, (3,), 2, act="tanh").double()
    n_params = sum(p.numel() for p in model.parameters())  # 17
    algorithm = IMAML(model, inner_lr=0.4, inner_steps=150, proximal=2.0, cg_steps=n_params)
    params = {k: v.requires_grad_() for k, v in algorithm.init_params().items()}
    batch = make_batch(2, 2, 3, 3, (2,))

    def mean_query_loss(theta: Params) -> float:
        with torch.no_grad():
            losses = []
            for task in batch:
                sx, sy, qx, qy = task.tensors()
                phi = algorithm.adapt(theta, sx, sy)
                losses.append(algorithm.loss(algorithm.predict(theta, phi, qx), qy))
            return float(torch.stack(losses).mean())

    eps = 1e-5
    numeric = {}
    for name, value in params.items():
        column = torch.zeros_like(value).reshape(-1)
        for i in range(value.numel()):
            step = torch.zeros_like(value).reshape(-1)
            step[i] = eps
            up = mean_query_loss(params | {name: value.detach() + step.reshape(value.shape)})
            down = mean_query_loss(params | {name: value.detach() - step.reshape(value.shape)})
            column[i] = (up - down) / (2 * eps)
        numeric[name] = column.reshape(value.shape)
    for strategy in ("loop", "vmap"):
        grads, stats = meta_gradient(algorithm, params, batch, strategy)
        assert stats.shape == (2, 2)
        torch.testing.assert_close(flat(grads), flat(numeric), rtol=1e-5, atol=1e-7)
    # The objective's value is the query loss (the logged number), not the surrogate.
    sx, sy, qx, qy = batch[0].tensors()
    value, row = algorithm.objective(params, sx, sy, qx, qy)
    assert float(value.detach()) == pytest.approx(float(row[0]))


def test_imaml_memory_does_not_keep_the_inner_steps() -> None:
    """The objective's graph reaches the meta-parameters through the surrogate only: its size is the same
    at 1 and at 50 inner steps (the inner steps run without a graph)."""
    model = MLP(2, (4,), 2, act="tanh").double()
    sx, sy = torch.randn(6, 2, dtype=torch.float64), torch.tensor([0, 1] * 3)

    def graph_nodes(steps: int) -> int:
        algorithm = IMAML(model, inner_steps=steps)
        params = {k: v.requires_grad_() for k, v in algorithm.init_params().items()}
        value, _ = algorithm.objective(params, sx, sy, sx, sy)
        seen, stack = set(), [value.grad_fn]
        while stack:
            node = stack.pop()
            if node is None or node in seen:
                continue
            seen.add(node)
            stack.extend(next_fn for next_fn, _ in node.next_functions)
        return len(seen)

    assert graph_nodes(1) == graph_nodes(50)


def test_imaml_is_refused_bad_settings() -> None:
    model = MLP(2, (3,), 2)
    with pytest.raises(ValueError, match=r"^proximal must be > 0, got 0.0$"):
        IMAML(model, proximal=0.0)
    with pytest.raises(ValueError, match=r"^cg_steps must be >= 1, got 0$"):
        IMAML(model, cg_steps=0)


@pytest.mark.parametrize(
    "make",
    [
        lambda m: MAML(m, inner_lr=0.3, inner_steps=3, checkpoint_inner=True),
        lambda m: MetaSGD(m, inner_lr=0.3, inner_steps=3, checkpoint_inner=True),
        lambda m: ANIL(m, inner_lr=0.3, inner_steps=3, head="head", checkpoint_inner=True),
    ],
    ids=["maml", "metasgd", "anil"],
)
def test_checkpointed_inner_loop_gives_the_same_meta_gradient(
    make: Callable, make_batch: Callable[..., TaskBatch]
) -> None:
    """Recomputing each inner step in the backward pass (through batch norm, float64) changes nothing."""
    torch.manual_seed(0)
    model = Conv4(in_channels=1, out_features=2, image_size=4, hidden=2, pooled_blocks=2).double()
    checkpointed = make(model)
    plain = dataclasses.replace(checkpointed, checkpoint_inner=False)
    params = {k: v.requires_grad_() for k, v in checkpointed.init_params().items()}
    batch = make_batch(2, 2, 1, 2, (1, 4, 4))
    ours, _ = meta_gradient(checkpointed, params, batch, "loop")
    reference, _ = meta_gradient(plain, params, batch, "loop")
    torch.testing.assert_close(flat(ours), flat(reference), rtol=1e-12, atol=1e-12)
    assert flat(ours).abs().max() > 0

    def saved_tensors(algorithm: object) -> int:
        """Tensors the objective's graph keeps for the backward pass (those inside a checkpoint are not kept)."""
        count = 0

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            nonlocal count
            count += 1
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            algorithm.objective(params, *batch[0].tensors())  # type: ignore[attr-defined]
        return count

    assert saved_tensors(checkpointed) < saved_tensors(plain)  # ANIL: only the head steps are checkpointed


def test_checkpointed_inner_loop_refuses_vmap(make_batch: Callable[..., TaskBatch]) -> None:
    model = MLP(2, (3,), 2).double()
    algorithm = MAML(model, inner_steps=2, checkpoint_inner=True)
    params = {k: v.requires_grad_() for k, v in algorithm.init_params().items()}
    message = (
        "strategy 'vmap' refused: algorithm.checkpoint_inner recomputes the inner steps with torch.utils.checkpoint, "
        "which does not compose with torch.func.vmap; use training.strategy=loop"
    )
    with pytest.raises(ValueError, match="^" + message.replace(".", r"\.") + "$"):
        meta_gradient(algorithm, params, make_batch(2, 2, 1, 2, (2,)), "vmap")
    for cls, name in ((MAML, "maml"), (MetaSGD, "metasgd"), (ANIL, "anil")):
        with pytest.raises(
            ValueError, match=rf"^checkpoint_inner applies to second order; first-order {name} keeps no inner graph$"
        ):
            cls(model, first_order=True, checkpoint_inner=True)


def test_config_builds_imaml_and_checkpointing_and_refuses_misplaced_keys() -> None:
    experiment = build_experiment(resolve_config("digits_maml", ["algorithm.name=imaml", "algorithm.cg_steps=3"]))
    assert isinstance(experiment.algorithm, IMAML) and experiment.algorithm.cg_steps == 3
    experiment = build_experiment(resolve_config("digits_maml", ["algorithm.checkpoint_inner=true"]))
    assert experiment.algorithm.checkpoint_inner is True  # type: ignore[attr-defined]
    assert experiment.strategy == "loop"
    with pytest.raises(ConfigError, match=r"^algorithm\.proximal applies to imaml, not 'maml'; remove it$"):
        build_experiment(resolve_config("digits_maml", ["algorithm.proximal=1.0"]))
    with pytest.raises(
        ConfigError,
        match=r"^algorithm\.checkpoint_inner applies to second-order maml, anil and metasgd \(first-order and "
        r"implicit gradients keep no inner graph to save\), not 'fomaml'; remove it$",
    ):
        build_experiment(resolve_config("digits_maml", ["algorithm.name=fomaml", "algorithm.checkpoint_inner=true"]))


def test_imaml_learns_digits_above_chance(tmp_path: Path) -> None:
    """A short meta-training on the embedded digits: 3-way test accuracy well above a third."""
    config = resolve_config(
        "digits_maml",
        [
            "algorithm.name=imaml",
            "algorithm.inner_steps=5",
            "algorithm.test_steps=5",
            "model.channels=16",
            "training.iterations=30",
            "training.meta_batch_size=8",
            "training.val_every=0",
        ],
    )
    experiment = build_experiment(config)
    trainer = Trainer(experiment, tmp_path, progress=False)
    trainer.run()
    test = experiment.sources["test"]
    result = evaluate(experiment.algorithm, trainer.params, test, episodes=100, seed=1234)
    unadapted = evaluate(experiment.algorithm, trainer.params, test, episodes=100, seed=1234, steps=0)
    assert result.mean > 0.5 and unadapted.mean < 0.4, (result.mean, unadapted.mean)
