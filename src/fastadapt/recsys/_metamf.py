"""Meta-learned matrix factorisation: the "MF + meta-update" cold-start recommender.

Item factors and biases are pretrained on the training ratings (alternating least squares). A new user's
``[bias, factors]`` vector ``theta`` is folded in from their support ratings by a ridge solve with the item side
fixed, as the MF baseline does, but shrunk toward a prior mean that is a function of the user's features
(gender, age, occupation, zip prefix: one learned vector per category, summed) with a learned per-dimension
precision. Meta-training (algorithm ``ridge``, :mod:`fastadapt.algorithms.ridge`) then tunes everything, item
side included, for the query error after the fold-in, through the closed-form solve.

The item side of an item is its pretrained ``[bias, factors]`` plus a learned linear map of its features (genres,
release year), so that an item without training ratings (item-cold) starts from what items like it look like.

At initialisation, the prior is the ridge regression of the pretrained users' vectors on their features, and the
precision the ratio of the training noise to the variance left around that prior (empirical Bayes); meta-training
starts from there. With the MF baseline's item sides (ALS on all training ratings, ``support_only=False``), no
feature map, a zero prior and precision ``reg``, its fold-in is exactly the MF baseline's.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import Tensor, nn

from ._coldstart import UserTask
from ._methods import alternating_least_squares, rating_range
from ._movielens import MovieLens
from ._tasks import ITEM_ID_COLUMN, USER_COLUMNS


def item_features(data: MovieLens) -> np.ndarray:
    """``(n_items, n_genres + 2)`` float32: the genres (multi-hot), the release year in decades from 1990, and a
    flag for an unknown year (whose year column is then 0)."""
    known = data.year > 0
    year = np.where(known, (data.year - 1990) / 10.0, 0.0)
    return np.concatenate([data.genres, year[:, None], (~known)[:, None]], axis=1).astype(np.float32)


def _ridge_fit(x: np.ndarray, y: np.ndarray, reg: float) -> np.ndarray:
    """``(1 + f, k)`` intercept and weights of the ridge regression of ``y`` ``(n, k)`` on ``x`` ``(n, f)`` (the
    intercept is not penalised)."""
    design = np.concatenate([np.ones((len(x), 1)), x], axis=1)
    penalty = reg * np.eye(design.shape[1])
    penalty[0, 0] = 0.0
    return np.linalg.solve(design.T @ design + penalty, design.T @ y)


class MetaMF(nn.Module):
    """The rating model of meta-learned MF, for algorithm ``ridge`` (see the module docstring).

    Reads the columns of :func:`~fastadapt.recsys.pair_features`: the user's four categories and the item's index.

    Args:
        user_categories: the cardinality of each user column (gender, age, occupation, zip prefix).
        item_features: ``(n_items, f)`` features of every item (:func:`item_features`).
        dim: number of factors.
        rating_range: predictions are clipped to it.
        freeze_items: the item side (pretrained biases and factors) is a buffer, which meta-training leaves as it
            is (``recsys.mf_freeze_items``); otherwise a parameter.
    """

    def __init__(
        self,
        user_categories: list[int],
        item_features: np.ndarray,
        dim: int = 16,
        rating_range: tuple[float, float] = (1.0, 5.0),
        freeze_items: bool = False,
    ) -> None:
        super().__init__()
        n_items, f = item_features.shape
        k = dim + 1
        self.dim, self.low, self.high = dim, float(rating_range[0]), float(rating_range[1])
        self.register_buffer("features", torch.from_numpy(np.ascontiguousarray(item_features, dtype=np.float32)))
        self.mu = nn.Parameter(torch.zeros(()))
        self.item_side: Tensor
        if freeze_items:  # a buffer: meta-training leaves the pretrained item side as it is
            self.register_buffer("item_side", torch.zeros(n_items, k))
        else:
            self.item_side = nn.Parameter(torch.zeros(n_items, k))  # [bias, factors] beyond the feature map
        self.item_map = nn.Linear(f, k)
        nn.init.zeros_(self.item_map.weight)
        nn.init.zeros_(self.item_map.bias)
        self.prior_base = nn.Parameter(torch.zeros(k))
        tables = [nn.Embedding(n, k) for n in user_categories]
        for table in tables:
            nn.init.zeros_(table.weight)
        self.prior_tables = nn.ModuleList(tables)
        self.features: Tensor
        self.log_precision = nn.Parameter(torch.zeros(k))

    def forward(self, x: Tensor, theta: Tensor | None = None, terms: bool = False) -> Tensor | tuple[Tensor, ...]:
        items = x[:, ITEM_ID_COLUMN].long()  # (n,)
        side = self.item_side[items] + self.item_map(self.features[items])  # (n, 1 + dim)
        offset = self.mu + side[:, 0]  # (n,)
        design = torch.cat([torch.ones_like(side[:, :1]), side[:, 1:]], dim=1)  # (n, 1 + dim)
        prior = self.prior_base + sum(t(x[:, j].long()) for j, t in enumerate(self.prior_tables))  # (n, 1 + dim)
        if terms:
            return offset, design, prior, self.log_precision
        vector = prior if theta is None else theta
        return (offset + (design * vector).sum(-1)).clamp(self.low, self.high).unsqueeze(1)  # (n, 1)


def build_metamf(
    data: MovieLens,
    train: list[UserTask],
    dim: int = 16,
    reg: float = 5.0,
    sweeps: int = 10,
    seed: int = 0,
    support_only: bool = True,
    freeze_items: bool = False,
) -> MetaMF:
    """A :class:`MetaMF` initialised from alternating least squares on ``train`` (``dim`` factors, ``reg``):
    item sides split into a feature map (ridge regression of the fitted items' sides on their features) and
    the residual (zero for items without training ratings); the user prior regressed on user features; the
    precision by empirical Bayes.

    ``support_only``: the factorisation sees the training users' support ratings only, so that their query
    ratings, which meta-training scores the fold-in on, are held out from it as a new user's would be (otherwise
    the meta-objective rewards trusting item factors that have memorised those very ratings)."""
    if support_only:
        empty_items, empty_ratings = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        train = [dataclasses.replace(t, query_items=empty_items, query_ratings=empty_ratings) for t in train]
    factors = alternating_least_squares(data, train, dim, reg, sweeps, seed)
    features = item_features(data)
    model = MetaMF([data.feature_sizes[c] for c in USER_COLUMNS], features, dim, rating_range(data), freeze_items)
    seen = factors.seen_items
    item_weights = _ridge_fit(features[seen], factors.item_side[seen], reg=1.0)  # (1 + f, 1 + dim)
    mapped = np.concatenate([np.ones((len(features), 1)), features], axis=1) @ item_weights
    residual_items = np.where(seen[:, None], factors.item_side - mapped, 0.0)

    users = factors.seen_users
    sizes = [data.feature_sizes[c] for c in USER_COLUMNS]
    one_hot = np.concatenate(
        [np.eye(n)[getattr(data, c)[users]] for n, c in zip(sizes, USER_COLUMNS, strict=True)], axis=1
    )  # (n_users, sum(sizes))
    user_weights = _ridge_fit(one_hot, factors.user_side[users], reg=10.0)
    prior = np.concatenate([np.ones((len(one_hot), 1)), one_hot], axis=1) @ user_weights
    spread = np.mean((factors.user_side[users] - prior) ** 2, axis=0)  # (1 + dim,)
    precision = factors.noise / np.maximum(spread, 1e-6)
    with torch.no_grad():
        model.mu.fill_(factors.mu)
        model.item_side.copy_(torch.from_numpy(residual_items))
        model.item_map.bias.copy_(torch.from_numpy(item_weights[0]))
        model.item_map.weight.copy_(torch.from_numpy(item_weights[1:].T))
        model.prior_base.copy_(torch.from_numpy(user_weights[0]))
        start = 1
        for table, n in zip(model.prior_tables, sizes, strict=True):
            assert isinstance(table, nn.Embedding)
            table.weight.copy_(torch.from_numpy(user_weights[start : start + n]))
            start += n
        model.log_precision.copy_(torch.from_numpy(np.log(np.clip(precision, 1e-3, 1e4))))
    return model
