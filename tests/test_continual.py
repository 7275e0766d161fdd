"""Continual per-user adaptation: the update rule against hand-written steps, the history window, that the
prequential evaluation never peeks, aggregation, errors, and a cold-start recommender run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call

from fastadapt.algorithms import MAML, METRICS, MetaSGD, ProtoNet, build_algorithm
from fastadapt.models import MLP, MeLU
from fastadapt.online import ContinualUser, continual_users, prequential
from fastadapt.recsys import ITEM_ID_COLUMN, RecsysConfig, feature_layout, load_recsys_data, pretrain, user_task
from fastadapt.tasks import Task
from fastadapt.typing import Params

LR = 0.3


def _maml(inner_lr: float = LR, inner_steps: int = 1) -> tuple[MAML, Params]:
    model = MLP(2, (8,), 1, act="tanh").double()
    maml = MAML(model, loss="mse", inner_lr=inner_lr, inner_steps=inner_steps)
    return maml, maml.init_params()


def _step(model: torch.nn.Module, p: Params, x: Tensor, y: Tensor, lr: float | Params) -> Params:
    """One hand-written gradient step of the mean squared error of ``model`` with ``p`` on ``(x, y)``."""
    leaves = {k: v.detach().clone().requires_grad_() for k, v in p.items()}
    loss = F.mse_loss(functional_call(model, leaves, (x,)), y)
    grads = torch.autograd.grad(loss, list(leaves.values()))
    rates = lr if isinstance(lr, dict) else dict.fromkeys(p, lr)
    return {k: (v - rates[k] * g).detach() for (k, v), g in zip(leaves.items(), grads, strict=True)}


def _close(a: Params, b: Params, atol: float = 1e-10) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=0)


def _max_diff(a: Params, b: Params) -> float:
    return max(float((a[k] - b[k]).detach().abs().max()) for k in a)


def test_each_observation_steps_from_the_current_state_not_the_meta_parameters() -> None:
    maml, params = _maml()
    before = {k: v.clone() for k, v in params.items()}
    x, y = torch.randn(2, 2, dtype=torch.float64), torch.randn(2, 1, dtype=torch.float64)
    user = ContinualUser(maml, params, steps=1)
    user.observe(x[:1], y[:1])
    first = _step(maml.model, params, x[:1], y[:1], LR)
    _close(user.state, first)
    user.observe(x[1:], y[1:])
    _close(user.state, _step(maml.model, first, x, y, LR))  # a further step on [x1, x2] from the last state
    from_scratch = maml.adapt(params, x, y, steps=1)
    assert _max_diff(user.state, from_scratch) > 1e-3
    assert user.n_observed == 2
    _close(params, before, atol=0)  # the meta-parameters are never modified


def test_metasgd_steps_with_its_learned_rates() -> None:
    model = MLP(2, (8,), 1, act="tanh").double()
    metasgd = MetaSGD(model, loss="mse", inner_lr=0.1)
    params = metasgd.init_params()
    rates = {k: 0.5 * torch.rand_like(v) for k, v in MetaSGD.weights(params).items()}  # distinct per entry
    params |= {f"inner_lr.{k}": v for k, v in rates.items()}
    x, y = torch.randn(3, 2, dtype=torch.float64), torch.randn(3, 1, dtype=torch.float64)
    user = ContinualUser(metasgd, params, steps=1)
    user.observe(x, y)
    _close(user.state, _step(model, MetaSGD.weights(params), x, y, rates))


def test_window_keeps_the_most_recent_examples_in_the_loss() -> None:
    maml, params = _maml()
    x, y = torch.randn(3, 2, dtype=torch.float64), torch.randn(3, 1, dtype=torch.float64)
    user = ContinualUser(maml, params, steps=1, window=2)
    for i in range(3):
        user.observe(x[i : i + 1], y[i : i + 1])
    history = user.history
    assert history is not None
    torch.testing.assert_close(history[0], x[1:], atol=0, rtol=0)
    torch.testing.assert_close(history[1], y[1:], atol=0, rtol=0)
    assert user.n_observed == 3
    first = _step(maml.model, params, x[:1], y[:1], LR)
    second = _step(maml.model, first, x[:2], y[:2], LR)
    _close(user.state, _step(maml.model, second, x[1:], y[1:], LR))
    assert _max_diff(user.state, _step(maml.model, second, x, y, LR)) > 1e-4  # all three would differ


def test_prequential_never_uses_an_example_to_predict_itself() -> None:
    """A linear model on one-hot inputs that interpolates whatever it has seen: predicting an example it
    has already observed gives ~0 error, so a learner that peeked at example ``i`` would score ~0 there."""
    n = 5
    model = MLP(n, (), 1).double()
    maml = MAML(model, loss="mse", inner_lr=0.2, inner_steps=300)
    params = maml.init_params()
    x = torch.eye(n, dtype=torch.float64)  # example i only moves weight i (and the shared bias)
    y = torch.tensor([[2.0], [-3.0], [4.0], [-5.0], [6.0]], dtype=torch.float64)
    errors = prequential(maml, params, x, y)
    for learner in ("continual", "readapt", "frozen"):
        assert errors[learner].shape == (n,)
        assert (errors[learner] > 0.5).all(), (learner, errors[learner])
    peeking = ContinualUser(maml, params)
    for i in range(n):
        peeking.observe(x[i : i + 1], y[i : i + 1])
        assert float((peeking.predict(x[i : i + 1]) - y[i]).abs()) < 1e-6  # seen: interpolated
        with torch.no_grad():
            readapted = maml.adapt(params, x[: i + 1], y[: i + 1])
        assert float((maml.predict(params, readapted, x[i : i + 1]) - y[i]).abs()) < 1e-6
    assert (errors["frozen_seconds"] == 0).all() and errors["readapt_seconds"][1:].min() > 0


def test_prequential_classification_scores_correctness() -> None:
    model = MLP(2, (8,), 3).double()
    maml = MAML(model, inner_lr=0.5, inner_steps=2)
    params = maml.init_params()
    x, y = torch.randn(6, 2, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2])
    result = prequential(maml, params, x, y)
    frozen = (maml.predict(params, params, x).argmax(-1) == y).double().numpy()
    np.testing.assert_array_equal(result["frozen"], frozen)
    assert result["readapt"][0] == result["frozen"][0] == result["continual"][0]  # nothing seen yet
    assert set(np.unique(result["continual"])) <= {0.0, 1.0}


def test_continual_users_aggregates_by_stream_position() -> None:
    maml, params = _maml()

    def task(n_support: int, n_query: int) -> Task:
        x, y = torch.randn(n_support + n_query, 2, dtype=torch.float64), torch.randn(n_support + n_query, 1)
        y = y.double()
        return Task(x[:n_support], y[:n_support], x[n_support:], y[n_support:])

    tasks = [task(2, 1), task(3, 2)]
    report = continual_users(maml, params, tasks)
    runs = [
        prequential(maml, params, torch.cat([t.support_x, t.query_x]), torch.cat([t.support_y, t.query_y]))
        for t in tasks
    ]
    np.testing.assert_array_equal(report.counts, [2, 2, 2, 1, 1])
    for name in ("continual", "readapt", "frozen"):
        np.testing.assert_allclose(report.curves[name][:3], (runs[0][name] + runs[1][name][:3]) / 2)
        np.testing.assert_allclose(report.curves[name][3:], runs[1][name][3:])
        assert report.mean[name] == pytest.approx(np.concatenate([r[name] for r in runs]).mean())
        assert report.ci95[name] > 0
    assert report.mean_from(3)["continual"] == pytest.approx(runs[1]["continual"][3:].mean())
    summary = json.loads(json.dumps(report.summary()))
    assert summary["users"] == 2 and summary["metric"] == "absolute error" and len(summary["curves"]["frozen"]) == 5
    short = continual_users(maml, params, tasks, max_ratings=2)
    np.testing.assert_array_equal(short.counts, [2, 2])


def test_bad_inputs_raise_with_the_fix() -> None:
    maml, params = _maml()
    with pytest.raises(ValueError, match=r"^steps must be >= 0 \(or None for the algorithm's inner_steps\), got -1$"):
        ContinualUser(maml, params, steps=-1)
    with pytest.raises(ValueError, match=r"^window must be >= 1 \(or None to keep every example\), got 0$"):
        ContinualUser(maml, params, window=0)
    user = ContinualUser(maml, params)
    with pytest.raises(ValueError, match=r"^no state yet: the state is built on the first observe"):
        user.state  # noqa: B018
    x = torch.randn(3, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^x has 3 examples but y has 2; pass one target per example$"):
        user.observe(x, torch.zeros(2, 1, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^observe got no examples; pass x of shape \(n, \.\.\.\) with n >= 1$"):
        user.observe(x[:0], torch.zeros(0, 1, dtype=torch.float64))
    user.observe(x, torch.zeros(3, 1, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^x has example shape \(3,\) but earlier inputs had \(2,\)"):
        user.predict(torch.randn(1, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^lr has entries \['nope'\] but the adapted state has \['body\.1\.bias'"):
        ContinualUser(maml, params, lr={"nope": torch.ones(())}).predict(x)
    with pytest.raises(ValueError, match=r"^undefined's state after adapting to an empty support set is not finite"):
        ContinualUser(_UndefinedStart(), {}, steps=1, lr=0.1).predict(x)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^protonet has no inner_steps; pass steps="):
        ContinualUser(ProtoNet(MLP(2, (4,), 3), ways=3), {})
    with pytest.raises(ValueError, match=r"^readapt_steps must be >= 0"):
        prequential(maml, params, x, torch.zeros(3, 1, dtype=torch.float64), readapt_steps=-2)
    with pytest.raises(ValueError, match=r"^continual_users needs at least one user task$"):
        continual_users(maml, params, [])
    report = continual_users(maml, params, [Task(x[:2], torch.zeros(2, 1).double(), x[2:], torch.ones(1, 1).double())])
    with pytest.raises(ValueError, match=r"^no user has more than 3 examples; pick a smaller position$"):
        report.mean_from(3)


def test_continual_adaptation_helps_cold_users_at_a_fraction_of_readapting(single_thread: None) -> None:
    """MeLU's decision layers (ANIL, 5 local steps), pretrained on the training users. On new users' time-
    ordered ratings, one warm-started step per new rating beats no adaptation once a few ratings are in,
    and costs less than re-adapting with 5 steps from the meta-parameters after every rating."""
    config = RecsysConfig(synthetic_users=200, synthetic_items=300, seed=3, time_ordered=True)
    recsys = load_recsys_data(config, None)
    data, split = recsys.data, recsys.split
    model = MeLU(*feature_layout(data), rating_offset=float(data.rating.mean()), zero=(ITEM_ID_COLUMN,))
    params = pretrain(model, data, split.tasks["train"], epochs=5)
    melu = build_algorithm("anil", model, loss="mse", inner_lr=0.005, inner_steps=5)
    tasks = [user_task(data, t) for t in split.tasks["user_cold"][:30]]
    report = continual_users(melu, params, tasks, steps=1, max_ratings=40)
    assert report.users == 30 and report.counts[0] == 30
    late = report.mean_from(5)
    assert late["continual"] < 0.95 * late["frozen"], late
    assert report.seconds["continual"] < report.seconds["readapt"], report.seconds


class _UndefinedStart:
    """An algorithm whose state is undefined without examples (a mean over none)."""

    name, loss, metric = "undefined", F.mse_loss, METRICS["mse"]

    def adapt(self, params: dict, x: torch.Tensor, y: torch.Tensor, steps: int | None = None) -> dict:  # type: ignore[type-arg]
        return {"mean": x.sum(0) / x.shape[0]}

    def predict(self, params: dict, state: dict, x: torch.Tensor) -> torch.Tensor:  # type: ignore[type-arg]
        return x @ state["mean"].unsqueeze(1)
