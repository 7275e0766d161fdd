"""From a run's configuration to the ratings, the cold-start split and the network's input layout."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ._coldstart import ColdStartSplit, cold_start_split
from ._movielens import MovieLens, load_movielens
from ._synthetic import write_synthetic_movielens

SOURCES = ("synthetic", "ml-100k", "ml-1m")


@dataclass(frozen=True)
class RecsysConfig:
    """data.dataset=movielens: which ratings and the cold-start protocol (MeLU, KDD 2019)."""

    source: Literal["synthetic", "ml-100k", "ml-1m"] = "synthetic"  # files under data.root or the cache
    synthetic_users: int = 800
    synthetic_items: int = 1000
    year_threshold: int | None = None  # items released in or after it are new (default: per dataset)
    new_user_fraction: float = 0.2
    query_size: int = 10
    min_ratings: int = 13
    max_ratings: int = 100
    time_ordered: bool = False  # query = a user's last query_size ratings
    support_cap: int | None = None  # at most this many support ratings per user
    negatives: int = 100  # unrated items ranked with the query items for top-K metrics
    eval_users: int | None = None  # evaluate at most this many users per state (all if None)
    baselines: bool = True  # evaluate global / fine-tune / MF / popularity beside the run's model
    pretrain_epochs: int = 10  # the global baseline's training epochs
    finetune_lr: float = 0.005  # the fine-tune baseline: gradient steps on a user's support ratings
    finetune_steps: int = 5
    seed: int = 0


@dataclass(frozen=True)
class RecsysData:
    data: MovieLens
    split: ColdStartSplit


def load_recsys_data(recsys: Any, root: str | Path | None) -> RecsysData:
    """Loads (or generates, for ``source=synthetic``, in MovieLens-1M's format) the ratings and splits
    them into the cold-start states; ``recsys`` is a :class:`RecsysConfig`."""
    if recsys.source not in SOURCES:
        raise ValueError(f"unknown recsys.source {recsys.source!r}; choose one of {SOURCES}")
    if recsys.source == "synthetic":
        with tempfile.TemporaryDirectory() as folder:
            write_synthetic_movielens(
                folder, "ml-1m", n_users=recsys.synthetic_users, n_items=recsys.synthetic_items, seed=recsys.seed
            )
            data = load_movielens("ml-1m", root=folder)
    else:
        data = load_movielens(recsys.source, root=root)
    split = cold_start_split(
        data,
        year_threshold=recsys.year_threshold,
        new_user_fraction=recsys.new_user_fraction,
        query_size=recsys.query_size,
        min_ratings=recsys.min_ratings,
        max_ratings=recsys.max_ratings,
        time_ordered=recsys.time_ordered,
        support_cap=recsys.support_cap,
        seed=recsys.seed,
    )
    return RecsysData(data, split)
