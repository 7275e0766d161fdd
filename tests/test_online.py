"""Online meta-learning on a stream: test-then-train without leaks, fresh-example streams, the replay buffer,
the references, and `fastadapt stream` end to end."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import Tensor

from fastadapt.algorithms import MAML, meta_gradient
from fastadapt.cli import main
from fastadapt.evaluation import score_task
from fastadapt.models import MLP
from fastadapt.online import (
    FreshEpisodes,
    OnlineMetaLearner,
    OnlineSettings,
    ReplayBuffer,
    from_scratch,
    run_stream,
    sampled_tasks,
    stream_tasks,
    tasks_gradient,
    users_in_time_order,
)
from fastadapt.recsys import RecsysConfig, UserTask, load_recsys_data
from fastadapt.tasks import EpisodeSampler, LabelledPool, LinearTasks, Task, TaskBatch, rotations
from fastadapt.training import build_experiment, resolve_config
from fastadapt.typing import Params

pytestmark = pytest.mark.usefixtures("single_thread")


def id_pool(classes: int = 6, per_class: int = 12, dim: int = 3) -> LabelledPool:
    """Examples whose first feature is their unique id, so that a task's examples can be traced."""
    n = classes * per_class
    features = torch.cat([torch.arange(n, dtype=torch.float64).unsqueeze(1), torch.randn(n, dim - 1).double()], 1)
    labels = torch.arange(classes).repeat_interleave(per_class)
    return LabelledPool(features, labels, tuple(f"c{i}" for i in range(classes)))


class Recorder:
    """MAML that logs which example ids it trains on (``objective``) and scores (``predict`` on a query)."""

    def __init__(self, model: torch.nn.Module, ways: int) -> None:
        self.inner = MAML(model, inner_lr=0.1, inner_steps=1)
        self.name, self.inner_steps = "recorder", 1
        self.loss, self.metric = self.inner.loss, self.inner.metric
        self.events: list[tuple[str, set[int]]] = []

    def init_params(self) -> Params:
        return self.inner.init_params()

    def adapt(self, params: Params, sx: Tensor, sy: Tensor, steps: int | None = None) -> Params:
        return self.inner.adapt(params, sx, sy, steps)

    def predict(self, params: Params, state: Params, x: Tensor) -> Tensor:
        self.events.append(("score", {int(v) for v in x[:, 0].tolist()}))
        return self.inner.predict(params, state, x)

    def objective(self, params: Params, sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor) -> tuple[Tensor, Tensor]:
        self.events.append(("train", {int(v) for v in torch.cat([sx, qx])[:, 0].tolist()}))
        return self.inner.objective(params, sx, sy, qx, qy)


def leaks(events: list[tuple[str, set[int]]]) -> list[int]:
    """Ids scored after they had been trained on."""
    trained: set[int] = set()
    found: list[int] = []
    for kind, ids in events:
        if kind == "train":
            trained |= ids
        else:
            found += sorted(ids & trained)
    return found


def test_the_stream_never_scores_data_it_has_trained_on() -> None:
    pool = id_pool()
    sampler = EpisodeSampler(pool, range(6), ways=2, shots=1, queries=2)
    recorder = Recorder(MLP(3, (4,), 2).double(), ways=2)
    learner = OnlineMetaLearner(recorder, recorder.init_params(), OnlineSettings(replay=8, batch=3))  # type: ignore[arg-type]
    result = run_stream(learner, FreshEpisodes(sampler, torch.Generator().manual_seed(0)), rounds=100)
    assert result.ended_early and len(result.rows) == 12  # 72 examples, 6 per episode (2 classes x 3)
    assert sum(kind == "train" for kind, _ in recorder.events) >= 12
    assert leaks(recorder.events) == []

    # The check can fail: a sampler that draws with replacement repeats examples already trained on.
    recorder.events.clear()
    learner = OnlineMetaLearner(recorder, recorder.init_params(), OnlineSettings(replay=8, batch=3))  # type: ignore[arg-type]
    run_stream(learner, sampled_tasks(sampler, torch.Generator().manual_seed(0)), rounds=12)
    assert leaks(recorder.events)


def test_each_round_scores_the_task_before_learning_it() -> None:
    """Learning first and then scoring (a leak) would score the task's query after training on it."""
    pool = id_pool(classes=4, per_class=30)
    sampler = EpisodeSampler(pool, range(4), ways=2, shots=1, queries=3)
    recorder = Recorder(MLP(3, (4,), 2).double(), ways=2)
    learner = OnlineMetaLearner(recorder, recorder.init_params(), OnlineSettings(replay=4, batch=1))  # type: ignore[arg-type]
    run_stream(learner, FreshEpisodes(sampler, torch.Generator().manual_seed(1)), rounds=5)
    kinds = [kind for kind, _ in recorder.events]
    assert kinds == ["score", "train"] * 5  # batch=1: one task per update, the newest


def test_fresh_episodes_use_every_example_at_most_once() -> None:
    pool = id_pool(classes=5, per_class=10, dim=2)
    ids = pool.features[:, :1].reshape(-1, 1, 1, 1).expand(-1, 1, 2, 2)  # every pixel: the id (rotation-proof)
    images = LabelledPool(ids.contiguous(), pool.labels, pool.class_names)
    sampler = EpisodeSampler(images, range(5), ways=3, shots=2, queries=1, class_transforms=rotations(0, 180))
    stream = FreshEpisodes(sampler, torch.Generator().manual_seed(0))
    seen: list[int] = []
    for task in stream:
        ids = [int(v) for v in torch.cat([task.support_x, task.query_x]).flatten(1)[:, 0].tolist()]
        classes = {i // 10 for i in ids}
        assert len(classes) == 3, "one episode must not hold two rotations of one class"
        seen += ids
    assert len(seen) == len(set(seen))
    # It stops only when fewer than 3 classes have 3 unused examples: at most 2 classes hold up to 9 each and
    # the other 3 at most 2 each.
    assert len(seen) >= 50 - 2 * 9 - 3 * 2
    assert stream.used.sum() == len(seen)


def test_replay_buffer_keeps_a_uniform_sample() -> None:
    counts = np.zeros(20)
    for trial in range(2000):
        buffer = ReplayBuffer(5, random.Random(trial))
        for i in range(20):
            buffer.add(Task(*(torch.full((1,), float(i)) for _ in range(4))))
        assert len(buffer.tasks) == 5
        for task in buffer.tasks:
            counts[int(task.support_x)] += 1
    np.testing.assert_allclose(counts / 2000, 0.25, atol=0.04)  # each of 20 items kept with p = 5/20


def test_tasks_of_unequal_shapes_average_their_gradients(make_batch) -> None:  # type: ignore[no-untyped-def]
    algorithm = MAML(MLP(1, (5,), 1, act="tanh").double(), loss="mse", inner_lr=0.1)
    params = {k: v.requires_grad_() for k, v in algorithm.init_params().items()}
    a, b = make_batch(1, 1, 3, 4, (1,), regression=True)[0], make_batch(1, 1, 6, 4, (1,), regression=True)[0]
    grads, _ = tasks_gradient(algorithm, params, [a, b], "vmap")
    ga, _ = meta_gradient(algorithm, params, TaskBatch.stack([a]))
    gb, _ = meta_gradient(algorithm, params, TaskBatch.stack([b]))
    for k in params:
        torch.testing.assert_close(grads[k], (ga[k] + gb[k]) / 2)
    same, _ = tasks_gradient(algorithm, params, [a, a], "vmap")
    for k in params:
        torch.testing.assert_close(same[k], ga[k])


def test_online_learner_improves_along_the_stream_and_frozen_stays_frozen() -> None:
    torch.manual_seed(0)
    algorithm = MAML(MLP(1, (32, 32), 1), loss="mse", inner_lr=0.02, inner_steps=1)
    start = algorithm.init_params()
    learner = OnlineMetaLearner(algorithm, start, OnlineSettings(replay=64, batch=8, lr=3e-3))
    tasks = list(LinearTasks(shots=10, queries=10).sample(torch.Generator().manual_seed(2)) for _ in range(300))
    scratch = from_scratch(algorithm.model, algorithm.loss, algorithm.metric, steps=20, lr=0.01)
    result = run_stream(learner, tasks, 300, frozen=start, scratch=scratch)
    assert result.learners == ("online", "frozen", "scratch") and not result.ended_early
    online = result.scores("online")
    assert online[-100:].mean() < 0.3 * online[:30].mean()
    assert online[-100:].mean() < result.scores("scratch")[-100:].mean()
    # The frozen reference is the untouched starting point, scored on the same tasks.
    assert [row["frozen"] for row in result.rows[:5]] == [score_task(algorithm, start, t) for t in tasks[:5]]
    torch.testing.assert_close(result.curve("online", 300)[-1], online.mean())
    last = result.summary(100)
    assert last["last"] == 100 and last["last_mean"]["online"] == pytest.approx(online[-100:].mean())


def test_users_come_in_the_order_of_their_first_rating() -> None:
    data = load_recsys_data(RecsysConfig(synthetic_users=60, synthetic_items=150, seed=1), None).data
    empty = np.zeros(1, dtype=np.int64)
    tasks = [UserTask(u, empty, np.ones(1, np.float32), empty, np.ones(1, np.float32)) for u in range(60)]
    ordered = users_in_time_order(data, tasks[::-1])
    first = [int(data.timestamp[data.user == t.user].min()) for t in ordered]
    assert sorted(t.user for t in ordered) == list(range(60))
    assert first == sorted(first) and len(set(first)) > 30


def test_bad_settings_name_the_fix() -> None:
    with pytest.raises(ValueError, match=r"stream.batch=9 exceeds stream.replay \+ 1 = 5; lower batch"):
        OnlineSettings(replay=4, batch=9)
    with pytest.raises(ValueError, match=r"stream\.updates must be >= 1, got 0"):
        OnlineSettings(updates=0)


def test_stream_command_end_to_end(tmp_path: Path) -> None:
    runner = CliRunner()
    trained = tmp_path / "trained"
    result = runner.invoke(
        main,
        ["train", "digits_protonet", "training.iterations=10", "training.val_every=0", "model.channels=8",
         "--run-dir", str(trained), "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = tmp_path / "stream"
    args = ["stream", "digits_protonet", "model.channels=8", "task.queries=5", "stream.rounds=12", "stream.last=5"]
    args += [f"stream.frozen={trained}", "stream.start=frozen", "stream.scratch_steps=3", "--run-dir", str(out)]
    result = runner.invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["rounds"] == 12 and set(summary["last_mean"]) == {"online", "frozen", "scratch"}
    for name in ("summary.json", "stream.png", "metrics.jsonl", "config.yaml", "checkpoints/last.safetensors"):
        assert (out / name).exists(), name
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 13)) and all(r["split"] == "stream" for r in rows)
    refused = runner.invoke(main, ["eval", str(out), "--episodes", "5"])  # it learned from the test split
    assert refused.exit_code == 2 and "evaluating them there would score data they learned from" in refused.output

    again = runner.invoke(main, args)
    assert again.exit_code == 2
    assert "already holds a run (config.yaml, metrics.jsonl, checkpoints, summary.json); choose another" in again.output
    chained = runner.invoke(
        main, ["stream", "digits_protonet", f"stream.frozen={out}", "--run-dir", str(tmp_path / "z")]
    )
    assert chained.exit_code == 2 and "is a stream run that learned from the test split" in chained.output
    over = runner.invoke(main, ["stream", "digits_protonet", f"stream.frozen={trained}", "--run-dir", str(trained)])
    assert over.exit_code == 2 and "already holds a run (config.yaml, metrics.jsonl, checkpoints)" in over.output
    assert (trained / "checkpoints" / "last.safetensors").exists()  # the trained run is untouched
    bad = runner.invoke(main, ["stream", "digits_protonet", "stream.start=frozen", "--run-dir", str(tmp_path / "x")])
    assert bad.exit_code == 2
    assert "stream.start=frozen needs stream.frozen=RUN_DIR (a meta-trained run of this config)" in bad.output
    other = runner.invoke(main, ["stream", "digits_maml", f"stream.frozen={trained}", "--run-dir", str(tmp_path / "y")])
    assert other.exit_code == 2 and "holds another model or algorithm than this config's maml on conv4" in other.output


def test_regression_streams_do_not_replay_the_training_tasks() -> None:
    config = resolve_config("sinusoid_maml", [])
    experiment = build_experiment(config)
    first_training_task = experiment.sources["train"].sample(torch.Generator().manual_seed(config.training.seed))
    streamed = [next(iter(stream_tasks(experiment, split, True, 0))) for split in ("train", "val", "test")]
    for task in streamed:
        assert not torch.equal(task.support_x, first_training_task.support_x)
    assert not torch.equal(streamed[1].support_x, streamed[2].support_x)  # the splits differ by their seeds


def test_movielens_stream_reports_each_new_users_continual_adaptation(tmp_path: Path) -> None:
    runner = CliRunner()
    small = ["recsys.synthetic_users=200", "recsys.synthetic_items=300", "recsys.time_ordered=true"]
    trained = tmp_path / "melu"
    result = runner.invoke(
        main,
        ["train", "movielens/melu", *small, "training.iterations=30", "training.val_every=0", "--run-dir", str(trained),
         "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = tmp_path / "stream"
    args = ["stream", "movielens/melu", *small, "stream.rounds=3", "stream.scratch_steps=0", f"stream.frozen={trained}"]
    result = runner.invoke(main, [*args, "--run-dir", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["rounds"] == 3 and set(summary["last_mean"]) == {"online", "frozen"}
    continual = summary["continual"]
    assert set(continual["mean"]) == {"continual", "readapt", "frozen"} and continual["users"] >= 10
    assert continual["counts"][0] == continual["users"]  # every new user's first rating, predicted unseen
    no_frozen = runner.invoke(main, [*args[:-1], "--run-dir", str(tmp_path / "s2"), "--json"])
    assert json.loads(no_frozen.output)["continual"].startswith("skipped: needs stream.frozen=RUN")
