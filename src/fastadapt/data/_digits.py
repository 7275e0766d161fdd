"""scikit-learn's digits (UCI optical recognition of handwritten digits: 1,797 8x8 images, 10 classes),
shipped inside scikit-learn, so it needs no download."""

from __future__ import annotations

import torch

from ..tasks import ClassSplit, LabelledPool

#: Disjoint class split of the ten digits. Ten classes are few: 4 for meta-training (optionally
#: multiplied by rotations), 3 for validation, 3 held out for testing, so episodes are 3-way.
DIGITS_SPLIT = ClassSplit(train=(0, 1, 2, 3), val=(4, 5, 6), test=(7, 8, 9))


def load_digits_pool() -> LabelledPool:
    """The digits as a pool of ``(1797, 1, 8, 8)`` float32 images scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (n, 1, 8, 8)
    labels = torch.as_tensor(digits.target, dtype=torch.int64)
    return LabelledPool(images, labels, tuple(str(c) for c in range(10)))
