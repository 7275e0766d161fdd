"""Inputs follow the model: every path moves its data to the parameters' device and floating-point type.

On the CPU, a float64 model fed float32 data gives the numbers of the same computation on data cast to float64
by hand: the recommender (per-user scores, pretraining, recommendations), the text heads (episodes, fitted heads,
meta-training) and the continual and online learners. The ``cuda`` tests (skipped without a CUDA device; run by
``benchmarks/gpu_check.sh``) train a tiny digits run on CUDA and evaluate it there as on the CPU, and check that
MAML's meta-gradient and the recommender, text-head and online paths give the CPU's numbers on CUDA.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from fastadapt.algorithms import MAML, Algorithm, ProtoNet, build_algorithm, meta_gradient, module_params
from fastadapt.evaluation import evaluate, placement, to_placement
from fastadapt.models import MLP, Conv4, MeLU
from fastadapt.online import (
    ContinualUser,
    OnlineMetaLearner,
    OnlineSettings,
    continual_users,
    from_scratch,
    prequential,
)
from fastadapt.recsys import (
    Adapted,
    MovieLens,
    RecsysConfig,
    RecsysData,
    UserTask,
    feature_layout,
    features_for,
    load_recsys_data,
    pair_features,
    pretrain,
    recommend,
    user_categories,
)
from fastadapt.tasks import EpisodeSampler, LabelledPool, SinusoidTasks, Task, TaskBatch
from fastadapt.text import FittedHead, HeadConfig, episode_methods, head_method, meta_train_head
from fastadapt.training import Trainer, build_experiment, evaluate_run, load_config, load_run, resolve_config
from fastadapt.typing import Params

pytestmark = pytest.mark.usefixtures("single_thread")

F64 = torch.float64


@pytest.fixture(scope="module")
def recsys() -> RecsysData:
    return load_recsys_data(RecsysConfig(synthetic_users=60, synthetic_items=150, seed=1), None)


@pytest.fixture
def full_float32() -> Iterator[None]:
    """CUDA in full float32: no TF32 convolutions or matmuls (the default for cuDNN on Ampere and later), whose
    10-bit mantissas would make CUDA's numbers differ from the CPU's by ~1e-3."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def on(params: Params, device: str) -> Params:
    return {k: v.to(device) for k, v in params.items()}


def melu(data: MovieLens) -> tuple[MeLU, Algorithm]:
    """A small MeLU and its local update (ANIL on the decision layers), in float32; item ids are embedded at
    random, so that no two items tie."""
    torch.manual_seed(0)
    model = MeLU(*feature_layout(data), dim=8, hidden=(16,), rating_offset=float(data.rating.mean()))
    return model, build_algorithm("anil", model, loss="mse", inner_lr=0.01, inner_steps=2)


def by_hand(algorithm: Algorithm, params: Params, task: Task) -> torch.Tensor:
    """The query outputs after adapting to the support set, with no moving or casting."""
    state = algorithm.adapt(params, task.support_x, task.support_y)
    with torch.no_grad():
        return algorithm.predict(params, state, task.query_x)


def user_scores(algorithm: Algorithm, params: Params, data: MovieLens, t: UserTask) -> tuple[np.ndarray, Task]:
    """A user's predicted ratings from :class:`Adapted` for their query items and ten others, and the same
    inputs as a float32 :class:`Task` (its query targets are unused zeros)."""
    items = np.concatenate([t.query_items, np.arange(10)])
    ratings, scores = Adapted("melu", algorithm, params, data).score(t.user, t.support_items, t.support_ratings, items)
    np.testing.assert_array_equal(ratings, scores)
    task = Task(
        pair_features(data, np.full(len(t.support_items), t.user), t.support_items),
        torch.from_numpy(t.support_ratings.astype(np.float32)).unsqueeze(1),
        pair_features(data, np.full(len(items), t.user), items),
        torch.zeros(len(items), 1),
    )
    return ratings, task


# -- the CPU: a float64 model on float32 data -------------------------------------------------------------


def test_a_float64_recommender_scores_float32_features_as_if_cast_by_hand(recsys: RecsysData) -> None:
    data, split = recsys.data, recsys.split
    model, algorithm = melu(data)
    model.double()
    params = module_params(model)
    for user_task in split.tasks["user_cold"][:3]:
        ratings, task = user_scores(algorithm, params, data, user_task)
        assert task.support_x.dtype == torch.float32 and np.isfinite(ratings).all()
        expected = by_hand(algorithm, params, task.to("cpu", F64)).squeeze(1)
        assert expected.dtype == F64
        torch.testing.assert_close(torch.from_numpy(ratings), expected)


def test_pretraining_a_float64_model_keeps_its_type(recsys: RecsysData) -> None:
    data, split = recsys.data, recsys.split
    model, _ = melu(data)
    start = module_params(model.double())
    params = pretrain(model, data, split.tasks["train"][:10], epochs=1)
    assert placement(params) == (torch.device("cpu"), F64)
    assert all(bool(torch.isfinite(v).all()) for v in params.values())
    assert any(not torch.equal(params[k], start[k]) for k in params)  # it trained


def test_a_float64_recommender_recommends_from_float32_ratings(recsys: RecsysData) -> None:
    data = recsys.data
    model, algorithm = melu(data)
    params = module_params(model.double())
    items, ratings = np.arange(5), np.array([5, 1, 4, 2, 3], dtype=np.float32)  # as read_ratings returns them
    user = user_categories(data, gender="F", age=30)
    top = recommend(algorithm, params, data, items, ratings, user, top=7)
    candidates = np.setdiff1d(np.arange(len(data.item_ids)), items)
    task = Task(
        features_for(data, user, items).double(),
        torch.from_numpy(ratings).double().unsqueeze(1),
        features_for(data, user, candidates).double(),
        torch.zeros(len(candidates), 1, dtype=F64),
    )
    predicted = by_hand(algorithm, params, task).squeeze(1)
    best = torch.argsort(-predicted, stable=True)[:7]
    assert [r.item_id for r in top] == [int(data.item_ids[candidates[i]]) for i in best]
    torch.testing.assert_close(torch.tensor([r.predicted_rating for r in top], dtype=F64), predicted[best])


def clusters(classes: int = 5, per_class: int = 8, dim: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Float32 Gaussian clusters, one per class, and their labels."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(classes, dim))
    x = centres.repeat(per_class, 0) + 0.5 * rng.normal(size=(classes * per_class, dim))
    return x.astype(np.float32), np.arange(classes).repeat(per_class)


def episodes(ways: int = 3) -> EpisodeSampler:
    x, y = clusters()
    pool = LabelledPool(torch.from_numpy(x), torch.from_numpy(y), tuple("abcde"))
    return EpisodeSampler(pool, range(5), ways=ways, shots=2, queries=3)


def text_heads(dtype: torch.dtype = F64) -> dict[str, tuple[Algorithm, Params]]:
    torch.manual_seed(0)
    protonet = ProtoNet(MLP(6, (8,), 8).to(dtype), ways=3)
    maml = MAML(MLP(6, (), 3).to(dtype), inner_lr=0.5, inner_steps=2)
    return {"protonet": (protonet, protonet.init_params()), "maml": (maml, maml.init_params())}


def test_float64_heads_classify_float32_episodes_as_if_cast_by_hand() -> None:
    source = episodes()
    heads = text_heads()
    task = source.sample(torch.Generator().manual_seed(0))
    assert task.support_x.dtype == torch.float32
    for algorithm, params in heads.values():
        probabilities = head_method(algorithm, params)(task)
        assert probabilities.dtype == F64 and probabilities.device.type == "cpu"
        assert bool(torch.isfinite(probabilities).all())
        expected = torch.softmax(by_hand(algorithm, params, task.to("cpu", F64)), -1)
        torch.testing.assert_close(probabilities, expected)
    methods = episode_methods({k: head_method(*v) for k, v in heads.items()}, baselines=("nearest-mean",))
    outputs = {name: method(task) for name, method in methods.items()}
    assert set(outputs) == {"protonet", "maml", "nearest-mean", "ensemble"}
    torch.testing.assert_close(outputs["ensemble"], (outputs["protonet"] + outputs["maml"]) / 2)


def test_a_float64_fitted_head_adapts_and_predicts_on_float32_embeddings() -> None:
    algorithm, params = text_heads()["maml"]
    head = FittedHead(algorithm, params, HeadConfig("maml", hidden=(), inner_steps=2))
    x, y = clusters(classes=3)
    sx, sy, qx = torch.from_numpy(x[::2]), torch.from_numpy(y[::2]), torch.from_numpy(x[1::2])
    probabilities = head.probabilities(head.adapt(sx, sy), qx, chunk=5)  # 12 queries: chunks of 5, 5 and 2
    assert probabilities.dtype == F64 and probabilities.shape == (len(qx), 3) and probabilities.device.type == "cpu"
    expected = torch.softmax(by_hand(algorithm, params, Task(sx.double(), sy, qx.double(), sy)), -1)
    torch.testing.assert_close(probabilities, expected)


def test_meta_training_a_head_on_float64_embeddings_casts_them_to_the_head() -> None:
    x, y = clusters()
    config = HeadConfig("protonet", hidden=(8,), ways=3, shots=2, queries=2, iterations=3, meta_batch=2)
    from_float32, from_float64 = meta_train_head(config, x, y), meta_train_head(config, x.astype(np.float64), y)
    assert placement(from_float64.params)[1] == torch.float32
    for name, value in from_float32.params.items():
        torch.testing.assert_close(from_float64.params[name], value, rtol=0, atol=0)


def regression(dtype: torch.dtype = F64) -> tuple[MAML, Params]:
    torch.manual_seed(0)
    model = MLP(1, (8,), 1, act="tanh").to(dtype)
    maml = MAML(model, loss="mse", inner_lr=0.05, inner_steps=2)
    return maml, maml.init_params()


def sinusoids(n: int = 3) -> list[Task]:
    generator = torch.Generator().manual_seed(0)
    return [SinusoidTasks(shots=4, queries=3).sample(generator) for _ in range(n)]


def test_a_float64_continual_user_learns_from_float32_examples_as_if_cast_by_hand() -> None:
    maml, params = regression()
    task = sinusoids(1)[0]
    x, y = task.support_x, task.support_y
    assert x.dtype == torch.float32
    given, cast = ContinualUser(maml, params, steps=1), ContinualUser(maml, params, steps=1)
    for i in range(3):
        given.observe(x[i : i + 1], y[i : i + 1])
        cast.observe(x[i : i + 1].double(), y[i : i + 1].double())
    out = given.predict(task.query_x)
    assert out.dtype == F64 and bool(torch.isfinite(out).all())
    torch.testing.assert_close(out, cast.predict(task.query_x.double()))
    for name, value in cast.state.items():
        torch.testing.assert_close(given.state[name], value)
    classifier = MAML(MLP(1, (4,), 3), inner_lr=0.1)  # float32: float64 inputs are cast down, class ids stay int64
    labels = ContinualUser(classifier, classifier.init_params(), steps=1)
    labels.observe(x[:2].double(), torch.tensor([0, 2]))
    assert labels.history is not None
    assert labels.history[0].dtype == torch.float32 and labels.history[1].dtype == torch.int64


def test_prequential_and_continual_users_cast_float32_streams_to_a_float64_model() -> None:
    maml, params = regression()
    tasks = sinusoids()
    run = prequential(maml, params, tasks[0].support_x, tasks[0].support_y, steps=1)
    cast = prequential(maml, params, tasks[0].support_x.double(), tasks[0].support_y.double(), steps=1)
    for learner in ("continual", "readapt", "frozen"):
        assert np.isfinite(run[learner]).all()
        np.testing.assert_allclose(run[learner], cast[learner], rtol=1e-12)
    report = continual_users(maml, params, tasks, steps=1)
    expected = continual_users(maml, params, [t.to("cpu", F64) for t in tasks], steps=1)
    for learner, value in expected.mean.items():
        assert report.mean[learner] == pytest.approx(value, rel=1e-12)


def test_the_online_learner_and_from_scratch_cast_float32_tasks_to_a_float64_model() -> None:
    maml, params = regression()
    settings = OnlineSettings(replay=4, batch=2)
    given, cast = OnlineMetaLearner(maml, params, settings), OnlineMetaLearner(maml, params, settings)
    for task in sinusoids():
        loss = given.learn(task)
        assert loss == pytest.approx(cast.learn(task.to("cpu", F64)), rel=1e-12)
    assert placement(given.params)[1] == F64 and all(t.query_x.dtype == F64 for t in given.buffer.tasks)
    for name, value in cast.params.items():
        torch.testing.assert_close(given.params[name], value)
    scratch = from_scratch(maml.model, maml.loss, maml.metric, steps=3, lr=0.01)
    task = sinusoids(1)[0]
    assert scratch(task) == pytest.approx(scratch(task.to("cpu", F64)), rel=1e-12)


def test_to_placement_casts_floats_only() -> None:
    params = {"w": torch.zeros(2, dtype=F64), "step": torch.zeros((), dtype=torch.int64)}
    assert to_placement(torch.ones(3), params).dtype == F64
    assert to_placement(torch.arange(3), params).dtype == torch.int64
    assert to_placement(torch.ones(3, dtype=torch.bool), params).dtype == torch.bool
    x = torch.ones(3)
    assert to_placement(x, {}) is x  # a parameter-free algorithm: nothing to follow


# -- CUDA ----------------------------------------------------------------------------------------------------


def on_cuda(params: Params) -> bool:
    return all(v.device.type == "cuda" for v in params.values())


@pytest.mark.cuda
@pytest.mark.parametrize("name", ["digits_protonet", "digits_maml"])
def test_a_run_trained_on_cuda_evaluates_there_as_on_the_cpu(name: str, tmp_path: Path, full_float32: None) -> None:
    overrides = [
        "model.channels=16",
        "training.iterations=6",
        "training.meta_batch_size=4",
        "training.val_every=0",
        "training.checkpoint_every=6",
        "training.log_every=6",
        "training.device=cuda",
    ]
    run_dir = tmp_path / "run"
    trainer = Trainer(build_experiment(resolve_config(name, overrides)), run_dir, progress=False)
    trainer.run()
    assert on_cuda(trainer.params)
    on_gpu = evaluate_run(run_dir, episodes=30)
    experiment, params, _ = load_run(run_dir)
    assert experiment.device.type == "cuda" and on_cuda(params)
    cpu = build_experiment(load_config(run_dir / "config.yaml", ["training.device=cpu"]))
    cfg = cpu.config
    steps = cfg.algorithm.test_steps
    source = cpu.sources[cfg.evaluation.split]
    on_cpu = evaluate(cpu.algorithm, on(params, "cpu"), source, episodes=30, seed=cfg.evaluation.seed, steps=steps)
    assert abs(on_gpu.mean - on_cpu.mean) <= 1e-4, (on_gpu.mean, on_cpu.mean)


@pytest.mark.cuda
@pytest.mark.parametrize("strategy", ["loop", "vmap"])
def test_maml_meta_gradient_on_cuda_equals_the_cpu_one(strategy: str, make_batch, full_float32: None) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = Conv4(in_channels=1, out_features=3, image_size=8, hidden=8, pooled_blocks=3).double()
    batch: TaskBatch = make_batch(4, 3, 1, 2, (1, 8, 8))
    grads = {}
    for device in ("cpu", "cuda"):
        maml = MAML(copy.deepcopy(model).to(device), inner_lr=0.4, inner_steps=2)
        params = {k: v.requires_grad_() for k, v in maml.init_params().items()}
        grads[device], _ = meta_gradient(maml, params, batch.to(device), strategy)
    assert on_cuda(grads["cuda"])
    for name, value in grads["cpu"].items():
        torch.testing.assert_close(grads["cuda"][name].cpu(), value)


@pytest.mark.cuda
def test_the_recommender_runs_on_cuda_with_the_cpu_numbers(recsys: RecsysData, full_float32: None) -> None:
    data, split = recsys.data, recsys.split
    model, algorithm = melu(data)
    params = module_params(model)
    gpu_model = copy.deepcopy(model).cuda()
    gpu_algorithm = build_algorithm("anil", gpu_model, loss="mse", inner_lr=0.01, inner_steps=2)
    for user_task in split.tasks["user_cold"][:3]:
        expected, _ = user_scores(algorithm, params, data, user_task)
        ratings, _ = user_scores(gpu_algorithm, on(params, "cuda"), data, user_task)
        np.testing.assert_allclose(ratings, expected, atol=1e-4, rtol=0)
    items, ratings = np.arange(5), np.array([5, 1, 4, 2, 3], dtype=np.float32)
    user = user_categories(data)
    top = recommend(gpu_algorithm, on(params, "cuda"), data, items, ratings, user, top=5)
    reference = recommend(algorithm, params, data, items, ratings, user, top=5)
    assert [r.item_id for r in top] == [r.item_id for r in reference]
    np.testing.assert_allclose([r.predicted_rating for r in top], [r.predicted_rating for r in reference], atol=1e-4)
    pretrained = pretrain(gpu_model, data, split.tasks["train"][:10], epochs=1)
    assert on_cuda(pretrained) and all(bool(torch.isfinite(v).all()) for v in pretrained.values())


@pytest.mark.cuda
def test_text_heads_run_on_cuda_and_return_cpu_probabilities(full_float32: None) -> None:
    task = episodes().sample(torch.Generator().manual_seed(0))
    for algorithm, params in text_heads(torch.float32).values():
        gpu = copy.deepcopy(algorithm)
        gpu.model.cuda()  # type: ignore[attr-defined]
        probabilities = head_method(gpu, on(params, "cuda"))(task)
        assert probabilities.device.type == "cpu"
        torch.testing.assert_close(probabilities, head_method(algorithm, params)(task), atol=1e-5, rtol=1e-5)
    algorithm, params = text_heads(torch.float32)["maml"]
    x, y = clusters(classes=3)
    sx, sy, qx = torch.from_numpy(x[::2]), torch.from_numpy(y[::2]), torch.from_numpy(x[1::2])
    cpu_head = FittedHead(algorithm, params, HeadConfig("maml", hidden=(), inner_steps=2))
    gpu_algorithm = copy.deepcopy(algorithm)
    gpu_algorithm.model.cuda()  # type: ignore[attr-defined]
    gpu_head = FittedHead(gpu_algorithm, on(params, "cuda"), cpu_head.config)
    state = gpu_head.adapt(sx, sy)
    assert on_cuda(state)
    probabilities = gpu_head.probabilities(state, qx, chunk=7)
    assert probabilities.device.type == "cpu"
    expected = cpu_head.probabilities(cpu_head.adapt(sx, sy), qx)
    torch.testing.assert_close(probabilities, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.cuda
def test_continual_and_online_learners_run_on_cuda_with_the_cpu_numbers(full_float32: None) -> None:
    maml, params = regression(torch.float32)
    gpu_model: nn.Module = copy.deepcopy(maml.model).cuda()
    gpu = MAML(gpu_model, loss="mse", inner_lr=0.05, inner_steps=2)
    tasks = sinusoids()
    x, y = tasks[0].support_x, tasks[0].support_y
    cpu_user, gpu_user = ContinualUser(maml, params, steps=1), ContinualUser(gpu, on(params, "cuda"), steps=1)
    for user in (cpu_user, gpu_user):
        user.observe(x, y)
    out = gpu_user.predict(tasks[0].query_x)
    assert out.device.type == "cuda" and on_cuda(gpu_user.state)
    torch.testing.assert_close(out.cpu(), cpu_user.predict(tasks[0].query_x), atol=1e-5, rtol=1e-5)
    gpu_report, cpu_report = continual_users(gpu, on(params, "cuda"), tasks, 1), continual_users(maml, params, tasks, 1)
    for learner, value in cpu_report.mean.items():
        assert gpu_report.mean[learner] == pytest.approx(value, rel=1e-4)
    settings = OnlineSettings(replay=4, batch=2)
    cpu_learner = OnlineMetaLearner(maml, params, settings)
    gpu_learner = OnlineMetaLearner(gpu, on(params, "cuda"), settings)
    for task in tasks:  # CPU tasks: the learner moves them
        assert gpu_learner.learn(task) == pytest.approx(cpu_learner.learn(task), rel=1e-4)
    assert on_cuda(gpu_learner.params) and all(t.support_x.is_cuda for t in gpu_learner.buffer.tasks)
    scratch = from_scratch(gpu_model, gpu.loss, gpu.metric, steps=3, lr=0.01)
    reference = from_scratch(maml.model, maml.loss, maml.metric, steps=3, lr=0.01)
    assert scratch(tasks[0]) == pytest.approx(reference(tasks[0]), rel=1e-4)
