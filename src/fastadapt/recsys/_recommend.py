"""Cold start end to end: adapt a meta-trained model to a new user's few ratings and recommend."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..algorithms import Algorithm
from ..evaluation import to_placement
from ..typing import Params
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
    predicted rating; the features and ratings go to the parameters' device and floating-point type."""
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    params = {k: v.detach() for k, v in params.items()}
    support_x = to_placement(features_for(data, user, items), params)  # (n, 6 + n_genres)
    support_y = to_placement(torch.from_numpy(ratings).unsqueeze(1), params)  # (n, 1)
    state = algorithm.adapt(params, support_x, support_y, steps=steps)
    candidates = np.setdiff1d(np.arange(len(data.item_ids)), items)
    with torch.no_grad():
        outputs = algorithm.predict(params, state, to_placement(features_for(data, user, candidates), params))
    predicted = outputs.squeeze(1).cpu().numpy()  # (n_candidates,)
    best = np.argsort(-predicted, kind="stable")[:top]
    return [
        Recommendation(int(data.item_ids[candidates[i]]), data.titles[candidates[i]], float(predicted[i])) for i in best
    ]
