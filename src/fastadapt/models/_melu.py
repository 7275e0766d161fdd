"""MeLU's rating network (Lee et al., KDD 2019, arXiv:1908.00413): embeddings of the user's and the
item's features, concatenated, then fully connected decision layers that output the rating."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ._activations import activation


class FeatureEmbedding(nn.Module):
    """Embeds one (user, item) pair per row.

    A row of the input is ``len(categories)`` category indices (stored as floats, so that a row is one
    tensor) followed by a ``multi_hot`` block (e.g. the item's genres). Each categorical column has its
    own table; the multi-hot block is embedded as the mean of its active rows' embeddings, as MeLU embeds
    a movie's genres.

    Args:
        categories: cardinality of each categorical column, in column order; ``None`` for a column that
            is present in the input but not used.
        multi_hot: width of the multi-hot block (0 for none).
        dim: embedding width of every column.
        zero: columns whose tables start at zero (an id column: an id never seen in training then adds
            nothing, instead of a random vector).
    """

    def __init__(self, categories: Sequence[int | None], multi_hot: int, dim: int, zero: Sequence[int] = ()) -> None:
        super().__init__()
        self.columns = [i for i, n in enumerate(categories) if n is not None]
        self.n_categories = len(categories)
        tables = [nn.Embedding(categories[i] or 0, dim) for i in self.columns]
        for i, table in zip(self.columns, tables, strict=True):
            if i in zero:
                nn.init.zeros_(table.weight)
        self.tables = nn.ModuleList(tables)
        self.multi_hot = nn.Linear(multi_hot, dim, bias=False) if multi_hot else None
        self.out_features = dim * (len(self.columns) + (1 if multi_hot else 0))

    def forward(self, x: Tensor) -> Tensor:  # x: (n, n_categories + multi_hot)
        parts = [table(x[:, i].long()) for i, table in zip(self.columns, self.tables, strict=True)]  # (n, dim) each
        if self.multi_hot is not None:
            hot = x[:, self.n_categories :]  # (n, multi_hot)
            parts.append(self.multi_hot(hot) / hot.sum(1, keepdim=True).clamp_min(1.0))
        return torch.cat(parts, dim=1)  # (n, out_features)


class Bounded(nn.Module):
    """``low + (high - low) * sigmoid(x)``: outputs inside ``(low, high)``."""

    def __init__(self, low: float, high: float) -> None:
        super().__init__()
        if not low < high:
            raise ValueError(f"the output range needs low < high, got ({low}, {high})")
        self.low, self.high = float(low), float(high)

    def forward(self, x: Tensor) -> Tensor:
        return self.low + (self.high - self.low) * torch.sigmoid(x)

    def extra_repr(self) -> str:
        return f"low={self.low}, high={self.high}"


class MeLU(nn.Module):
    """``body``: :class:`FeatureEmbedding`; ``head``: the decision layers (``hidden`` widths, then one
    output). MeLU's local update adapts the head only (ANIL on this model); the global update trains all.

    Args:
        categories: cardinalities of the categorical columns (user features, then item features;
            ``None``: not used).
        multi_hot: width of the multi-hot item block (genres).
        dim: embedding width (32 in the paper).
        hidden: widths of the decision layers ((64, 64) in the paper).
        zero: categorical columns whose embeddings start at zero (see :class:`FeatureEmbedding`).
        rating_offset: initial bias of the output (e.g. the mean training rating), so that the first
            inner steps fit a user's deviation from it instead of the whole rating scale (large first
            gradients that make plain gradient descent diverge).
        rating_range: ``(low, high)``: the output is ``low + (high - low) * sigmoid(z)``, so that every
            prediction lies in the rating scale (the output bias then starts at the logit of
            ``rating_offset``'s place in the range); ``None``: the unbounded linear output.
    """

    def __init__(
        self,
        categories: Sequence[int | None],
        multi_hot: int,
        dim: int = 32,
        hidden: Sequence[int] = (64, 64),
        act: str = "relu",
        rating_offset: float = 0.0,
        zero: Sequence[int] = (),
        rating_range: tuple[float, float] | None = None,
    ) -> None:
        super().__init__()
        if rating_range is not None and not rating_range[0] < rating_offset < rating_range[1]:
            raise ValueError(f"rating_offset={rating_offset} must lie inside rating_range={tuple(rating_range)}")
        self.body = FeatureEmbedding(categories, multi_hot, dim, zero)
        layers: list[nn.Module] = []
        width = self.body.out_features
        for h in hidden:
            layers += [nn.Linear(width, h), activation(act)]
            width = h
        output = nn.Linear(width, 1)
        if rating_range is None:
            nn.init.constant_(output.bias, rating_offset)
        else:
            low, high = rating_range
            place = (rating_offset - low) / (high - low)
            nn.init.constant_(output.bias, math.log(place / (1 - place)))
        layers.append(output)
        if rating_range is not None:
            layers.append(Bounded(*rating_range))
        self.head = nn.Sequential(*layers)
        self.feature_dim = self.body.out_features

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))  # (n, 1) predicted ratings
