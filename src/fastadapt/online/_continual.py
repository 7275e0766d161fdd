"""Continual per-user adaptation: a user's adapted state follows their ratings one at a time.

A meta-learned model adapts to a user from the ratings they have given so far. When a new rating arrives,
re-adapting from the meta-parameters on the whole history (``algorithm.adapt(params, x[:i], y[:i])``) costs
``inner_steps`` steps over all ``i`` ratings, every time. :class:`ContinualUser` instead keeps the user's
adapted state and takes a few gradient steps on the history starting from it, warm-started by everything
seen before (online fine-tuning of the fast weights; the meta-parameters never change, as in the
test-time adaptation of MAML, Finn et al. 2017, arXiv:1703.03400).

:func:`prequential` scores a learner the way it would be used: example ``i`` of a user's time-ordered stream
is predicted before the learner sees it, then added (prequential or "test-then-train" evaluation).
:func:`continual_users` runs it over many users and reports the error by position in the stream.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..algorithms import Algorithm, gradient_descent, subset
from ..evaluation import mean_ci95, to_placement
from ..tasks import Task
from ..typing import Params

#: The learners :func:`prequential` compares: online updates, re-adaptation from scratch, no adaptation.
LEARNERS = ("continual", "readapt", "frozen")


def _check_examples(x: Tensor, y: Tensor) -> None:
    if x.ndim == 0 or y.ndim == 0:
        raise ValueError("x and y need a leading example dimension: pass x of shape (n, ...) and y of shape (n, ...)")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} examples but y has {y.shape[0]}; pass one target per example")


def _check_options(steps: int | None, window: int | None) -> None:
    if steps is not None and steps < 0:
        raise ValueError(f"steps must be >= 0 (or None for the algorithm's inner_steps), got {steps}")
    if window is not None and window < 1:
        raise ValueError(f"window must be >= 1 (or None to keep every example), got {window}")


def zero_step_state(algorithm: Algorithm, params: Params, x: Tensor, y: Tensor) -> Params:
    """The state of no adaptation: ``algorithm.adapt`` with 0 steps on an empty support set.

    Args:
        x: ``(0, *x_shape)``, y: ``(0, *y_shape)`` (for the shapes and dtypes only).

    Raises:
        ValueError: the algorithm cannot adapt to an empty support set, or its state is then undefined
            (ProtoNet's prototypes are means over no examples).
    """
    try:
        with torch.no_grad():
            state = algorithm.adapt(params, x, y, steps=0)
    except (RuntimeError, ValueError, IndexError) as error:
        raise ValueError(
            f"{algorithm.name} cannot adapt to an empty support set with 0 steps ({error}); continual adaptation "
            "starts from that state: use an algorithm whose zero-step state is its meta-parameters (maml, anil, "
            "metasgd, reptile, hypernet)"
        ) from error
    if not all(bool(torch.isfinite(v).all()) for v in state.values()):
        raise ValueError(
            f"{algorithm.name}'s state after adapting to an empty support set is not finite; continual adaptation "
            "starts from that state: use an algorithm whose zero-step state is its meta-parameters (maml, anil, "
            "metasgd, reptile, hypernet)"
        )
    return {k: v.detach() for k, v in state.items()}


def _empty_targets(algorithm: Algorithm, x: Tensor) -> Tensor:
    """Stand-in targets ``(0,)`` or ``(0, 1)`` for a zero-step adaptation before any target was seen; zero
    steps on an empty support set take no gradient, so the targets' values are never read."""
    if _classifies(algorithm):
        return torch.zeros(0, dtype=torch.long, device=x.device)
    dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
    return torch.zeros(0, 1, dtype=dtype, device=x.device)


class ContinualUser:
    """One user's adapted state, updated as each new labelled example arrives.

    Each :meth:`observe` appends the examples to the user's history (the ``window`` most recent ones, if
    set) and takes ``steps`` first-order gradient steps of the history's task loss starting from the
    current state, not from the meta-parameters. The meta-parameters are never modified. The state starts
    as ``algorithm.adapt(params, x[:0], y[:0], steps=0)``, built on the first input seen.

    Args:
        algorithm: any algorithm of :mod:`fastadapt.algorithms` whose zero-step state is defined without
            examples (MAML, ANIL, Meta-SGD, Reptile).
        params: the meta-parameters (detached here).
        steps: gradient steps per :meth:`observe` (default: ``algorithm.inner_steps``).
        lr: step size, or one tensor per state entry (default: ``algorithm.inner_lr``; for Meta-SGD its
            learned rates ``inner_lr.*``).
        window: keep only this many most recent examples in the history (default: all).

    Inputs and targets are moved to the parameters' device and floating-point type (class ids stay integers);
    the history, the state and the outputs of :meth:`predict` stay there.
    """

    def __init__(
        self,
        algorithm: Algorithm,
        params: Params,
        steps: int | None = None,
        lr: float | Params | None = None,
        window: int | None = None,
    ) -> None:
        _check_options(steps, window)
        if steps is None:
            steps = getattr(algorithm, "inner_steps", None)
            if steps is None:
                raise ValueError(f"{algorithm.name} has no inner_steps; pass steps= (gradient steps per observation)")
        if lr is None:
            lr = _default_lr(algorithm, params)
        self.algorithm = algorithm
        self.params = {k: v.detach() for k, v in params.items()}
        self.steps: int = steps
        self.lr: float | Params = (
            {k: to_placement(v.detach(), self.params) for k, v in lr.items()} if isinstance(lr, dict) else lr
        )
        self.window = window
        self._state: Params | None = None
        self._x: Tensor | None = None  # (n_history, *x_shape)
        self._y: Tensor | None = None  # (n_history, *y_shape)
        self._x_shape: tuple[int, ...] | None = None
        self._observed = 0

    @property
    def n_observed(self) -> int:
        """How many examples :meth:`observe` has received (the history keeps at most ``window``)."""
        return self._observed

    @property
    def history(self) -> tuple[Tensor, Tensor] | None:
        """The examples the next update's loss uses, ``(n_history, *x_shape)`` and ``(n_history, *y_shape)``,
        oldest first; None before the first observation."""
        if self._x is None or self._y is None:
            return None
        return self._x, self._y

    @property
    def state(self) -> Params:
        """The current adapted state (detached); the zero-step state before any input was seen is built
        on the first :meth:`observe` or :meth:`predict`, so it raises before then."""
        if self._state is None:
            raise ValueError("no state yet: the state is built on the first observe() or predict()")
        return self._state

    def _start(self, x: Tensor, y: Tensor | None) -> Params:
        x_shape = tuple(x.shape[1:])
        if self._x_shape is not None and x_shape != self._x_shape:
            raise ValueError(
                f"x has example shape {x_shape} but earlier inputs had {self._x_shape}; pass examples of one shape"
            )
        if self._state is None:
            empty_y = _empty_targets(self.algorithm, x) if y is None else y[:0]
            state = zero_step_state(self.algorithm, self.params, x[:0], empty_y)
            if isinstance(self.lr, dict) and set(self.lr) != set(state):
                raise ValueError(
                    f"lr has entries {sorted(self.lr)} but the adapted state has {sorted(state)}; "
                    "pass one learning rate per state entry (or a single float)"
                )
            self._state, self._x_shape = state, x_shape
        return self._state

    def observe(self, x: Tensor, y: Tensor) -> None:
        """Adds labelled examples and updates the state.

        Args:
            x: ``(n, *x_shape)`` inputs (usually n = 1, one new rating).
            y: ``(n, *y_shape)`` their targets (class ids ``(n,)`` or regression values).
        """
        _check_examples(x, y)
        if x.shape[0] == 0:
            raise ValueError("observe got no examples; pass x of shape (n, ...) with n >= 1")
        x, y = to_placement(x.detach(), self.params), to_placement(y.detach(), self.params)
        state = self._start(x, y)
        new_examples = x.shape[0]
        if self._x is not None and self._y is not None:
            if self._y.shape[1:] != y.shape[1:]:
                raise ValueError(
                    f"y has target shape {tuple(y.shape[1:])} but earlier targets had {tuple(self._y.shape[1:])}; "
                    "pass targets of one shape"
                )
            x, y = torch.cat([self._x, x]), torch.cat([self._y, y])
        if self.window is not None:
            x, y = x[-self.window :], y[-self.window :]
        self._x, self._y = x, y
        self._observed += new_examples
        algorithm, params = self.algorithm, self.params

        def history_loss(s: Params) -> Tensor:
            return algorithm.loss(algorithm.predict(params, s, x), y)

        with torch.no_grad():  # first-order steps on a detached state: nothing to differentiate through later
            new = gradient_descent(history_loss, state, self.lr, self.steps, first_order=True)
        self._state = {k: v.detach() for k, v in new.items()}

    def predict(self, x: Tensor) -> Tensor:
        """Outputs ``(n, N)`` logits or ``(n, d)`` regression values for ``x`` ``(n, *x_shape)``, no gradient, on
        the parameters' device."""
        if x.ndim == 0:
            raise ValueError("x needs a leading example dimension: pass x of shape (n, ...)")
        x = to_placement(x, self.params)
        state = self._start(x, None)
        with torch.no_grad():
            return self.algorithm.predict(self.params, state, x)


def _default_lr(algorithm: Algorithm, params: Params) -> float | Params:
    if algorithm.name == "metasgd":
        rates = subset(params, "inner_lr")
        if not rates:
            raise ValueError("Meta-SGD parameters have no 'inner_lr.*' entries; pass its meta-parameters or lr=")
        return rates
    lr = getattr(algorithm, "inner_lr", None)
    if lr is None:
        raise ValueError(f"{algorithm.name} has no inner_lr; pass lr= (the step size of each update)")
    return float(lr)


def _classifies(algorithm: Algorithm) -> bool:
    """Whether the algorithm's outputs are class logits scored by their argmax (cross-entropy or accuracy)."""
    return algorithm.loss is F.cross_entropy or algorithm.metric.name == "accuracy"


def _scores(classifies: bool, outputs: Tensor, y: Tensor) -> np.ndarray:
    """Per example: absolute error (mean over output dimensions) or 0/1 correctness, ``(n,)``."""
    if classifies:
        hits = outputs.argmax(-1) == y
        return hits.to(torch.float64).cpu().numpy()
    errors = (outputs - y).abs().reshape(len(y), -1).mean(1)
    return errors.to(torch.float64).cpu().numpy()


def prequential(
    algorithm: Algorithm,
    params: Params,
    x: Tensor,
    y: Tensor,
    steps: int | None = None,
    lr: float | Params | None = None,
    window: int | None = None,
    readapt_steps: int | None = None,
) -> dict[str, np.ndarray]:
    """Predicts each example of one user's time-ordered stream before learning from it, for three learners.

    - ``"continual"``: a :class:`ContinualUser` (``steps``, ``lr``, ``window``) fed one example at a time;
    - ``"readapt"``: ``algorithm.adapt(params, x[:i], y[:i], readapt_steps)`` from the meta-parameters for
      every ``i`` (the costly redo-from-scratch reference; 0 steps on the empty prefix);
    - ``"frozen"``: the meta-parameters adapted with 0 steps, never updated.

    Args:
        x: ``(n, *x_shape)`` inputs in time order; y: ``(n, *y_shape)`` targets (moved to the parameters' device
            and floating-point type).
        steps, lr, window: the continual learner's options (see :class:`ContinualUser`).
        readapt_steps: the re-adaptation's inner steps (default: the algorithm's ``inner_steps``, the
            number it was meta-trained with).

    Returns:
        ``"<learner>"``: ``(n,)`` absolute errors (regression; mean over output dimensions) or 0/1
        correctness (classification) of example ``i`` predicted from examples ``0..i-1``;
        ``"<learner>_seconds"``: ``(n,)`` wall-clock seconds spent updating the learner with example
        ``i - 1`` before predicting example ``i`` (``observe`` or ``adapt``; 0 at ``i = 0`` and for the
        frozen learner: the zero-step starting state is common to all three and not counted).
    """
    _check_examples(x, y)
    if readapt_steps is not None and readapt_steps < 0:
        raise ValueError(f"readapt_steps must be >= 0 (or None for the algorithm's inner_steps), got {readapt_steps}")
    n = x.shape[0]
    if n == 0:
        raise ValueError("prequential needs at least one example; pass x of shape (n, ...) with n >= 1")
    params = {k: v.detach() for k, v in params.items()}
    x, y = to_placement(x.detach(), params), to_placement(y.detach(), params)
    user = ContinualUser(algorithm, params, steps, lr, window)
    start_state = zero_step_state(algorithm, params, x[:0], y[:0])
    readapted = start_state
    outputs: dict[str, list[Tensor]] = {name: [] for name in LEARNERS}
    seconds = {name: np.zeros(n) for name in LEARNERS}
    with torch.no_grad():  # the re-adaptation builds no graph either, so both update timings are like for like
        outputs["frozen"].append(algorithm.predict(params, start_state, x))
        for i in range(n):
            xi, yi = x[i : i + 1], y[i : i + 1]
            outputs["continual"].append(user.predict(xi))
            outputs["readapt"].append(algorithm.predict(params, readapted, xi))
            if i == n - 1:
                break
            start = time.perf_counter()
            user.observe(xi, yi)
            seconds["continual"][i + 1] = time.perf_counter() - start
            start = time.perf_counter()
            readapted = algorithm.adapt(params, x[: i + 1], y[: i + 1], steps=readapt_steps)
            seconds["readapt"][i + 1] = time.perf_counter() - start
    result = {name: _scores(_classifies(algorithm), torch.cat(outputs[name]), y) for name in LEARNERS}
    return result | {f"{name}_seconds": seconds[name] for name in LEARNERS}


@dataclass(frozen=True)
class ContinualReport:
    """Prequential errors of the three learners over many users' streams.

    Attributes:
        metric: ``"absolute error"`` (regression) or ``"accuracy"`` (classification).
        curves: per learner, ``(max_len,)`` mean metric at stream position ``i`` over the users that have at
            least ``i + 1`` examples.
        counts: ``(max_len,)`` how many users have at least ``i + 1`` examples.
        mean: per learner, the mean over every prediction of every user.
        ci95: per learner, the half-width of the 95% confidence interval of the mean over users of each
            user's mean metric.
        seconds: per learner, total update seconds over all users.
        users: how many users.
    """

    metric: str
    curves: dict[str, np.ndarray]
    counts: np.ndarray
    mean: dict[str, float]
    ci95: dict[str, float]
    seconds: dict[str, float]
    users: int

    def mean_from(self, position: int) -> dict[str, float]:
        """Per learner, the mean metric over the predictions at stream positions ``>= position``."""
        counts = self.counts[position:]
        if counts.sum() == 0:
            raise ValueError(f"no user has more than {position} examples; pick a smaller position")
        return {k: float((c[position:] * counts).sum() / counts.sum()) for k, c in self.curves.items()}

    def summary(self) -> dict[str, Any]:
        """A JSON-able dict of the report (curves and counts as lists)."""
        return {
            "metric": self.metric,
            "users": self.users,
            "mean": dict(self.mean),
            "ci95": dict(self.ci95),
            "seconds": dict(self.seconds),
            "counts": [int(c) for c in self.counts],
            "curves": {k: [float(v) for v in c] for k, c in self.curves.items()},
        }


def continual_users(
    algorithm: Algorithm,
    params: Params,
    tasks: list[Task],
    steps: int | None = None,
    lr: float | Params | None = None,
    window: int | None = None,
    max_ratings: int | None = None,
    readapt_steps: int | None = None,
) -> ContinualReport:
    """:func:`prequential` on each user's stream, aggregated by stream position.

    A user's stream is their task's support set followed by its query set (their time order when the
    cold-start split is time-ordered: ``cold_start_split(..., time_ordered=True)``).

    Args:
        tasks: one :class:`~fastadapt.tasks.Task` per user, on any device (each stream is moved to the
            parameters' device and floating-point type).
        steps, lr, window, readapt_steps: see :func:`prequential`.
        max_ratings: use at most this many first examples of each stream (default: all).
    """
    if not tasks:
        raise ValueError("continual_users needs at least one user task")
    if max_ratings is not None and max_ratings < 1:
        raise ValueError(f"max_ratings must be >= 1 (or None for every rating), got {max_ratings}")
    runs = []
    for task in tasks:
        x, y = torch.cat([task.support_x, task.query_x]), torch.cat([task.support_y, task.query_y])
        runs.append(prequential(algorithm, params, x[:max_ratings], y[:max_ratings], steps, lr, window, readapt_steps))
    length = max(len(run["frozen"]) for run in runs)
    counts = np.zeros(length, dtype=np.int64)
    for run in runs:
        counts[: len(run["frozen"])] += 1
    curves, mean, ci95, seconds = {}, {}, {}, {}
    for name in LEARNERS:
        totals = np.zeros(length)
        for run in runs:
            totals[: len(run[name])] += run[name]
        curves[name] = totals / counts
        mean[name] = float(np.concatenate([run[name] for run in runs]).mean())
        ci95[name] = mean_ci95([float(run[name].mean()) for run in runs])[1]
        seconds[name] = float(sum(run[f"{name}_seconds"].sum() for run in runs))
    metric = "accuracy" if _classifies(algorithm) else "absolute error"
    return ContinualReport(metric, curves, counts, mean, ci95, seconds, len(tasks))
