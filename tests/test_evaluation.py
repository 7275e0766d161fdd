"""Evaluation: the CI formula, fixed seeds, before/after adaptation."""

from __future__ import annotations

import math

import pytest
import torch

from fastadapt.algorithms import MAML, ProtoNet
from fastadapt.evaluation import evaluate, mean_ci95
from fastadapt.models import MLP
from fastadapt.tasks import SinusoidTasks


def test_mean_ci95_matches_the_formula() -> None:
    values = [0.2, 0.4, 0.9, 0.5]
    mean, ci = mean_ci95(values)
    std = torch.tensor(values, dtype=torch.float64).std(unbiased=True).item()
    assert mean == pytest.approx(0.5)
    assert ci == pytest.approx(1.96 * std / math.sqrt(4))
    assert mean_ci95([0.7]) == (0.7, 0.0)
    with pytest.raises(ValueError, match="cannot summarise zero episodes"):
        mean_ci95([])


def test_same_seed_same_result_and_adaptation_helps_on_linear_tasks() -> None:
    from fastadapt.tasks import LinearTasks

    model = MLP(1, (), 1)  # a linear model: gradient steps on the support set must lower the query error
    algorithm = MAML(model, loss="mse", inner_lr=0.02, inner_steps=1)
    params = algorithm.init_params()
    source = LinearTasks(shots=10, queries=10)
    a = evaluate(algorithm, params, source, episodes=50, seed=3, steps=20)
    b = evaluate(algorithm, params, source, episodes=50, seed=3, steps=20)
    assert a.mean == b.mean and a.per_episode == b.per_episode
    assert a.metric == "mse" and a.steps == 20 and len(a.per_episode) == 50
    assert a.mean_before_adaptation is not None
    assert a.mean < 0.5 * a.mean_before_adaptation
    assert evaluate(algorithm, params, source, episodes=50, seed=4, steps=20).mean != a.mean


def test_evaluation_leaves_parameters_untouched_and_keeps_no_graph() -> None:
    model = MLP(1, (8,), 1)
    algorithm = MAML(model, loss="mse", inner_lr=0.01)
    params = {k: v.requires_grad_() for k, v in algorithm.init_params().items()}
    before = {k: v.clone() for k, v in params.items()}
    evaluate(algorithm, params, SinusoidTasks(), episodes=3)
    assert all(torch.equal(before[k], params[k]) for k in params)
    assert all(p.grad is None for p in params.values())


def test_protonet_has_no_before_adaptation_score() -> None:
    from fastadapt.data import DIGITS_SPLIT, load_digits_pool
    from fastadapt.models import Conv4
    from fastadapt.tasks import EpisodeSampler

    model = Conv4(1, 3, image_size=8, hidden=4, pooled_blocks=3)
    algorithm = ProtoNet(model, ways=3)
    sampler = EpisodeSampler(load_digits_pool(), DIGITS_SPLIT.test, 3, 1, 5)
    result = evaluate(algorithm, algorithm.init_params(), sampler, episodes=5, labels={"dataset": "digits", "ways": 3})
    assert result.mean_before_adaptation is None and result.ci95_before_adaptation is None
    assert result.metric == "accuracy" and result.dataset == "digits" and result.ways == 3
    with pytest.raises(ValueError, match="episodes must be >= 1, got 0"):
        evaluate(algorithm, algorithm.init_params(), sampler, episodes=0)
