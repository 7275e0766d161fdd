"""Task suites: how an application plugs into the engine.

A suite names the datasets it serves (``data.dataset``), declares its own config sections, and builds a run's
task sources, model, loss and metric from a config; it may evaluate and report a run in its own way (the
recommender reports every cold-start state). The shipped suites (images, regression, recsys, text) and any
third-party package register the same way, through the entry-point group ``fastadapt.suites``::

    # the third party's pyproject.toml
    [project.entry-points."fastadapt.suites"]
    sensors = "my_package.suite:SUITE"

where ``SUITE`` is a :class:`Suite` (or any object that follows :class:`TaskSuite`). A suite defined in a script
or notebook registers with :func:`register_suite`. The engine never imports a suite by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol

from torch import nn

from ..tasks import TaskSource
from ._config import ConfigError

if TYPE_CHECKING:
    from ._build import Experiment
    from ._config import Config

GROUP = "fastadapt.suites"


@dataclass(frozen=True)
class SuiteParts:
    """What a suite builds for one config.

    Attributes:
        sources: task sources by split: ``"train"``, ``"val"``, ``"test"``.
        model: the network (on the CPU; the engine moves it).
        loss: the default task loss (a name in ``fastadapt.algorithms.LOSSES`` or a callable);
            ``algorithm.loss`` overrides it.
        metric: the default metric (a name in ``METRICS``, a ``Metric``, or ``None``: the loss's default).
        ways: N of the episodes when the suite classifies, ``None`` otherwise (reports and the algorithms'
            per-class parts use it).
        context: the suite's own data (ratings, texts), kept on the experiment for its ``evaluate``.
    """

    sources: dict[str, TaskSource]
    model: nn.Module
    loss: Any = "cross_entropy"
    metric: Any = None
    ways: int | None = None
    context: Any = None


class TaskSuite(Protocol):
    """The protocol the engine sees; :class:`Suite` implements it from plain functions."""

    @property
    def name(self) -> str: ...

    @property
    def datasets(self) -> tuple[str, ...]:
        """The ``data.dataset`` values it serves."""
        ...

    @property
    def sections(self) -> Mapping[str, type]:
        """Its config sections: name -> frozen dataclass (defaults for every key)."""
        ...

    @property
    def defining(self) -> tuple[str, ...]:
        """Keys of its sections (dotted, prefixes allowed) that define a run: resuming with them changed is refused."""
        ...

    @property
    def evaluates(self) -> bool:
        """Whether it evaluates trained runs itself (:meth:`evaluate`) instead of the engine's episodic evaluation."""
        ...

    def build(self, config: Config) -> SuiteParts: ...

    def evaluate(self, experiment: Experiment, params: Any, **options: Any) -> Any:
        """Its own evaluation of a trained run (options: ``run_dir``, ``steps``, ``progress``, and its own); returns
        a report with ``summary() -> dict`` and ``describe() -> str``."""
        ...


@dataclass(frozen=True)
class Suite:
    """A :class:`TaskSuite` from functions.

    Args:
        name: the suite's name (``fastadapt suites`` lists it).
        datasets: the ``data.dataset`` values it serves.
        build_parts: ``config -> SuiteParts`` (what :meth:`build` calls).
        sections: its config sections, name -> frozen dataclass.
        defining: keys of its sections that define a run (see :attr:`TaskSuite.defining`).
        evaluator: ``(experiment, params, **options) -> report`` for its own evaluation; ``None``: the engine's.
        description: one line for ``fastadapt suites``.
        required_saved: dotted keys a saved run's config must hold: a run written before they existed meant
            something else by the same settings (another split, another model), so evaluating or resuming it
            is refused with a message that says to train again.
    """

    name: str
    datasets: tuple[str, ...]
    build_parts: Callable[[Config], SuiteParts]
    sections: Mapping[str, type] = field(default_factory=dict)
    defining: tuple[str, ...] = ()
    evaluator: Callable[..., Any] | None = None
    description: str = ""
    required_saved: tuple[str, ...] = ()

    @property
    def evaluates(self) -> bool:
        return self.evaluator is not None

    def build(self, config: Config) -> SuiteParts:
        return self.build_parts(config)

    def evaluate(self, experiment: Experiment, params: Any, **options: Any) -> Any:
        if self.evaluator is None:
            raise ValueError(f"suite {self.name!r} has no evaluation of its own; use fastadapt.evaluation.evaluate")
        return self.evaluator(experiment, params, **options)


_REGISTERED: dict[str, TaskSuite] = {}


def register_suite(suite: TaskSuite) -> None:
    """Registers a suite defined outside a package (a script, a notebook, a test); packages use the entry point."""
    _check(suite, f"register_suite({suite!r})")
    taken = {d: s.name for s in suites().values() if s.name != suite.name for d in s.datasets}
    clash = sorted(set(suite.datasets) & set(taken))
    if clash:
        raise ValueError(f"suite {suite.name!r} serves {clash}, already served by suite {taken[clash[0]]!r}")
    _REGISTERED[suite.name] = suite


@cache
def _installed() -> tuple[dict[str, TaskSuite], tuple[str, ...]]:
    """The suites of the entry-point group, loaded once; and the errors of those that failed to load."""
    found: dict[str, TaskSuite] = {}
    errors: list[str] = []
    for point in sorted(entry_points(group=GROUP), key=lambda p: p.name):
        try:
            suite = point.load()
            _check(suite, f"entry point {point.name} = {point.value}")
        except Exception as error:  # a broken third-party suite must not hide the others; it is reported
            errors.append(f"suite entry point {point.name} = {point.value} failed to load: {error}")
            continue
        served = {d: s.name for s in found.values() for d in s.datasets}
        clash = sorted(set(suite.datasets) & set(served))
        if clash:
            errors.append(
                f"suite {suite.name!r} ({point.value}) serves {clash}, already served by {served[clash[0]]!r}"
            )
            continue
        found[suite.name] = suite
    return found, tuple(errors)


def suites() -> dict[str, TaskSuite]:
    """Every suite: those installed through the entry-point group, then those registered in this process."""
    found = _installed()[0] | _REGISTERED
    if not found:
        raise ConfigError(
            f"no task suites found in the {GROUP!r} entry-point group{''.join(f'; {e}' for e in _installed()[1])}: "
            "fastadapt's own are registered by its install metadata, so (re)install it (pip install -e .)"
        )
    return found


def load_errors() -> tuple[str, ...]:
    """Why installed suites failed to load (``fastadapt suites`` prints them)."""
    return _installed()[1]


def suite_for(dataset: str) -> TaskSuite:
    """The suite serving ``data.dataset``; a :class:`ConfigError` lists the datasets there are."""
    for suite in suites().values():
        if dataset in suite.datasets:
            return suite
    known = sorted(d for s in suites().values() for d in s.datasets)
    errors = "".join(f"; {e}" for e in _installed()[1])
    raise ConfigError(f"unknown data.dataset {dataset!r}; choose one of {known}{errors}")


def section_types() -> dict[str, type]:
    """Section name -> dataclass, of every suite."""
    return {name: kind for s in suites().values() for name, kind in s.sections.items()}


def _check(suite: Any, where: str) -> None:
    needed = ("name", "datasets", "sections", "defining", "evaluates", "build", "evaluate")
    missing = [a for a in needed if not hasattr(suite, a)]
    if missing:
        raise TypeError(f"{where} is not a task suite: it lacks {missing} (build it with fastadapt.training.Suite)")


def check_saved_config(saved: Mapping[str, Any], suite: Any, where: object) -> None:
    """Refuses a run whose saved config lacks a key of the suite's ``required_saved`` (see :class:`Suite`)."""
    missing = [key for key in getattr(suite, "required_saved", ()) if not _has(saved, key)]
    if missing:
        raise ConfigError(
            f"{where} was written by an older fastadapt: its config has no {', '.join(missing)}, so this version would "
            "read it with another meaning (for movielens: another cold-start split and MeLU without its bounded "
            "output); train it again"
        )


def _has(saved: Mapping[str, Any], key: str) -> bool:
    node: Any = saved
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True
