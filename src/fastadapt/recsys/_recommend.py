"""Cold start end to end: adapt a meta-trained model to a new user's few ratings and recommend."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..algorithms import Algorithm, Ridge
from ..data._download import _atomic
from ..evaluation import to_placement
from ..typing import Params
from ._methods import rating_range
from ._movielens import ML100K_OCCUPATIONS, MovieLens, _age_group, _zip_prefix
from ._tasks import USER_COLUMNS, features_for


@dataclass(frozen=True)
class Recommendation:
    item_id: int
    title: str
    predicted_rating: float


def read_ratings(path: str | Path, data: MovieLens) -> tuple[np.ndarray, np.ndarray]:
    """``item_id,rating`` rows (an optional header line) -> (item indices, ratings). Errors name the line."""
    index = {int(item_id): i for i, item_id in enumerate(data.item_ids)}
    items, ratings = [], []
    with open(path, newline="") as f:
        for number, row in enumerate(csv.reader(f), start=1):
            if not row or (number == 1 and not row[0].strip().lstrip("-").isdigit()):
                continue  # blank line or header
            try:
                item_id, rating = int(row[0]), float(row[1])
            except (ValueError, IndexError):
                raise ValueError(f"{path} line {number}: expected 'item_id,rating', got {','.join(row)!r}") from None
            if item_id not in index:
                raise ValueError(f"{path} line {number}: item id {item_id} is not in {data.name}'s items")
            if not 1.0 <= rating <= 5.0:
                raise ValueError(f"{path} line {number}: rating {rating} is outside 1-5")
            items.append(index[item_id])
            ratings.append(rating)
    if not items:
        raise ValueError(f"{path} has no ratings; write one 'item_id,rating' line per rated item")
    return np.array(items, dtype=np.int64), np.array(ratings, dtype=np.float32)


def user_categories(
    data: MovieLens,
    gender: str | None = None,
    age: int | None = None,
    occupation: str | None = None,
    zip_code: str | None = None,
) -> np.ndarray:
    """A new user's feature categories ``(4,)`` from raw MovieLens values; a value not given takes the
    most frequent category among the data's users."""
    common = [int(np.bincount(getattr(data, c)).argmax()) for c in USER_COLUMNS]
    row = list(common)
    if gender is not None:
        if gender.upper() not in ("M", "F"):
            raise ValueError(f"gender must be M or F, got {gender!r}")
        row[0] = 0 if gender.upper() == "M" else 1
    if age is not None:
        if age < 1:
            raise ValueError(f"age must be a positive number of years, got {age}")
        row[1] = _age_group(age)  # a raw age or an ML-1M age code: both fall in the same group
    if occupation is not None:
        if occupation.isdigit():
            code = int(occupation)
        elif occupation in ML100K_OCCUPATIONS:
            code = ML100K_OCCUPATIONS.index(occupation)
        else:
            raise ValueError(f"occupation {occupation!r}: give ML-1M's code 0-20 or one of {ML100K_OCCUPATIONS}")
        if code >= data.feature_sizes["occupation"]:
            raise ValueError(f"occupation code {code} is outside 0-{data.feature_sizes['occupation'] - 1}")
        row[2] = code
    if zip_code is not None:
        row[3] = _zip_prefix(zip_code)
    return np.array(row, dtype=np.int64)


def recommend(
    algorithm: Algorithm,
    params: Params,
    data: MovieLens,
    items: np.ndarray,
    ratings: np.ndarray,
    user: np.ndarray,
    top: int = 20,
    steps: int | None = None,
) -> list[Recommendation]:
    """Adapts to the new user's ratings (``steps`` inner steps) and returns the ``top`` unrated items by
    predicted rating (:class:`OnlineUser` with these ratings); the features and ratings go to the parameters'
    device and floating-point type."""
    online = OnlineUser(algorithm, params, data, user, steps=steps)
    for item, rating in zip(items.tolist(), ratings.tolist(), strict=True):
        online.rate(int(item), float(rating))
    return online.recommend(top)


class OnlineUser:
    """A deployed user's adapted state, updated as their ratings arrive.

    With a ridge fold-in (algorithm ``ridge``, meta-learned MF) the state is the normal equations
    ``(A'A + L, A't + L m)`` of :mod:`fastadapt.algorithms.ridge`: a new rating adds its rank-one term and a changed
    rating swaps its term, so each update costs one ``(k, k)`` solve and gives exactly the batch fold-in on all the
    ratings so far. With a gradient-step algorithm (MeLU) each update adapts again on all the ratings so far.

    Args:
        user: the user's feature categories ``(4,)`` (:func:`user_categories`).
        ratings: ``{item index: rating}`` already known (e.g. from a saved state).
    """

    def __init__(
        self,
        algorithm: Algorithm,
        params: Params,
        data: MovieLens,
        user: np.ndarray,
        ratings: dict[int, float] | None = None,
        steps: int | None = None,
    ) -> None:
        self.algorithm, self.data, self.steps = algorithm, data, steps
        self.params = {k: v.detach() for k, v in params.items()}
        self.user = np.asarray(user, dtype=np.int64)
        self.range = rating_range(data)
        self.ratings: dict[int, float] = {}
        self.ridge = isinstance(algorithm, Ridge)
        self.gram: torch.Tensor | None = None
        self.rhs: torch.Tensor | None = None
        self.theta: torch.Tensor | None = None
        for item, rating in (ratings or {}).items():
            self.rate(item, rating)

    def _terms(self, items: np.ndarray) -> tuple[torch.Tensor, ...]:
        assert isinstance(self.algorithm, Ridge)
        x = to_placement(features_for(self.data, self.user, items), self.params)
        with torch.no_grad():
            return self.algorithm.terms(self.params, x)

    def rate(self, item: int, rating: float) -> None:
        """Adds (or changes) one rating and updates the adapted state."""
        if not 0 <= item < len(self.data.item_ids):
            raise ValueError(f"item index {item} is outside the {len(self.data.item_ids)} items")
        low, high = self.range
        if not low <= rating <= high:
            raise ValueError(f"rating {rating} of item {int(self.data.item_ids[item])} is outside {low:g}-{high:g}")
        if not self.ridge:
            self.ratings[int(item)] = float(rating)
            return
        offset, design, prior, log_precision = self._terms(np.array([item]))
        if self.gram is None or self.rhs is None:  # the prior alone: L and L m
            precision = log_precision.exp()
            self.gram, self.rhs = torch.diag(precision), precision * prior[0]
        a, target = design[0], float(rating) - offset[0]
        if int(item) in self.ratings:  # a changed rating: take the old term out
            old = self.ratings[int(item)] - offset[0]
            self.gram, self.rhs = self.gram - torch.outer(a, a), self.rhs - a * old
        self.gram, self.rhs = self.gram + torch.outer(a, a), self.rhs + a * target
        self.theta = torch.linalg.solve(self.gram, self.rhs)
        self.ratings[int(item)] = float(rating)

    def predict(self, items: np.ndarray) -> np.ndarray:
        """Predicted ratings ``(len(items),)`` from the current state (the prior, before any rating)."""
        x = to_placement(features_for(self.data, self.user, np.asarray(items)), self.params)
        with torch.no_grad():
            if (
                not self.ratings or self.steps == 0
            ):  # no adaptation: the meta-learned start (steps 0, as without --state)
                zero = torch.zeros(1, 1, dtype=x.dtype, device=x.device)
                state = self.algorithm.adapt(self.params, x[:1], zero, steps=0)
            elif self.theta is not None:  # ridge: the incremental solve
                state = {"theta": self.theta}
            else:
                known = np.array(list(self.ratings), dtype=np.int64)
                sx = to_placement(features_for(self.data, self.user, known), self.params)
                sy = to_placement(torch.tensor(list(self.ratings.values())).unsqueeze(1), self.params)
                with torch.enable_grad():
                    state = self.algorithm.adapt(self.params, sx, sy, steps=self.steps)
            out = self.algorithm.predict(self.params, state, x)
        return out.reshape(-1).cpu().numpy().astype(np.float64)

    def state(self) -> dict[str, Any]:
        """What :meth:`load` needs: the features and the ratings (item ids, as the data names them)."""
        return {
            "user": self.user.tolist(),
            "ratings": {str(int(self.data.item_ids[i])): r for i, r in self.ratings.items()},
        }

    @classmethod
    def load(
        cls, state: dict[str, Any], algorithm: Algorithm, params: Params, data: MovieLens, steps: int | None = None
    ) -> OnlineUser:
        if not isinstance(state, dict) or not isinstance(state.get("ratings"), dict):
            raise ValueError("not a saved user state: expected an object with 'user' (4 categories) and 'ratings'")
        sizes = [data.feature_sizes[c] for c in USER_COLUMNS]
        user = state.get("user")
        if not (isinstance(user, list) and len(user) == len(sizes) and all(isinstance(u, int) for u in user)):
            raise ValueError(f"saved user state: 'user' must be {len(sizes)} category numbers, got {user!r}")
        if not all(0 <= u < n for u, n in zip(user, sizes, strict=True)):
            raise ValueError(f"saved user state: 'user' {user} is outside {data.name}'s categories {sizes}")
        index = {int(item_id): i for i, item_id in enumerate(data.item_ids)}
        ratings = {}
        for key, value in state["ratings"].items():
            if not str(key).isdigit() or int(key) not in index:
                raise ValueError(
                    f"saved user state: item id {key!r} is not in {data.name}'s items (a state of other data?)"
                )
            ratings[index[int(key)]] = float(value)
        return cls(algorithm, params, data, np.array(user, dtype=np.int64), ratings, steps)

    def recommend(self, top: int = 20) -> list[Recommendation]:
        """The ``top`` items the user has not rated, by predicted rating."""
        if top < 1:
            raise ValueError(f"top must be >= 1, got {top}")
        rated = np.array(list(self.ratings), dtype=np.int64)
        candidates = np.setdiff1d(np.arange(len(self.data.item_ids)), rated)
        predicted = self.predict(candidates)
        best = np.argsort(-predicted, kind="stable")[:top]
        data = self.data
        return [
            Recommendation(int(data.item_ids[candidates[i]]), data.titles[candidates[i]], float(predicted[i]))
            for i in best
        ]

    def save(self, path: str | Path) -> None:
        """Writes :meth:`state` as JSON, atomically (a unique temporary file renamed over ``path``, removed if the
        write fails)."""
        with _atomic(Path(path)) as temporary:
            temporary.write_text(json.dumps(self.state(), indent=1) + "\n")

    @classmethod
    def open(
        cls,
        path: str | Path,
        algorithm: Algorithm,
        params: Params,
        data: MovieLens,
        steps: int | None,
        user: np.ndarray,
    ) -> OnlineUser:
        """The state saved at ``path`` if it exists (its features win over ``user``), else a new user."""
        path = Path(path)
        if not path.exists():
            return cls(algorithm, params, data, user, steps=steps)
        try:
            saved = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(
                f"{path} is not a saved user state (invalid JSON: {error}); move it away to start anew"
            ) from None
        return cls.load(saved, algorithm, params, data, steps)
