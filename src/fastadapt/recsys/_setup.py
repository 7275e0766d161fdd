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
    synthetic_feature_share: float = 0.05  # share of a synthetic user's taste their features explain (ML: little)
    year_threshold: int | None = None  # items released in or after it are new (default: per dataset)
    new_user_fraction: float = 0.2
    val_user_fraction: float = 0.1  # validation users: early stopping, best checkpoint, baselines' settings
    query_size: int = 10
    min_ratings: int = 13
    max_ratings: int = 100
    time_ordered: bool = False  # query = a user's last query_size ratings
    support_cap: int | None = None  # at most this many support ratings per user
    negatives: int = 100  # unrated items ranked with the query items for top-K metrics
    eval_users: int | None = None  # evaluate at most this many users per state (all if None)
    baselines: bool = True  # evaluate global / fine-tune / MF / bias / popularity beside the run's model
    tune_baselines: bool = True  # choose the baselines' settings on the validation users (grids: recsys GRIDS)
    pretrain_epochs: int = 10  # the global baseline's training epochs
    finetune_lr: float = 0.005  # the fine-tune baseline: gradient steps on a user's support ratings
    finetune_steps: int = 5
    train_support_max: int | None = None  # meta-training batches keep 1 to this many support ratings per user
    mf_reg: float = 5.0  # model.name=metamf: the ridge penalty of the alternating least squares it starts from
    mf_freeze_items: bool = False  # model.name=metamf: meta-training leaves the factorisation's item side as it is
    mf_support_only: bool = True  # model.name=metamf: that factorisation sees the training users' support ratings only
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
                folder,
                "ml-1m",
                n_users=recsys.synthetic_users,
                n_items=recsys.synthetic_items,
                seed=recsys.seed,
                feature_share=recsys.synthetic_feature_share,
            )
            data = load_movielens("ml-1m", root=folder)
    else:
        data = load_movielens(recsys.source, root=root)
    split = cold_start_split(
        data,
        year_threshold=recsys.year_threshold,
        new_user_fraction=recsys.new_user_fraction,
        val_user_fraction=recsys.val_user_fraction,
        query_size=recsys.query_size,
        min_ratings=recsys.min_ratings,
        max_ratings=recsys.max_ratings,
        time_ordered=recsys.time_ordered,
        support_cap=recsys.support_cap,
        seed=recsys.seed,
    )
    return RecsysData(data, split)
