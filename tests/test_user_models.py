"""A user's own network: stock ``nn.BatchNorm2d``, a head named ``classifier``, its own loss. Every algorithm trains
it, second-order meta-gradients match finite differences under each strategy allowed for it (vmap is refused
where it would be wrong), adaptation never touches the running statistics, and tasks follow the model's dtype."""

from __future__ import annotations

import re
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd import gradcheck

from fastadapt.algorithms import ANIL, MAML, MetaSGD, ProtoNet, build_algorithm, meta_gradient, vmap_hazard
from fastadapt.data import DIGITS_SPLIT, load_digits_pool
from fastadapt.evaluation import evaluate
from fastadapt.tasks import EpisodeSampler, TaskBatch
from fastadapt.training import ConfigError, build_experiment, config_from_dict

pytestmark = pytest.mark.usefixtures("single_thread")

ALGORITHMS = ["maml", "fomaml", "anil", "metasgd", "protonet", "reptile"]


class UserNet(nn.Module):
    """A small CNN as a user writes one: torch's own batch norm, a head called ``classifier``."""

    def __init__(self, ways: int = 3, channels: int = 8, smooth: bool = False) -> None:
        super().__init__()
        act = nn.Tanh() if smooth else nn.ReLU()
        pool = nn.AvgPool2d(2) if smooth else nn.MaxPool2d(2)
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.BatchNorm2d(channels), act, pool, nn.Flatten()
        )
        self.classifier = nn.Linear(channels * 4 * 4, ways)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def options(name: str) -> dict[str, object]:
    if name == "protonet":
        return {"ways": 3, "head": "classifier"}
    out: dict[str, object] = {
        "inner_lr": 0.1 if name == "reptile" else 0.4,
        "inner_steps": 2 if name == "reptile" else 1,
    }
    return out | ({"head": "classifier"} if name == "anil" else {})


def buffers(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.clone() for k, v in model.named_buffers()}


@pytest.mark.parametrize("name", ALGORITHMS)
def test_every_algorithm_trains_a_user_network_with_stock_batch_norm(name: str) -> None:
    pool = load_digits_pool()
    train = EpisodeSampler(pool, DIGITS_SPLIT.train, 3, 2, 5)
    val = EpisodeSampler(pool, DIGITS_SPLIT.val, 3, 2, 5)
    model = UserNet()
    before = buffers(model)
    algorithm = build_algorithm(name, model, **options(name))
    params = {k: v.requires_grad_() for k, v in algorithm.init_params().items()}
    assert all(not k.startswith("classifier.") for k in params) == (name == "protonet")

    def val_loss() -> float:
        batch = val.sample_batch(30, torch.Generator().manual_seed(7))
        _, stats = meta_gradient(algorithm, params, batch, "loop")
        return float(stats[:, 0].mean())  # query loss after adaptation

    start = val_loss()
    optimizer = torch.optim.Adam(params.values(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(60):
        grads, _ = meta_gradient(algorithm, params, train.sample_batch(4, generator), "loop")
        for k, p in params.items():
            p.grad = grads[k]
        optimizer.step()
    assert val_loss() < 0.9 * start, (start, val_loss())
    result = evaluate(algorithm, params, val, episodes=30, seed=3)
    if name != "fomaml":  # first-order MAML's init stays near chance after 60 meta-steps here (the same with
        assert result.mean > 1 / 3 + 0.1, result.mean  # fastadapt.models.BatchNorm): above chance on held-out digits
    for key, value in buffers(model).items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0, msg=f"{key} changed")


@pytest.mark.parametrize("strategy", ["vmap", "chunked"])
@pytest.mark.parametrize("cls", [MAML, MetaSGD])
def test_vmap_is_refused_through_stock_batch_norm_at_second_order(strategy: str, cls: type) -> None:
    algorithm = cls(UserNet().double())
    batch = TaskBatch(
        torch.randn(2, 3, 1, 8, 8, dtype=torch.float64),
        torch.arange(3).expand(2, 3),
        torch.randn(2, 3, 1, 8, 8, dtype=torch.float64),
        torch.arange(3).expand(2, 3),
    )
    params = {k: v.requires_grad_() for k, v in algorithm.init_params().items()}
    message = (
        f"strategy '{strategy}' refused: {algorithm.name} differentiates twice through torch's native normalisation "
        "(features.1), where torch.func.vmap gives wrong second-order gradients; use training.strategy=loop"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        meta_gradient(algorithm, params, batch, strategy)
    assert vmap_hazard(cls(UserNet(), first_order=True)) is None  # first order through it is right
    assert vmap_hazard(ANIL(UserNet(), head="classifier")) is None  # the head has no batch norm


def smooth_batch(tasks: int = 2) -> TaskBatch:
    g = torch.Generator().manual_seed(1)
    sx, qx = (torch.randn(tasks, 6, 1, 8, 8, generator=g, dtype=torch.float64) for _ in range(2))
    labels = torch.arange(3).repeat_interleave(2).expand(tasks, 6).contiguous()
    return TaskBatch(sx, labels, qx, labels)


def check(algorithm: object, batch: TaskBatch, strategy: str) -> None:
    params = {k: v.detach() for k, v in algorithm.init_params().items()}  # type: ignore[attr-defined]
    keys = list(params)

    def objective(*tensors: Tensor) -> Tensor:
        p = dict(zip(keys, tensors, strict=True))
        if strategy == "loop":
            return torch.stack([algorithm.objective(p, *t.tensors())[0] for t in batch]).mean()  # type: ignore[attr-defined]
        return torch.func.vmap(partial(algorithm.objective, p))(*batch.tensors())[0].mean()  # type: ignore[attr-defined]

    inputs = tuple(params[k].clone().requires_grad_() for k in keys)
    assert gradcheck(objective, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize(
    ("make", "strategy"),
    [
        (lambda m: MAML(m, inner_lr=0.3, inner_steps=2), "loop"),
        (lambda m: MetaSGD(m, inner_lr=0.3), "loop"),
        (lambda m: ANIL(m, head="classifier", inner_lr=0.3, inner_steps=2), "loop"),
        (lambda m: ANIL(m, head="classifier", inner_lr=0.3, inner_steps=2), "vmap"),
    ],
    ids=["maml-loop", "metasgd-loop", "anil-loop", "anil-vmap"],
)
def test_second_order_meta_gradient_through_stock_batch_norm_matches_finite_differences(
    make: object, strategy: str
) -> None:
    """The smooth twin (tanh, average pooling) in float64: the meta-gradient is a smooth function of every
    parameter, batch norm's weight and bias included."""
    model = UserNet(channels=2, smooth=True).double()
    check(make(model), smooth_batch(), strategy)  # type: ignore[operator]


def test_anil_with_a_head_given_as_parameter_prefixes_equals_the_feature_path() -> None:
    """Two prefixes make no single sub-module: each inner step runs the whole model with the body fixed; the
    objective and its gradient are those of the cached-features path."""
    model = UserNet(channels=2, smooth=True).double()
    by_module = ANIL(model, head="classifier", inner_steps=2)
    by_prefix = ANIL(model, head=["classifier.weight", "classifier.bias"], inner_steps=2)
    assert by_module.split.module is model.classifier and by_prefix.split.module is None
    params = {k: v.requires_grad_() for k, v in by_module.init_params().items()}
    batch = smooth_batch(3)
    expected, stats_a = meta_gradient(by_module, params, batch, "loop")
    grads, stats_b = meta_gradient(by_prefix, params, batch, "loop")
    torch.testing.assert_close(stats_b, stats_a)
    for k in expected:
        torch.testing.assert_close(grads[k], expected[k], rtol=1e-9, atol=1e-12)


def test_batch_norm_uses_each_tasks_statistics_in_train_and_eval_mode() -> None:
    """Transductive batch statistics (MAML's convention), whatever the module's mode: a prediction depends on the
    other query examples, and the running statistics are neither read nor written."""
    model = UserNet(channels=4).double()
    algorithm = MAML(model, inner_steps=1)
    params = algorithm.init_params()
    task = smooth_batch(1)[0]
    state = algorithm.adapt(params, task.support_x, task.support_y)
    train_mode = algorithm.predict(params, state, task.query_x)
    model.eval()
    eval_mode = algorithm.predict(params, state, task.query_x)
    torch.testing.assert_close(eval_mode, train_mode)
    alone = algorithm.predict(params, state, task.query_x[:2])
    assert not torch.allclose(alone, train_mode[:2])  # statistics of the batch, not running ones
    assert int(model.features[1].num_batches_tracked) == 0


def test_a_custom_loss_callable_reaches_the_inner_and_outer_loop() -> None:
    calls: list[int] = []

    def smoothed(outputs: Tensor, targets: Tensor) -> Tensor:
        calls.append(len(targets))
        return F.cross_entropy(outputs, targets, label_smoothing=0.1)

    algorithm = MAML(UserNet().double(), loss=smoothed, metric="accuracy", inner_steps=2)
    params = {k: v.requires_grad_() for k, v in algorithm.init_params().items()}
    batch = smooth_batch(2)
    meta_gradient(algorithm, params, batch, "loop")
    assert calls == [6, 6, 6] * 2  # two inner steps on the support set, then the query loss, per task


def test_model_in_float64_with_data_in_float32() -> None:
    """The evaluation moves each float32 task to the parameters' dtype; class ids stay integers."""
    pool = load_digits_pool()  # float32 images
    sampler = EpisodeSampler(pool, DIGITS_SPLIT.test, 3, 1, 5)
    algorithm = ProtoNet(UserNet().double(), ways=3, head="classifier")
    result = evaluate(algorithm, algorithm.init_params(), sampler, episodes=5, seed=0)
    assert 0.0 <= result.mean <= 1.0 and result.episodes == 5
    task = sampler.sample(torch.Generator().manual_seed(0)).to("cpu", torch.float64)
    assert task.support_x.dtype == torch.float64 and task.support_y.dtype == torch.int64


def test_the_config_names_the_head_and_the_loss_and_refuses_a_wrong_strategy() -> None:
    base = {"data": {"dataset": "digits"}, "task": {"ways": 3, "shots": 1, "queries": 5}, "model": {"pooled_blocks": 3}}
    config = config_from_dict(base | {"algorithm": {"name": "anil", "head": ["head"], "loss": "cross_entropy"}})
    experiment = build_experiment(config)
    assert experiment.algorithm.split.prefixes == ("head",)  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match=re.escape("training.strategy must be one of 'auto', 'loop', 'vmap'")):
        config_from_dict(base | {"training": {"strategy": "pmap"}})
    with pytest.raises(ConfigError, match=re.escape("algorithm.head must be str or tuple")):
        config_from_dict(base | {"algorithm": {"head": 3}})
    with pytest.raises(
        ConfigError, match=re.escape("algorithm.head applies to anil, protonet, logistic and hypernet, not 'maml'")
    ):
        build_experiment(config_from_dict(base | {"algorithm": {"name": "maml", "head": "classifier"}}))
    with pytest.raises(ConfigError, match=re.escape("unknown loss 'hinge'; choose one of")):
        build_experiment(config_from_dict(base | {"algorithm": {"loss": "hinge"}}))


def test_which_norms_are_refused_under_vmap() -> None:
    """Layer and instance norm share batch norm's wrong second-order vmap gradients; group norm does not."""

    def net(norm: nn.Module) -> nn.Module:
        return nn.Sequential(nn.Linear(3, 4), norm, nn.Tanh(), nn.Linear(4, 2))

    assert vmap_hazard(MAML(net(nn.LayerNorm(4)))) is not None
    assert vmap_hazard(MAML(net(nn.BatchNorm1d(4)))) is not None
    assert vmap_hazard(MAML(net(nn.GroupNorm(2, 4)))) is None
    assert vmap_hazard(MAML(net(nn.Identity()))) is None
