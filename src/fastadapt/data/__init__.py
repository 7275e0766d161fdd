"""Datasets as labelled pools with documented class splits. The embedded default (scikit-learn's
digits) needs no download."""

from __future__ import annotations

from ._digits import DIGITS_SPLIT as DIGITS_SPLIT
from ._digits import load_digits_pool as load_digits_pool
