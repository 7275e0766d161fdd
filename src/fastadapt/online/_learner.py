"""Online meta-learning on a stream of tasks: each task is scored first, then learned from.

In the spirit of follow-the-meta-leader (Finn et al. 2019, "Online Meta-Learning", arXiv:1902.08438): after a
task is scored, the meta-parameters take a step on the meta-objective of the tasks seen so far. All of them
do not fit, so a bounded replay buffer holds a uniform sample of the stream (reservoir sampling, Vitter
1985), and each update is on the newest task plus tasks drawn from the buffer.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..algorithms import Algorithm, Metric, forward, meta_gradient
from ..algorithms.metasgd import optimizer_groups
from ..evaluation import mean_ci95, placement, score_task
from ..tasks import Task, TaskBatch
from ..typing import LossFn, Params


@dataclass(frozen=True)
class OnlineSettings:
    """How the online learner updates its meta-parameters.

    Attributes:
        replay: capacity of the replay buffer, in tasks.
        batch: tasks per meta-update: the newest one and ``batch - 1`` drawn from the buffer.
        updates: meta-updates per round.
        lr: Adam's learning rate for the meta-parameters.
        rates_lr: Meta-SGD's learned rates' learning rate (default ``lr``).
        steps: inner steps when scoring (default: the algorithm's).
        strategy: how the tasks of an update are batched (``meta_gradient``'s strategies); tasks of unequal
            shapes (users with different numbers of ratings) are always looped.
    """

    replay: int = 64
    batch: int = 8
    updates: int = 1
    lr: float = 1e-3
    rates_lr: float | None = None
    steps: int | None = None
    strategy: str = "loop"

    def __post_init__(self) -> None:
        for name in ("replay", "batch", "updates"):
            if getattr(self, name) < 1:
                raise ValueError(f"stream.{name} must be >= 1, got {getattr(self, name)}")
        if self.batch > self.replay + 1:
            raise ValueError(f"stream.batch={self.batch} exceeds stream.replay + 1 = {self.replay + 1}; lower batch")


class ReplayBuffer:
    """A uniform sample of at most ``capacity`` of the tasks offered so far (reservoir sampling)."""

    def __init__(self, capacity: int, rng: random.Random) -> None:
        self.capacity, self.rng = capacity, rng
        self.tasks: list[Task] = []
        self.offered = 0

    def add(self, task: Task) -> None:
        self.offered += 1
        if len(self.tasks) < self.capacity:
            self.tasks.append(task)
            return
        slot = self.rng.randrange(self.offered)
        if slot < self.capacity:
            self.tasks[slot] = task

    def sample(self, n: int) -> list[Task]:
        return self.rng.sample(self.tasks, min(n, len(self.tasks)))


def tasks_gradient(algorithm: Algorithm, params: Params, tasks: list[Task], strategy: str) -> tuple[Params, float]:
    """The meta-gradient of the mean objective of ``tasks`` and their mean query loss. Tasks of one shape are
    batched with ``strategy``; otherwise each is differentiated on its own and the gradients are averaged."""
    shapes = {tuple(tuple(t.shape) for t in task.tensors()) for task in tasks}
    if len(shapes) == 1:
        grads, stats = meta_gradient(algorithm, params, TaskBatch.stack(tasks), strategy)
        return grads, float(stats[:, 0].mean())
    total = {k: torch.zeros_like(v) for k, v in params.items()}
    losses = []
    for task in tasks:
        grads, stats = meta_gradient(algorithm, params, TaskBatch.stack([task]), "loop", scale=len(tasks))
        for k, g in grads.items():
            total[k].add_(g)
        losses.append(float(stats[0, 0]))
    return total, float(np.mean(losses))


class OnlineMetaLearner:
    """Meta-parameters that keep learning from the tasks of a stream.

    Args:
        params: the starting meta-parameters (copied; the caller's tensors are not modified). Tasks are moved to
            their device and floating-point type, where the replay buffer keeps them.
        seed: the replay buffer's sampling seed.
    """

    def __init__(self, algorithm: Algorithm, params: Params, settings: OnlineSettings, seed: int = 0) -> None:
        self.algorithm, self.settings = algorithm, settings
        self.params = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
        self.optimizer = torch.optim.Adam(optimizer_groups(self.params, settings.lr, settings.rates_lr))
        self.buffer = ReplayBuffer(settings.replay, random.Random(seed))

    def score(self, task: Task) -> float:
        """The query metric after adapting to the support set; nothing is learned."""
        return score_task(self.algorithm, self.params, task, self.settings.steps)

    def learn(self, task: Task) -> float:
        """``updates`` meta-steps on ``task`` and replayed tasks; the task then joins the buffer. Returns the loss."""
        task = task.to(*placement(self.params))
        loss = math.nan
        for _ in range(self.settings.updates):
            batch = [task, *self.buffer.sample(self.settings.batch - 1)]
            grads, loss = tasks_gradient(self.algorithm, self.params, batch, self.settings.strategy)
            if not math.isfinite(loss):
                raise FloatingPointError(
                    f"non-finite meta-loss ({loss}) in the online update; lower stream.outer_lr or algorithm.inner_lr"
                )
            for k, p in self.params.items():
                p.grad = grads[k]
            self.optimizer.step()
        self.buffer.add(task)
        return loss


def from_scratch(model: nn.Module, loss: LossFn, metric: Metric, steps: int, lr: float) -> Callable[[Task], float]:
    """The no-meta-learning reference: the model's initial weights trained by ``steps`` of Adam on each task's
    support set alone (``loss``), then scored on its query set (``metric``), on the model's device and
    floating-point type."""
    initial = {k: v.detach().clone() for k, v in model.named_parameters()}
    device, dtype = placement(initial)

    def score(task: Task) -> float:
        task = task.to(device, dtype)
        params = {k: v.clone().requires_grad_() for k, v in initial.items()}
        optimizer = torch.optim.Adam(params.values(), lr=lr)
        for _ in range(steps):
            optimizer.zero_grad()
            loss(forward(model, params, task.support_x), task.support_y).backward()
            optimizer.step()
        with torch.no_grad():
            return float(metric(forward(model, params, task.query_x), task.query_y))

    return score


@dataclass(frozen=True)
class StreamResult:
    """Per-round scores of the online learner and its references, in stream order.

    Attributes:
        metric: "accuracy" or "mse".
        rows: one dict per round: ``round``, each learner's score, ``loss`` (the online update's), ``seconds``.
        learners: the scored learners' names ("online", and "frozen" / "scratch" when given).
        ended_early: the stream ran out of tasks (of unused examples) before the requested rounds.
    """

    metric: str
    rows: list[dict[str, float]]
    learners: tuple[str, ...]
    ended_early: bool = False

    def scores(self, learner: str) -> np.ndarray:
        return np.array([row[learner] for row in self.rows])

    def curve(self, learner: str, window: int) -> np.ndarray:
        """The running mean over the last ``window`` rounds (fewer at the start), ``(rounds,)``."""
        values = np.cumsum(np.concatenate([[0.0], self.scores(learner)]))
        ends = np.arange(1, len(self.rows) + 1)
        starts = np.maximum(ends - window, 0)
        return (values[ends] - values[starts]) / (ends - starts)

    def last(self, n: int) -> dict[str, tuple[float, float]]:
        """Each learner's mean and 95% CI over the last ``n`` rounds."""
        return {name: mean_ci95(self.scores(name)[-n:].tolist()) for name in self.learners}

    def summary(self, last: int) -> dict[str, Any]:
        """What ``fastadapt stream --json`` prints: rounds, the last-``last`` means and CIs, and the whole stream's."""
        recent = self.last(last)
        return {
            "metric": self.metric,
            "rounds": len(self.rows),
            "ended_early": self.ended_early,
            "last": min(last, len(self.rows)),
            "last_mean": {k: v[0] for k, v in recent.items()},
            "last_ci95": {k: v[1] for k, v in recent.items()},
            "stream_mean": {k: float(self.scores(k).mean()) for k in self.learners},
        }


def run_stream(
    learner: OnlineMetaLearner,
    tasks: Iterable[Task],
    rounds: int,
    frozen: Params | None = None,
    scratch: Callable[[Task], float] | None = None,
    on_round: Callable[[dict[str, float]], None] | None = None,
) -> StreamResult:
    """Test, then train: each round scores the new task with every learner, then the online learner learns it.

    Args:
        tasks: the stream (e.g. :func:`sampled_tasks`, :class:`FreshEpisodes`); it may end before ``rounds``.
        frozen: meta-parameters scored on every task and never updated (a meta-trained model).
        scratch: the from-scratch reference (:func:`from_scratch`).
        on_round: called with each round's row (logging, progress).
    """
    if rounds < 1:
        raise ValueError(f"stream.rounds must be >= 1, got {rounds}")
    algorithm, steps = learner.algorithm, learner.settings.steps
    frozen = None if frozen is None else {k: v.detach() for k, v in frozen.items()}
    learners = ("online", *(["frozen"] if frozen is not None else []), *(["scratch"] if scratch is not None else []))
    rows: list[dict[str, float]] = []
    stream = iter(tasks)
    for index in range(rounds):
        task = next(stream, None)
        if task is None:
            break
        start = time.perf_counter()
        row = {"round": float(index + 1), "online": learner.score(task)}  # scored before it is learned from
        if frozen is not None:
            row["frozen"] = score_task(algorithm, frozen, task, steps)
        if scratch is not None:
            row["scratch"] = scratch(task)
        row["loss"] = learner.learn(task)
        row["seconds"] = time.perf_counter() - start
        rows.append(row)
        if on_round is not None:
            on_round(row)
    if not rows:
        raise ValueError("the task stream is empty: its split has too few unused examples for one episode")
    return StreamResult(algorithm.metric.name, rows, learners, ended_early=len(rows) < rounds)
