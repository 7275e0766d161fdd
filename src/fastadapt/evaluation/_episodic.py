"""Episodic evaluation with fixed seeds: mean +- 95% CI over test episodes from held-out classes,
before and after adaptation."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..algorithms import Algorithm, accuracy
from ..tasks import Task, TaskSource
from ..typing import Params
from ._stats import mean_ci95


@dataclass(frozen=True)
class EvalResult:
    """What an evaluation reports. ``mean_before_adaptation`` is the 0-step score (``None`` for
    algorithms without an inner loop, such as ProtoNet)."""

    dataset: str
    algorithm: str
    split: str
    ways: int | None
    shots: int
    queries: int
    episodes: int
    seed: int
    steps: int | None
    metric: str
    mean: float
    ci95: float
    mean_before_adaptation: float | None
    ci95_before_adaptation: float | None
    per_episode: list[dict[str, float]] = field(repr=False, default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The result without per-episode rows (what ``eval --json`` prints)."""
        out = asdict(self)
        del out["per_episode"]
        return out


def placement(params: Params) -> tuple[torch.device, torch.dtype]:
    """The device and floating-point type of a parameter dict (its first floating-point tensor's)."""
    for value in params.values():
        if value.is_floating_point():
            return value.device, value.dtype
    raise ValueError("the parameters hold no floating-point tensor")


def to_placement(tensor: Tensor, params: Params) -> Tensor:
    """``tensor`` on the parameters' device (:func:`placement`), cast to their floating-point type when it is
    floating point (class ids, indices and masks keep theirs), as :meth:`Task.to <fastadapt.tasks.Task.to>` casts a
    task. Parameters with no floating-point tensor (a parameter-free algorithm) leave ``tensor`` as it is."""
    reference = next((v for v in params.values() if v.is_floating_point()), None)
    if reference is None:
        return tensor
    return tensor.to(reference.device, reference.dtype if tensor.is_floating_point() else tensor.dtype)


@contextlib.contextmanager
def evaluating(algorithm: Algorithm) -> Iterator[None]:
    """The algorithm's model in eval mode for a block (dropout and DropBlock off, so that a seeded evaluation is
    reproducible; fastadapt's batch norm uses batch statistics in either mode), its mode restored after."""
    model = getattr(algorithm, "model", None)
    if not isinstance(model, nn.Module):
        yield
        return
    modes = {name: module.training for name, module in model.named_modules()}
    model.eval()
    try:
        yield
    finally:
        for name, module in model.named_modules():
            module.training = modes.get(name, module.training)


def score_task(algorithm: Algorithm, params: Params, task: Task, steps: int | None = None) -> float:
    """The query metric (``algorithm.metric``) of ``algorithm`` adapted to ``task``'s support set with ``steps``;
    the task is moved to the parameters' device and floating-point type first."""
    task = task.to(*placement(params))
    with torch.no_grad():  # inner steps take their gradients inside; no second-order graph is kept
        state = algorithm.adapt(params, task.support_x, task.support_y, steps=steps)
        outputs = algorithm.predict(params, state, task.query_x)
    return float(algorithm.metric(outputs, task.query_y))


class Shard(Protocol):
    """This process's part of an evaluation spread over processes (a distributed run's ``Group``)."""

    def share(self, size: int) -> range:
        """The episode indices this process scores."""
        ...

    def all_sum(self, tensors: Sequence[Tensor], what: str = ...) -> None:
        """Sums each tensor over the processes, in place."""
        ...


def _tasks(source: TaskSource, episodes: int, seed: int, exhaustive: bool, mine: range) -> Iterator[tuple[int, Task]]:
    """The episodes ``mine`` of the ``episodes`` that ``source`` gives for ``seed``: every plan is drawn, only
    those of ``mine`` are loaded when the source draws plans apart from loading them (an ``EpisodeSampler``)."""
    if exhaustive:
        for i in mine:
            yield i, source.task(i)  # type: ignore[attr-defined]
        return
    generator = torch.Generator().manual_seed(seed)
    draw, episode = getattr(source, "draw", None), getattr(source, "episode", None)
    for i in range(min(episodes, mine.stop)):
        if draw is not None and episode is not None:
            plan = draw(generator)
            if i in mine:
                yield i, episode(*plan)
        else:
            task = source.sample(generator)
            if i in mine:
                yield i, task


def evaluate(
    algorithm: Algorithm,
    params: Params,
    source: TaskSource,
    *,
    episodes: int = 600,
    seed: int = 1234,
    steps: int | None = None,
    labels: dict[str, Any] | None = None,
    progress: bool = False,
    shard: Shard | None = None,
) -> EvalResult:
    """Scores ``algorithm`` on ``episodes`` tasks drawn from ``source`` with a fixed seed.

    Args:
        params: meta-parameters (not modified; no gradient is kept).
        steps: inner steps at test time (default: the algorithm's training steps).
        labels: descriptive fields for the result: dataset, split, ways, shots, queries.
        shard: spreads the episodes over the processes of a distributed run: each scores its share and the
            scores are summed into every process's result, which equals the one-process result.

    A source whose ``exhaustive`` attribute is true holds a fixed set of tasks (``__len__``, ``task(i)``), e.g.
    the recommender's validation users: each is scored once, in order, whatever ``episodes`` says.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    params = {k: v.detach() for k, v in params.items()}
    exhaustive = bool(getattr(source, "exhaustive", False))  # a fixed set of tasks, each scored once
    if exhaustive:
        episodes = len(source)  # type: ignore[arg-type]
    has_inner_loop = getattr(algorithm, "inner_steps", None) is not None
    mine = shard.share(episodes) if shard is not None else range(episodes)
    scores = torch.zeros(episodes, 2, dtype=torch.float64)  # after, before
    with evaluating(algorithm):
        tasks = _tasks(source, episodes, seed, exhaustive, mine)
        for i, task in tqdm(tasks, total=len(mine), desc="eval", disable=not progress, leave=False):
            scores[i, 0] = score_task(algorithm, params, task, steps)
            if has_inner_loop:
                scores[i, 1] = score_task(algorithm, params, task, 0)
    if shard is not None:
        shard.all_sum([scores], "all_reduce of the evaluation scores")
    rows: list[dict[str, float]] = []
    for i, (after, before) in enumerate(scores.tolist()):
        rows.append({"episode": float(i), "after": after} | ({"before": before} if has_inner_loop else {}))
    mean, ci = mean_ci95([r["after"] for r in rows])
    before = mean_ci95([r["before"] for r in rows]) if has_inner_loop else (None, None)
    info = {"dataset": "", "split": "test", "ways": None, "shots": 0, "queries": 0} | (labels or {})
    return EvalResult(
        algorithm=algorithm.name,
        episodes=episodes,
        seed=seed,
        steps=steps if steps is not None else getattr(algorithm, "inner_steps", None),
        metric=algorithm.metric.name,
        mean=mean,
        ci95=ci,
        mean_before_adaptation=before[0],
        ci95_before_adaptation=before[1],
        per_episode=rows,
        **info,
    )


#: A classifier under comparison: maps an episode to ``(n_query, N)`` scores (logits or probabilities).
Method = Callable[[Task], Tensor]


def compare_on_episodes(
    methods: Mapping[str, Method], source: TaskSource, *, episodes: int = 600, seed: int = 1234, progress: bool = False
) -> dict[str, npt.NDArray[np.float64]]:
    """The per-episode query accuracy of several methods on the same ``episodes`` tasks (drawn from
    ``source`` with ``seed``, as :func:`evaluate` draws them), ready for :func:`paired_comparison`."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if not methods:
        raise ValueError("no methods to compare")
    generator = torch.Generator().manual_seed(seed)
    scores: dict[str, list[float]] = {name: [] for name in methods}
    for _ in tqdm(range(episodes), desc="compare", disable=not progress, leave=False):
        task = source.sample(generator)
        for name, method in methods.items():
            outputs = method(task)
            if outputs.shape[0] != len(task.query_y):
                raise ValueError(
                    f"method {name!r} returned {outputs.shape[0]} rows for {len(task.query_y)} query examples"
                )
            scores[name].append(float(accuracy(outputs, task.query_y.to(outputs.device))))
    return {name: np.asarray(values) for name, values in scores.items()}
