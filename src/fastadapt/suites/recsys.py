"""The recommender suite: one task per user (support and query ratings) in the cold-start protocol of MeLU (Lee et
al., KDD 2019, arXiv:1908.00413); its config section is ``recsys``, its model MeLU, its report every cold-start
state with the baselines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ..data import DataError
from ..models import MeLU
from ..recsys import (
    ITEM_ID_COLUMN,
    RecsysConfig,
    RecsysData,
    RecsysReport,
    UserTasks,
    build_metamf,
    evaluate_recommender_run,
    feature_layout,
    load_recsys_data,
    plot_support_curves,
    rating_range,
)
from ..tasks import TaskSource
from ..training import Config, ConfigError, Experiment, Suite, SuiteParts


def recsys_data(config: Config) -> RecsysData:
    """The ratings and the cold-start split of a movielens config."""
    try:
        return load_recsys_data(config.section("recsys"), config.data.root)
    except (DataError, ValueError) as error:
        raise ConfigError(f"data.dataset=movielens: {error}") from None


MODELS = ("melu", "metamf")


def _model(config: Config, recsys: RecsysData) -> nn.Module:
    m, a = config.model, config.algorithm
    if m.name not in MODELS:
        raise ConfigError(f"model.name must be one of {MODELS} with data.dataset=movielens (got {m.name!r})")
    if (m.name == "metamf") != (a.name == "ridge"):
        raise ConfigError(
            f"model.name=metamf goes with algorithm.name=ridge, and ridge with metamf (got {m.name!r} with {a.name!r})"
        )
    train = recsys.split.tasks["train"]
    if m.name == "metamf":
        r = config.section("recsys")
        return build_metamf(
            recsys.data,
            train,
            dim=m.embedding_dim,
            reg=r.mf_reg,
            seed=r.seed,
            support_only=r.mf_support_only,
            freeze_items=r.mf_freeze_items,
        )
    return _melu(recsys, m.embedding_dim, m.widths, m.act, m.item_ids)


def _melu(recsys: RecsysData, dim: int, widths: tuple[int, ...], act: str, item_ids: bool) -> nn.Module:
    categories, multi_hot = feature_layout(recsys.data, item_ids=item_ids)
    mean = float(np.mean([t.support_ratings.mean() for t in recsys.split.tasks["train"]]))
    return MeLU(
        categories,
        multi_hot,
        dim=dim,
        hidden=widths,
        act=act,
        rating_offset=mean,
        zero=(ITEM_ID_COLUMN,),
        rating_range=rating_range(recsys.data),  # every prediction on the rating scale
    )


def build(config: Config) -> SuiteParts:
    recsys = recsys_data(config)
    # Validation: the validation users (new users kept for selection, every one scored at each validation);
    # test: the new users (user-cold). No reported state selects anything.
    states = {"train": "train", "val": "val", "test": "user_cold"}
    try:
        sources: dict[str, TaskSource] = {
            part: UserTasks(
                recsys.data,
                recsys.split.state(state),  # an empty state is an error that names the protocol's knobs
                exhaustive=part == "val",
                support_max=config.section("recsys").train_support_max if part == "train" else None,
            )
            for part, state in states.items()
        }
    except ValueError as error:
        raise ConfigError(f"data.dataset=movielens: {error}") from None
    return SuiteParts(sources, _model(config, recsys), loss="mse", context=recsys)


def evaluate(
    experiment: Experiment,
    params: Any,
    *,
    run_dir: Path,
    steps: int | None = None,
    progress: bool = False,
    support_cap: int | None = None,
    **_: Any,
) -> RecsysReport:
    """Every cold-start state, metric and baseline, and the support-size curves; writes
    ``eval/recsys_summary.json`` (``_cap<N>`` with a cap) and ``eval/recsys_curves.png`` (extra ``plots``)."""
    cfg = experiment.config
    model = experiment.model
    if cfg.model.name != "melu":  # the global and fine-tune baselines are MeLU's network (the paper's sizes)
        model = _melu(experiment.context, 32, (64, 64), "relu", True)
    report = evaluate_recommender_run(
        cfg.name,
        model,
        experiment.algorithm,
        params,
        experiment.context,
        cfg.section("recsys"),
        steps=steps if steps is not None else cfg.algorithm.test_steps,
        seed=cfg.evaluation.seed,
        progress=progress,
        support_cap=support_cap,
    )
    out = run_dir / "eval"
    out.mkdir(exist_ok=True)
    name = "recsys_summary.json" if support_cap is None else f"recsys_summary_cap{support_cap}.json"
    (out / name).write_text(json.dumps(report.summary(), indent=2) + "\n")
    plot_support_curves(report.curves, out / "recsys_curves.png")
    return report


SUITE = Suite(
    "recsys",
    ("movielens",),
    build,
    sections={"recsys": RecsysConfig},
    defining=(
        *("recsys.source", "recsys.synthetic", "recsys.year", "recsys.new_user", "recsys.query", "recsys.min"),
        *("recsys.max", "recsys.time_ordered", "recsys.support_cap", "recsys.seed", "recsys.val_user"),
        "recsys.mf_",
        "recsys.train_support",
    ),
    evaluator=evaluate,
    # Runs before the validation users (and MeLU's bounded output) split the users differently.
    required_saved=("recsys.val_user_fraction",),
    description="cold-start recommendation on MovieLens 100K / 1M or a synthetic twin (MeLU protocol)",
)
