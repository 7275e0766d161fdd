"""The outer loop: meta-gradient, optimiser step, validation, checkpoints, resume, logging.

Nothing here is global: a run is (experiment, parameters, optimiser state, task-sampling generator,
step), all saved in each checkpoint, so ``resume`` continues bit-identically. The meta-batch gradient
is one function call (``meta_gradient``): under torchrun every rank computes its share of the meta-batch
and the shares are all-reduced (``_distributed``), and rank 0 alone writes logs, plots and checkpoints.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..algorithms import meta_gradient
from ..algorithms.metasgd import optimizer_groups
from ..evaluation import EvalResult, evaluate
from ..tasks import PrefetchedEpisodes
from ..typing import Params
from ._build import Experiment
from ._checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ._config import ConfigError, config_from_dict, save_config
from ._distributed import Group, join_process_group
from ._logging import RunLogger, plot_curves_if_installed
from ._pretrain import pretrain
from ._suites import check_saved_config

LAST, BEST = "last.safetensors", "best.safetensors"


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss); the message names the step and the last checkpoint."""


#: Config keys that define a run; resuming with any of them changed is refused (the suite adds its own).
_DEFINING = (
    "data",
    "task",
    "model",
    "algorithm",
    "training.seed",
    "training.meta_batch_size",
    "training.optimizer",
    "training.pretrain",
)
#: Keys under a defining prefix that only change how fast a run goes.
_HOW_FAST = ("data.workers", "data.prefetch")


def _changed_keys(saved: dict[str, Any], current: dict[str, Any], defining: tuple[str, ...]) -> list[str]:
    def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out |= flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v}
        return out

    a, b = flat(saved), flat(current)
    keys = sorted(set(a) | set(b))
    return [k for k in keys if k.startswith(defining) and k not in _HOW_FAST and a.get(k) != b.get(k)]


class _Silent:
    """The logger of ranks other than 0: rank 0 writes the run's rows."""

    def log(self, split: str, step: int, **values: float) -> None:
        pass

    def close(self) -> None:
        pass


class Trainer:
    """Meta-trains ``experiment.algorithm`` and writes everything to ``run_dir``.

    Under torchrun (``$WORLD_SIZE`` > 1) it joins the process group (``group``, else from the environment): every
    rank trains the same parameters on its share of each meta-batch, and rank 0 writes the run directory."""

    def __init__(
        self, experiment: Experiment, run_dir: str | Path, progress: bool = True, group: Group | None = None
    ) -> None:
        self.exp, self.run_dir = experiment, Path(run_dir)
        cfg = experiment.config.training
        self.group = group if group is not None else join_process_group(experiment.device, cfg.dist_timeout)
        self.progress = progress and (self.group is None or self.group.is_main)
        if self.group is not None and cfg.meta_batch_size < self.group.world_size:
            raise ConfigError(
                f"training.meta_batch_size={cfg.meta_batch_size} is smaller than the {self.group.world_size} "
                "processes: each needs at least one task; raise it or launch fewer processes"
            )
        self.params: Params = {
            k: v.to(experiment.device).requires_grad_() for k, v in experiment.algorithm.init_params().items()
        }
        if self.group is not None:
            self.group.broadcast(self.params.values())  # one model, whatever each rank's initialisation did
            if not self.group.is_main:  # a user model's dropout draws its own masks on each rank
                torch.manual_seed(cfg.seed + 7919 * self.group.rank)
        groups = optimizer_groups(self.params, cfg.outer_lr, cfg.rates_lr)  # training.rates_lr: Meta-SGD's rates
        if cfg.optimizer == "adam":
            self.optimizer: torch.optim.Optimizer = torch.optim.Adam(groups, lr=cfg.outer_lr)
        elif cfg.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(groups, lr=cfg.outer_lr)
        else:  # a Config built in Python skips the loader's checks
            raise ValueError(f"unknown training.optimizer {cfg.optimizer!r}; choose 'adam' or 'sgd'")
        if cfg.schedule not in ("constant", "cosine"):
            raise ValueError(f"unknown training.schedule {cfg.schedule!r}; choose 'constant' or 'cosine'")
        self.generator = torch.Generator().manual_seed(cfg.seed)
        if cfg.patience is not None and cfg.patience < 1:
            raise ConfigError(
                f"training.patience must be >= 1 validations (or null: no early stopping), got {cfg.patience}"
            )
        self.step = 0
        self.best: float | None = None
        self.best_step: int | None = None
        self.stale = 0  # validations since the best one
        self.schedule = self._schedule()

    def _schedule(self) -> torch.optim.lr_scheduler.LRScheduler | None:
        """torch's scheduler for ``training.schedule``, at ``self.step``: the group rates start from their
        ``base_lr`` (the config's) and the scheduler is stepped ``self.step`` times, so that a resumed run follows
        the rates of an uninterrupted one exactly, and a resumed run with a new ``training.iterations`` or rate
        follows the schedule those settings give."""
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"]
            group.pop("initial_lr", None)
        cfg = self.exp.config.training
        if cfg.schedule == "constant":
            return None
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=max(cfg.iterations, 1))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "scheduler.step() before optimizer.step()": a replay
            for _ in range(self.step):
                schedule.step()
        return schedule

    # -- checkpoints -------------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    def save(self, name: str = LAST) -> Path:
        tensors = {f"params/{k}": v for k, v in self.params.items()}
        optim = self.optimizer.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        for index, slot in optim["state"].items():
            for key, value in slot.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optim/{index}/{key}"] = value
                else:
                    scalars.setdefault(str(index), {})[key] = value
        tensors["rng/tasks"] = self.generator.get_state()  # the same on every rank
        tensors["rng/torch"] = torch.get_rng_state()  # a user model's dropout draws from the global generator
        if self.group is not None:  # every rank's, so that a resumed run draws what an uninterrupted one would
            for rank, rng in enumerate(self.group.gather_bytes(tensors["rng/torch"])):
                tensors[f"rng/torch/rank-{rank}"] = rng
            if not self.group.is_main:
                return self.checkpoint_dir / name
        state = {
            "step": self.step,
            "best": self.best,
            "best_step": self.best_step,
            "stale": self.stale,
            "param_groups": optim["param_groups"],
            "optim_scalars": scalars,
            "config": self.exp.config.to_dict(),
            "world_size": 1 if self.group is None else self.group.world_size,
        }
        path = self.checkpoint_dir / name
        save_checkpoint(path, tensors, state)
        keep = self.exp.config.training.keep
        if name == LAST and keep > 1:  # numbered copies of the latest ones; the oldest beyond keep - 1 go
            save_checkpoint(self.checkpoint_dir / f"step-{self.step:08d}.safetensors", tensors, state)
            for old in sorted(self.checkpoint_dir.glob("step-*.safetensors"))[: -(keep - 1)]:
                old.unlink(missing_ok=True)
        return path

    def restore(self, path: Path) -> None:
        tensors, state = load_checkpoint(path)
        defining = (*_DEFINING, *self.exp.suite.defining)
        saved = state.get("config", {})
        check_saved_config(saved, self.exp.suite, path)
        try:  # keys added since the checkpoint was written count as their defaults
            saved = config_from_dict(saved).to_dict()
        except ConfigError:
            pass
        changed = _changed_keys(saved, self.exp.config.to_dict(), defining)
        if changed:
            raise CheckpointError(
                f"cannot resume {path} with a different {', '.join(changed)}: these define the run; "
                "change only training.iterations, logging, validation or checkpoint settings when resuming"
            )
        missing = [k for k in self.params if f"params/{k}" not in tensors]
        if missing:
            raise CheckpointError(f"checkpoint {path} lacks parameters {missing[:5]}: it belongs to another model")
        with torch.no_grad():
            for k, p in self.params.items():
                p.copy_(tensors[f"params/{k}"])
        slots: dict[int, dict[str, Any]] = {}
        for name, value in tensors.items():
            if name.startswith("optim/"):
                _, index, key = name.split("/", 2)
                slots.setdefault(int(index), {})[key] = value
        for index, values in state["optim_scalars"].items():
            slots.setdefault(int(index), {}).update(values)
        groups = state["param_groups"]
        if len(groups) != len(self.optimizer.param_groups):
            raise CheckpointError(
                f"checkpoint {path} has {len(groups)} optimiser parameter group(s) but this run has "
                f"{len(self.optimizer.param_groups)} (Meta-SGD's rates have had their own group since "
                "training.rates_lr was added); start a new run directory instead of resuming"
            )
        current = [group["base_lr"] for group in self.optimizer.param_groups]
        self.optimizer.load_state_dict({"state": slots, "param_groups": groups})
        for group, base_lr in zip(self.optimizer.param_groups, current, strict=True):
            group["base_lr"] = base_lr  # learning rates come from the config, which may change on resume
        self.generator.set_state(tensors["rng/tasks"])
        rank = 0 if self.group is None else self.group.rank
        own = tensors.get(f"rng/torch/rank-{rank}", tensors.get("rng/torch") if rank == 0 else None)
        if own is not None:  # a rank the checkpoint's run did not have keeps the draws it seeded
            torch.set_rng_state(own)
        self.step, self.best = int(state["step"]), state["best"]
        self.best_step, self.stale = state.get("best_step"), int(state.get("stale", 0))
        self.schedule = self._schedule()

    # -- one meta-iteration ------------------------------------------------------------------
    def meta_step(self) -> dict[str, float]:
        """Samples a meta-batch, computes the meta-gradient, applies the optimiser."""
        cfg = self.exp.config.training
        size, source = cfg.meta_batch_size, self.exp.sources["train"]
        if self.group is None:
            batch = source.sample_batch(size, self.generator)
        else:
            batch = source.sample_shard(size, self.generator, self.group.share(size))
        batch = batch.to(self.exp.device, self.exp.dtype)
        grads, stats = meta_gradient(
            self.exp.train_algorithm, self.params, batch, self.exp.strategy, cfg.chunk_size, scale=size
        )
        sums = stats.sum(0)
        if self.group is not None:  # the shards' gradients, each divided by the global size, sum to the mean
            self.group.step = self.step + 1
            self.group.all_sum([*grads.values(), sums])
        loss, metric = (float(v) / size for v in sums)
        if not math.isfinite(loss) or not all(bool(torch.isfinite(g).all()) for g in grads.values()):
            last = self.checkpoint_dir / LAST
            where = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was written yet"
            raise TrainingError(
                f"non-finite loss ({loss}) or gradient at step {self.step + 1}: training stopped; {where}. "
                "Lower training.outer_lr or algorithm.inner_lr, or check the data for NaN/inf values."
            )
        lr = float(self.optimizer.param_groups[0]["lr"])
        for name, p in self.params.items():
            p.grad = grads[name]
        self.optimizer.step()
        if self.schedule is not None:
            self.schedule.step()
        self.step += 1
        every = cfg.sync_check_every
        if self.group is not None and every and self.step % every == 0:
            self.group.check_identical(self.params.values())
        return {"loss": loss, self.exp.metric: metric, "lr": lr}

    def validate(self, episodes: int, seed: int, split: str = "val") -> EvalResult:
        cfg = self.exp.config
        return evaluate(
            self.exp.algorithm,
            self.params,
            self.exp.sources[split],
            episodes=episodes,
            seed=seed,
            steps=cfg.algorithm.test_steps,
            labels=self.exp.labels(split),
            shard=self.group,
        )

    def _validate_and_keep(self, logger: RunLogger | _Silent, seed: int) -> float:
        """Validates, logs, and saves the best checkpoint if the score improved; returns the score."""
        cfg = self.exp.config.training
        result = self.validate(cfg.val_episodes, seed)
        logger.log("val", self.step, **{self.exp.metric: result.mean, "ci95": result.ci95})
        if self._improved(result.mean):
            self.best, self.best_step, self.stale = result.mean, self.step, 0
            self.save(BEST)
        else:
            self.stale += 1
        return result.mean

    def _stop_early(self) -> bool:
        patience = self.exp.config.training.patience
        return patience is not None and self.stale >= patience

    def _improved(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best if self.exp.algorithm.metric.higher_is_better else value < self.best

    # -- the loop ----------------------------------------------------------------------------
    def run(
        self,
        resume: bool = False,
        on_validation: Callable[[int, float], None] | None = None,
        checkpoint: str | Path = "last",
    ) -> dict[str, Any]:
        """Trains to ``training.iterations``, or until ``training.patience`` validations in a row have not
        improved on the best one (the row ``early_stop`` of ``metrics.jsonl`` then names the step and the best
        step); with ``resume`` continues from ``checkpoint``: ``last`` (default), ``best``, a kept ``step-N``
        or a checkpoint file (:func:`resume_path`); the rows logged after its step are dropped.

        ``on_validation(step, value)`` is called after every validation (a hyperparameter search reports to its
        pruner there); an exception it raises stops training after the checkpoints of that step are written.
        """
        cfg = self.exp.config.training
        main = self.group is None or self.group.is_main
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            self.restore(resume_path(self.run_dir, checkpoint))
            if self._stop_early():
                if not main:
                    return self._summary(stopped=self.step)
                print(
                    f"{self.run_dir} stopped early at step {self.step} (best step {self.best_step}): nothing to "
                    f"resume; raise training.patience (now {cfg.patience}) to train on",
                    file=sys.stderr,
                )
                return self._summary(stopped=self.step)
        logger: RunLogger | _Silent = _Silent()
        if main:
            save_config(self.exp.config, self.run_dir / "config.yaml")
            # a resumed run goes on past an earlier early stop: that stop is no longer where it ended
            logger = RunLogger(self.run_dir, resume_step=self.step if resume else None, drop=("early_stop",))
        val_seed = self.exp.config.evaluation.seed + 1  # validation episodes differ from test episodes
        if not resume and cfg.pretrain_steps:
            try:  # every rank pretrains alike (it is not sharded); rank 0's body is the one kept
                pretrain(self.exp, self.params, logger, val_seed, progress=self.progress)  # type: ignore[arg-type]
                if self.group is not None:
                    self.group.broadcast(self.params.values())
            except BaseException:
                logger.close()
                raise
            if cfg.val_every or cfg.iterations == 0:  # the meta-phase must then beat the pretrained body
                self._validate_and_keep(logger, val_seed)
            self.save(LAST)  # a resume continues from the pretrained body, never pretrains again
        elif not resume and cfg.iterations == 0:
            self.save(LAST)
        bar = tqdm(total=cfg.iterations, initial=self.step, desc="meta-train", disable=not self.progress)
        stopped = None
        try:
            while self.step < cfg.iterations and not self._stop_early():
                row = self.meta_step()
                bar.update(1)
                validated = None
                if self.step % cfg.log_every == 0 or self.step == cfg.iterations:
                    logger.log("train", self.step, **row)
                    bar.set_postfix(loss=f"{row['loss']:.3f}", **{self.exp.metric: f"{row[self.exp.metric]:.3f}"})
                if cfg.val_every and (self.step % cfg.val_every == 0 or self.step == cfg.iterations):
                    validated = self._validate_and_keep(logger, val_seed)
                if self.step % cfg.checkpoint_every == 0 or self.step == cfg.iterations:
                    self.save(LAST)
                if self._stop_early():
                    stopped = self.step
                    logger.log("early_stop", self.step, best_step=self.best_step or 0, patience=cfg.patience or 0)
                    self.save(LAST)
                if on_validation is not None and validated is not None:
                    on_validation(self.step, validated)
        finally:
            bar.close()
            logger.close()
            for source in self.exp.sources.values():
                if isinstance(source, PrefetchedEpisodes):
                    source.close()  # its workers; a later sample starts them again
        if main:
            plot_curves_if_installed(self.run_dir, self.exp.metric, self.best_step)
        return self._summary(stopped)

    def _summary(self, stopped: int | None) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir),
            "step": self.step,
            "best_val": self.best,
            "best_step": self.best_step,
            "stopped_early_at": stopped,
        }


def kept_checkpoints(run_dir: Path) -> dict[str, int | None]:
    """The run's checkpoint files (``last``, ``best``, ``step-N``) -> their step, or ``None`` for one that does
    not load (truncated, altered)."""
    found: dict[str, int | None] = {}
    for path in sorted(Path(run_dir, "checkpoints").glob("*.safetensors")):
        try:
            found[path.stem] = int(load_checkpoint(path)[1]["step"])
        except (CheckpointError, KeyError, ValueError):
            found[path.stem] = None
    return found


def resume_path(run_dir: Path, checkpoint: str | Path = "last") -> Path:
    """The file to resume from: ``last``, ``best`` or ``step-N`` of ``run_dir/checkpoints``, or a path.

    Raises:
        CheckpointError: it is missing or does not load; the message names the kept checkpoints that do.
    """
    folder = Path(run_dir) / "checkpoints"
    named = str(checkpoint)
    path = folder / f"{named}.safetensors" if "/" not in named and not named.endswith(".safetensors") else Path(named)
    try:
        load_checkpoint(path)
    except CheckpointError as error:
        usable = {
            k: v for k, v in kept_checkpoints(run_dir).items() if v is not None and folder / f"{k}.safetensors" != path
        }
        if usable:
            listed = ", ".join(f"{k} (step {v})" for k, v in usable.items())
            fix = f"these still load: {listed}; resume from one with --checkpoint {next(iter(usable))}"
        else:
            fix = "no other checkpoint of this run loads; start a new run"
        raise CheckpointError(f"{str(error).split('; resume from')[0].split('; start a new')[0]}; {fix}") from None
    return path
