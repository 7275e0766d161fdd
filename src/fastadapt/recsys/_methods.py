"""What the recommender evaluation compares: a meta-learned model and the baselines.

Every method maps one user's support ratings and a list of items to (predicted ratings, ranking scores),
both ``(n_items,)``; the ranking scores order the items for nDCG and top-K (for all but popularity they
are the predicted ratings).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import nn

from ..algorithms import Algorithm, build_algorithm, forward, module_params
from ..evaluation import to_placement
from ..typing import Params
from ._coldstart import UserTask
from ._movielens import MovieLens
from ._tasks import pair_features


class Recommender(Protocol):
    @property
    def name(self) -> str: ...

    def score(
        self, user: int, support_items: np.ndarray, support_ratings: np.ndarray, items: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(predicted ratings, ranking scores) of ``items`` for ``user`` after seeing the support ratings."""
        ...


@dataclass(frozen=True, eq=False)
class Adapted:
    """A model adapted per user by ``algorithm.adapt`` (``steps`` inner steps; 0 = no adaptation), on the
    parameters' device and floating-point type; the scores come back as float64 numpy arrays."""

    name: str
    algorithm: Algorithm
    params: Params
    data: MovieLens
    steps: int | None = None

    def score(
        self, user: int, support_items: np.ndarray, support_ratings: np.ndarray, items: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        params = self.params
        sx = to_placement(pair_features(self.data, np.full(len(support_items), user), support_items), params)
        sy = to_placement(torch.from_numpy(support_ratings.astype(np.float32)).unsqueeze(1), params)  # (n_support, 1)
        qx = to_placement(pair_features(self.data, np.full(len(items), user), items), params)
        state = self.algorithm.adapt(params, sx, sy, steps=self.steps)
        with torch.no_grad():
            out = self.algorithm.predict(params, state, qx)  # (n_items, 1)
        ratings = out.squeeze(1).cpu().numpy().astype(np.float64)
        return ratings, ratings


def pretrain(
    model: nn.Module,
    data: MovieLens,
    tasks: list[UserTask],
    epochs: int = 5,
    lr: float = 1e-3,
    batch_size: int = 256,
    seed: int = 0,
    val_tasks: list[UserTask] | None = None,
    history: list[float] | None = None,
) -> Params:
    """The no-meta-learning baseline: ``model`` trained by plain regression (MSE, Adam) on every rating
    of the meta-training users (support and query), as one data set, on the model's device and floating-point
    type. Returns its parameters: with ``val_tasks``, those after the epoch whose mean squared error on the
    validation users' ratings was lowest (appended per epoch to ``history``), else the last."""
    users, items, ratings = training_ratings(tasks)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    params = {k: v.requires_grad_() for k, v in module_params(model).items()}
    x = to_placement(pair_features(data, users, items), params)  # (n, 6 + n_genres)
    y = to_placement(torch.from_numpy(ratings.astype(np.float32)).unsqueeze(1), params)  # (n, 1)
    optimiser = torch.optim.Adam(list(params.values()), lr=lr)
    check = None
    if val_tasks:
        v_users, v_items, v_ratings = training_ratings(val_tasks)
        check = (
            to_placement(pair_features(data, v_users, v_items), params),
            to_placement(torch.from_numpy(v_ratings.astype(np.float32)).unsqueeze(1), params),
        )
    best, kept = float("inf"), {k: v.detach().clone() for k, v in params.items()}
    for _ in range(epochs):
        # The order is drawn on the CPU (the seeded generator's device), so every device sees the same batches.
        for batch in torch.randperm(len(y), generator=generator).to(y.device).split(batch_size):
            loss = torch.nn.functional.mse_loss(forward(model, params, x[batch]), y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        if check is None:
            kept = {k: v.detach() for k, v in params.items()}
            continue
        with torch.no_grad():
            error = float(torch.nn.functional.mse_loss(forward(model, params, check[0]), check[1]))
        if history is not None:
            history.append(error)
        if error < best:
            best, kept = error, {k: v.detach().clone() for k, v in params.items()}
    return kept


def fine_tuned(model: nn.Module, params: Params, data: MovieLens, lr: float, steps: int) -> Adapted:
    """Transfer: the pretrained model, its decision layers fine-tuned on each user's support ratings by
    ``steps`` of gradient descent (MeLU's local update without meta-learning)."""
    anil = build_algorithm("anil", model, loss="mse", inner_lr=lr, inner_steps=steps, first_order=True)
    return Adapted("fine-tune", anil, params, data, steps)


def no_adaptation(model: nn.Module, params: Params, data: MovieLens) -> Adapted:
    """The pretrained model as it is, the same prediction for every user with the same features."""
    anil = build_algorithm("anil", model, loss="mse", inner_lr=0.0, inner_steps=0)
    return Adapted("global", anil, params, data, 0)


@dataclass(frozen=True, eq=False)
class Popularity:
    """Ranks items by how many meta-training ratings they have; predicts an item's mean training rating
    shrunk toward the global mean (``shrinkage`` pseudo-ratings), the global mean for unseen items."""

    counts: np.ndarray  # (n_items,)
    means: np.ndarray  # (n_items,)
    name: str = "popularity"

    @classmethod
    def fit(cls, data: MovieLens, tasks: list[UserTask], shrinkage: float = 5.0) -> Popularity:
        _, items, ratings = training_ratings(tasks)
        n_items = len(data.item_ids)
        counts = np.bincount(items, minlength=n_items).astype(np.float64)
        sums = np.bincount(items, weights=ratings, minlength=n_items)
        mean = float(ratings.mean())
        return cls(counts, (sums + shrinkage * mean) / (counts + shrinkage))

    def score(
        self, user: int, support_items: np.ndarray, support_ratings: np.ndarray, items: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        return self.means[items], self.counts[items]


def training_ratings(tasks: list[UserTask]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every rating (support and query) of ``tasks``: ``(users, items, ratings)``, ratings float64."""
    users = np.concatenate([np.full(len(t.support_items) + len(t.query_items), t.user) for t in tasks])
    items = np.concatenate([np.concatenate([t.support_items, t.query_items]) for t in tasks])
    ratings = np.concatenate([np.concatenate([t.support_ratings, t.query_ratings]) for t in tasks])
    return users, items, ratings.astype(np.float64)


@dataclass(frozen=True)
class Factors:
    """A biased matrix factorisation ``r ~ mu + b_u + b_i + p_u . q_i`` fitted by alternating least squares.

    Attributes:
        user_side, item_side: ``(n_users, 1 + dim)`` and ``(n_items, 1 + dim)``: ``[bias, factors]``; rows of users
            or items without training ratings are zero.
        seen_users, seen_items: which rows were fitted.
        noise: the mean squared training residual.
    """

    mu: float
    user_side: np.ndarray
    item_side: np.ndarray
    seen_users: np.ndarray
    seen_items: np.ndarray
    noise: float


def alternating_least_squares(
    data: MovieLens, tasks: list[UserTask], dim: int = 16, reg: float = 5.0, sweeps: int = 10, seed: int = 0
) -> Factors:
    """Biased MF on every rating of ``tasks`` by ``sweeps`` rounds of alternating ridge solves (``reg`` on
    each user's and each item's ``[bias, factors]``)."""
    users, items, ratings = training_ratings(tasks)
    n_users, n_items = len(data.user_ids), len(data.item_ids)
    rng = np.random.default_rng(seed)
    mu = float(ratings.mean())
    # Each side is [bias, factors]; the other side contributes the matching [1, factors] column.
    user_side = np.concatenate([np.zeros((n_users, 1)), 0.1 * rng.standard_normal((n_users, dim))], axis=1)
    item_side = np.concatenate([np.zeros((n_items, 1)), 0.1 * rng.standard_normal((n_items, dim))], axis=1)
    for _ in range(sweeps):
        for side, other, rows, cols in ((user_side, item_side, users, items), (item_side, user_side, items, users)):
            design = np.concatenate([np.ones((len(cols), 1)), other[cols, 1:]], axis=1)  # (n, 1 + dim)
            target = ratings - mu - other[cols, 0]
            order = np.argsort(rows, kind="stable")
            indices, starts = np.unique(rows[order], return_index=True)
            for index, group in zip(indices, np.split(order, starts[1:]), strict=True):
                a = design[group]
                side[index] = np.linalg.solve(a.T @ a + reg * np.eye(dim + 1), a.T @ target[group])
    seen_users, seen_items = np.zeros(n_users, dtype=bool), np.zeros(n_items, dtype=bool)
    seen_users[users], seen_items[items] = True, True
    user_side[~seen_users], item_side[~seen_items] = 0.0, 0.0
    fitted = mu + user_side[users, 0] + item_side[items, 0] + np.sum(user_side[users, 1:] * item_side[items, 1:], 1)
    return Factors(mu, user_side, item_side, seen_users, seen_items, float(np.mean((ratings - fitted) ** 2)))


@dataclass(frozen=True, eq=False)
class MatrixFactorisation:
    """Biased matrix factorisation ``r ~ mu + b_u + b_i + p_u . q_i`` fitted by alternating least squares
    on the meta-training ratings; a new user's ``(b_u, p_u)`` are fitted on their support ratings by ridge
    regression (``fold_reg``) with the item side fixed (the "MF + update for a new user" baseline). Items
    without training ratings have ``b_i = 0``, ``q_i = 0``. Predictions are clipped to ``rating_range``.
    """

    mu: float
    item_bias: np.ndarray  # (n_items,)
    item_factors: np.ndarray  # (n_items, dim)
    reg: float
    rating_range: tuple[float, float] = (1.0, 5.0)
    name: str = "mf"

    @classmethod
    def fit(
        cls,
        data: MovieLens,
        tasks: list[UserTask],
        dim: int = 16,
        reg: float = 5.0,
        sweeps: int = 10,
        seed: int = 0,
        fold_reg: float | None = None,
    ) -> MatrixFactorisation:
        f = alternating_least_squares(data, tasks, dim, reg, sweeps, seed)
        fold = reg if fold_reg is None else fold_reg
        return cls(f.mu, f.item_side[:, 0].copy(), f.item_side[:, 1:].copy(), fold, rating_range(data))

    def score(
        self, user: int, support_items: np.ndarray, support_ratings: np.ndarray, items: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        dim = self.item_factors.shape[1]
        design = np.concatenate([np.ones((len(support_items), 1)), self.item_factors[support_items]], axis=1)
        target = support_ratings.astype(np.float64) - self.mu - self.item_bias[support_items]
        user_side = np.linalg.solve(design.T @ design + self.reg * np.eye(dim + 1), design.T @ target)
        ratings = self.mu + user_side[0] + self.item_bias[items] + self.item_factors[items] @ user_side[1:]
        ratings = np.clip(ratings, *self.rating_range)
        return ratings, ratings


@dataclass(frozen=True, eq=False)
class Biases:
    """The bias model ``r ~ mu + b_i + b_u``: item biases are regularised means of the training ratings
    (``item_reg`` pseudo-ratings at ``mu``), a user's bias the regularised mean of their support residuals
    (``user_reg``); predictions clipped to ``rating_range``. No factors: the strongest simple baseline for MAE
    at a handful of ratings."""

    mu: float
    item_bias: np.ndarray  # (n_items,)
    user_reg: float
    rating_range: tuple[float, float] = (1.0, 5.0)
    name: str = "bias"

    @classmethod
    def fit(
        cls, data: MovieLens, tasks: list[UserTask], item_reg: float = 5.0, user_reg: float = 5.0, sweeps: int = 10
    ) -> Biases:
        """Item and training-user biases by ``sweeps`` rounds of alternating regularised means (Koren's
        baseline predictor), so that the users' biases do not leak into the items'."""
        users, items, ratings = training_ratings(tasks)
        mu = float(ratings.mean())
        n_items, n_users = len(data.item_ids), len(data.user_ids)
        item_count = np.bincount(items, minlength=n_items) + item_reg
        user_count = np.bincount(users, minlength=n_users) + user_reg
        item_bias, user_bias = np.zeros(n_items), np.zeros(n_users)
        for _ in range(sweeps):
            sums = np.bincount(items, weights=ratings - mu - user_bias[users], minlength=n_items)
            item_bias = np.divide(sums, item_count, out=np.zeros(n_items), where=item_count > 0)  # unrated: 0
            sums = np.bincount(users, weights=ratings - mu - item_bias[items], minlength=n_users)
            user_bias = np.divide(sums, user_count, out=np.zeros(n_users), where=user_count > 0)
        return cls(mu, item_bias, user_reg, rating_range(data))

    def score(
        self, user: int, support_items: np.ndarray, support_ratings: np.ndarray, items: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        residual = support_ratings.astype(np.float64) - self.mu - self.item_bias[support_items]
        user_bias = residual.sum() / max(len(residual) + self.user_reg, 1e-12)
        ratings = np.clip(self.mu + user_bias + self.item_bias[items], *self.rating_range)
        return ratings, ratings


def rating_range(data: MovieLens) -> tuple[float, float]:
    """The lowest and highest rating in the data (1 and 5 for MovieLens)."""
    return float(data.rating.min()), float(data.rating.max())
