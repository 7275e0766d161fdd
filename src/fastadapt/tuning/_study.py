"""``fastadapt tune``: a Bayesian search (Optuna) over any config keys, each trial a run of the core trainer.

Storage follows Optuna's advice: a journal file in the study directory (``JournalFileBackend``: file locks,
safe for several processes on one machine; SQLite is not) or a database URL (PostgreSQL) for workers on
several machines. Re-running the same command continues the study. A trial whose worker died (no heartbeat
for ``grace`` seconds) is failed and enqueued again, once.

Needs the ``tune`` extra (Optuna, and matplotlib for the plots): ``pip install 'fastadapt[tune]'``.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from .._extras import optional, require
from ..training import Config, ConfigError, Trainer, TrainingError, build_experiment, resolve_config
from ..training._config import save_config
from ._space import Dimension, apply, load_space

SAMPLERS = ("tpe", "gp", "cmaes", "random")
PRUNERS = ("hyperband", "median", "none")
JOURNAL = "study.journal"
HEARTBEAT_S = 10.0


@dataclass(frozen=True)
class TuneResult:
    """What ``tune --json`` prints."""

    study: str
    storage: str
    direction: str
    best_value: float | None
    best_params: dict[str, Any]
    best_config: str | None
    n_trials: int
    n_complete: int
    n_pruned: int
    n_failed: int
    plots: list[str]

    def summary(self) -> dict[str, Any]:
        return asdict(self)


def _optuna() -> ModuleType:
    return require("optuna", "tune", "fastadapt tune")


def direction_of(config: Config) -> Literal["minimize", "maximize"]:
    """The direction in which the run's metric improves (accuracy is maximised, MSE minimised): built once, since the
    metric is the suite's default unless ``algorithm.metric`` or ``algorithm.loss`` names one."""
    return "maximize" if build_experiment(config).algorithm.metric.higher_is_better else "minimize"


def open_storage(url: str | None, study_dir: Path) -> Any:
    optuna = _optuna()
    from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
    from optuna.storages.journal import JournalFileBackend

    if url is None:
        study_dir.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(study_dir / JOURNAL)))
    if url.startswith("sqlite"):
        raise ConfigError(
            "--storage sqlite:// is not safe for parallel workers (Optuna's FAQ); leave --storage unset for a "
            "journal file, or use postgresql://"
        )
    try:
        with warnings.catch_warnings():
            # Optuna labels the heartbeat and its retry callback experimental; they are what it recommends.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(
                url,
                heartbeat_interval=int(HEARTBEAT_S),
                grace_period=int(6 * HEARTBEAT_S),
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
            )
    except (ImportError, optuna.exceptions.StorageInternalError, ValueError) as error:
        raise ConfigError(f"--storage {url}: {error}") from None


def make_sampler(name: str, seed: int | None) -> Any:
    optuna = _optuna()

    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "cmaes":
        try:
            import cmaes  # noqa: F401
        except ImportError:
            raise ConfigError("--sampler cmaes needs the package cmaes: pip install cmaes") from None
        return optuna.samplers.CmaEsSampler(seed=seed)
    raise ConfigError(f"unknown sampler {name!r}; choose one of {SAMPLERS}")


def make_pruner(name: str, config: Config) -> Any:
    optuna = _optuna()

    every = config.training.val_every
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=every, max_resource=config.training.iterations)
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=every)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"unknown pruner {name!r}; choose one of {PRUNERS}")


class _Heartbeat:
    """Writes the time into the trial's ``heartbeat`` attribute every few seconds while it runs."""

    def __init__(self, trial: Any, interval: float) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(trial, interval), daemon=True)

    def _beat(self, trial: Any, interval: float) -> None:
        while not self._stop.wait(interval):
            trial.set_user_attr("heartbeat", time.time())

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def recover_stale_trials(study: Any, grace: float) -> list[int]:
    """Fails the RUNNING trials with no heartbeat for ``grace`` seconds (their worker died) and enqueues each
    once more with the same parameters. Returns the failed trials' numbers."""
    from optuna.trial import TrialState

    # Optuna has no public call to fail another process's trial; the storage's own method does it.
    now, failed = time.time(), []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        last = trial.user_attrs.get("heartbeat", trial.datetime_start.timestamp() if trial.datetime_start else now)
        if now - float(last) < grace:
            continue
        study._storage.set_trial_user_attr(trial._trial_id, "error", f"worker stopped (no heartbeat for {grace:.0f} s)")
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        failed.append(trial.number)
        if "retry_of" not in trial.user_attrs:
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number}, skip_if_exists=False)
    return failed


def _objective(base: Config, space: list[Dimension], study_dir: Path) -> Any:
    optuna = _optuna()

    def objective(trial: Any) -> float:
        params = {d.key: d.suggest(trial) for d in space}
        config = apply(base, params)
        run_dir = study_dir / "trials" / f"{trial.number:04d}"

        def report(step: int, value: float) -> None:
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at step {step} (validation {value:.4f})")

        with _Heartbeat(trial, HEARTBEAT_S):
            try:
                out = Trainer(build_experiment(config), run_dir, progress=False).run(on_validation=report)
            except (TrainingError, ConfigError, ValueError, FloatingPointError) as error:
                trial.set_user_attr("error", str(error))
                raise
        if out["best_val"] is None:
            raise ConfigError("the trial ran no validation; tuning needs training.val_every > 0")
        trial.set_user_attr("run_dir", str(run_dir))
        return float(out["best_val"])

    return objective


@dataclass(frozen=True)
class TuneJob:
    """Everything a worker process needs (picklable)."""

    config_name: str
    overrides: tuple[str, ...]
    space_path: str
    study_name: str
    storage_url: str | None
    study_dir: str
    trials: int
    sampler: str
    pruner: str
    seed: int | None


@contextlib.contextmanager
def _open_study(job: TuneJob, base: Config) -> Iterator[Any]:
    """The study, created or loaded; a database storage's connections are closed afterwards."""
    optuna = _optuna()

    storage = open_storage(job.storage_url, Path(job.study_dir))
    try:
        yield optuna.create_study(
            study_name=job.study_name,
            storage=storage,
            sampler=make_sampler(job.sampler, job.seed),
            pruner=make_pruner(job.pruner, base),
            direction=direction_of(base),
            load_if_exists=True,
        )
    finally:
        engine = getattr(storage, "engine", None)
        if engine is not None:
            engine.dispose()


def run_worker(job: TuneJob, worker: int = 0) -> None:
    """Runs trials until the study has ``job.trials`` complete or pruned ones (shared by all workers)."""
    optuna = _optuna()
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    base = resolve_config(job.config_name, list(job.overrides))
    space = load_space(job.space_path, base)
    if job.seed is not None and worker:
        job = TuneJob(**{**asdict(job), "seed": job.seed + worker})  # workers sample differently
    done = MaxTrialsCallback(job.trials, states=(TrialState.COMPLETE, TrialState.PRUNED))
    with _open_study(job, base) as study:
        if _finished(study) >= job.trials:
            return
        study.optimize(
            _objective(base, space, Path(job.study_dir)),
            n_trials=job.trials,  # an upper bound per worker; the callback stops every worker at the study's total
            callbacks=[done],
            catch=(TrainingError, ConfigError, ValueError, FloatingPointError),
        )


def _finished(study: Any) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def tune(job: TuneJob, workers: int = 1, grace: float = 6 * HEARTBEAT_S) -> TuneResult:
    """Runs (or continues) a study with ``workers`` processes, then writes the best config and the plots."""
    optuna = _optuna()

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    base = resolve_config(job.config_name, list(job.overrides))
    load_space(job.space_path, base)  # fail before starting workers
    if not base.training.val_every:
        raise ConfigError("tuning reports validation scores: set training.val_every > 0")
    with _open_study(job, base) as study:  # creates the study (and a database's tables) before any worker starts
        if job.storage_url is None:
            recover_stale_trials(study, grace)
    if workers == 1:
        run_worker(job)
    else:
        context = multiprocessing.get_context("spawn")
        processes = [context.Process(target=run_worker, args=(job, i)) for i in range(workers)]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        bad = [p.exitcode for p in processes if p.exitcode]
        if bad:
            raise ConfigError(f"{len(bad)} worker(s) exited with codes {bad}; the study so far is kept")
    return report(job, base)


def report(job: TuneJob, base: Config) -> TuneResult:
    """The study's summary, the best configuration as YAML, and the plots (PNG)."""
    with _open_study(job, base) as study:
        return _summarise(job, base, study)


def _summarise(job: TuneJob, base: Config, study: Any) -> TuneResult:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    study_dir = Path(job.study_dir)
    best_config = None
    best_value, best_params = None, {}
    if complete:
        best = study.best_trial
        best_value, best_params = float(best.value), dict(best.params)
        path = study_dir / "best_config.yaml"
        save_config(apply(base, best_params), path)
        best_config = str(path)
    return TuneResult(
        study=job.study_name,
        storage=job.storage_url or str(study_dir / JOURNAL),
        direction="maximize" if study.direction.name == "MAXIMIZE" else "minimize",
        best_value=best_value,
        best_params=best_params,
        best_config=best_config,
        n_trials=len(trials),
        n_complete=len(complete),
        n_pruned=sum(t.state == TrialState.PRUNED for t in trials),
        n_failed=sum(t.state == TrialState.FAIL for t in trials),
        plots=plot_study(study, study_dir) if complete and optional("matplotlib", "plots", "the study plots") else [],
    )


def plot_study(study: Any, study_dir: Path) -> list[str]:
    """Optimisation history, parameter importances and intermediate values as PNG; a plot with nothing to show
    yet (e.g. importances from one trial, which Optuna warns are all equal) is skipped.

    Drawn here on matplotlib ``Figure`` objects: Optuna's matplotlib views draw on the global current figure and
    switch the global style sheet to ggplot, and a library leaves the user's backend and style alone.

    Raises:
        MissingExtraError: matplotlib is not installed (``pip install 'fastadapt[plots]'``).
    """
    require("matplotlib", "plots", "the study plots")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    written = []
    for name, draw in (("history", _draw_history), ("importances", _draw_importances), ("intermediate", _draw_steps)):
        fig = Figure(figsize=(7, 4))
        FigureCanvasAgg(fig)
        if draw(fig.add_subplot(), study):
            path = study_dir / f"{name}.png"
            fig.savefig(path, dpi=100, bbox_inches="tight")
            written.append(str(path))
    return written


def _draw_history(ax: Any, study: Any) -> bool:
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not trials:
        return False
    numbers, values = [t.number for t in trials], [float(t.value) for t in trials]
    best = itertools.accumulate(values, min if study.direction == StudyDirection.MINIMIZE else max)
    ax.plot(numbers, values, "o", label="trial")
    ax.step(numbers, list(best), where="post", label="best so far")
    ax.set(xlabel="trial", ylabel="objective value", title="optimisation history")
    ax.grid(alpha=0.3)
    ax.legend()
    return True


def _draw_importances(ax: Any, study: Any) -> bool:
    optuna = _optuna()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            importances = optuna.importance.get_param_importances(study)
        except (ValueError, RuntimeError):  # no parameter, or one that never varies
            return False
    if not importances or caught:  # Optuna warns when they are not meaningful (e.g. one trial: all equal)
        return False
    names = list(importances)[::-1]  # the most important on top
    ax.barh(names, [importances[n] for n in names])
    ax.set(xlabel="importance for the objective value (Optuna's default evaluator)", title="parameter importances")
    return True


def _draw_steps(ax: Any, study: Any) -> bool:
    trials = [t for t in study.get_trials(deepcopy=False) if t.intermediate_values]
    if not trials:
        return False
    for t in trials:
        steps = sorted(t.intermediate_values)
        ax.plot(steps, [t.intermediate_values[k] for k in steps], ".-", alpha=0.7, label=f"trial {t.number}")
    ax.set(xlabel="meta-iteration", ylabel="validation value", title="intermediate values")
    ax.grid(alpha=0.3)
    if len(trials) <= 10:
        ax.legend(fontsize=7)
    return True
