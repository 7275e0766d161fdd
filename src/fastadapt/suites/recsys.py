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
    evaluate_recommender_run,
    feature_layout,
    load_recsys_data,
)
from ..tasks import TaskSource
from ..training import Config, ConfigError, Experiment, Suite, SuiteParts


def recsys_data(config: Config) -> RecsysData:
    """The ratings and the cold-start split of a movielens config."""
    try:
        return load_recsys_data(config.section("recsys"), config.data.root)
    except (DataError, ValueError) as error:
        raise ConfigError(f"data.dataset=movielens: {error}") from None


def _model(config: Config, recsys: RecsysData) -> nn.Module:
    m = config.model
    if m.name != "melu":
        raise ConfigError(f"model.name=melu goes with data.dataset=movielens (got {m.name!r} with 'movielens')")
    categories, multi_hot = feature_layout(recsys.data, item_ids=m.item_ids)
    mean = float(np.mean([t.support_ratings.mean() for t in recsys.split.tasks["train"]]))
    return MeLU(
        categories,
        multi_hot,
        dim=m.embedding_dim,
        hidden=m.widths,
        act=m.act,
        rating_offset=mean,
        zero=(ITEM_ID_COLUMN,),
    )


def build(config: Config) -> SuiteParts:
    recsys = recsys_data(config)
    # Validation: held-out query ratings of existing users; test: new users (user-cold).
    states = {"train": "train", "val": "warm", "test": "user_cold"}
    try:
        sources: dict[str, TaskSource] = {
            part: UserTasks(recsys.data, recsys.split.tasks[state]) for part, state in states.items()
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
    """Every cold-start state, metric and baseline; writes ``eval/recsys_summary.json`` (``_cap<N>`` with a cap)."""
    cfg = experiment.config
    report = evaluate_recommender_run(
        cfg.name,
        experiment.model,
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
    return report


SUITE = Suite(
    "recsys",
    ("movielens",),
    build,
    sections={"recsys": RecsysConfig},
    defining=(
        *("recsys.source", "recsys.synthetic", "recsys.year", "recsys.new_user", "recsys.query", "recsys.min"),
        *("recsys.max", "recsys.time_ordered", "recsys.support_cap", "recsys.seed"),
    ),
    evaluator=evaluate,
    description="cold-start recommendation on MovieLens 100K / 1M or a synthetic twin (MeLU protocol)",
)
