"""Cross-validation over class splits: in few-shot learning the test classes must be unseen in training, so
folds partition the *classes*, not the examples. ``class_kfold`` splits individual classes
(:class:`sklearn.model_selection.KFold` over the class ids); ``group_kfold`` keeps groups of related classes
together (e.g. CLINC150's 10 domains of 15 intents), so that no fold trains on a sibling of a test class
(:class:`~sklearn.model_selection.GroupKFold` or :class:`~sklearn.model_selection.LeaveOneGroupOut` with each
class labelled by its group)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

ClassIds = npt.NDArray[np.int64]


def _class_ids(classes: npt.ArrayLike, what: str) -> ClassIds:
    ids = np.asarray(classes)
    if ids.ndim != 1:
        raise ValueError(f"{what} must be a 1-D list of class ids, got shape {ids.shape}")
    if len(ids) and ids.dtype.kind not in "iu":
        raise ValueError(f"{what} must hold integer class ids, got dtype {ids.dtype}")
    values, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"{what} lists class {int(values[counts > 1][0])} more than once; class ids must be unique")
    return ids.astype(np.int64)


def class_kfold(classes: npt.ArrayLike, k: int, seed: int = 0) -> list[tuple[ClassIds, ClassIds]]:
    """k-fold cross-validation over classes: each class is a test class in exactly one fold.

    ``KFold(n_splits=k, shuffle=True, random_state=seed)`` shuffles the classes (numpy's legacy
    ``RandomState(seed)``) and cuts them into ``k`` contiguous folds whose sizes differ by at most 1 (the first
    ``n % k`` folds get one more).

    Args:
        classes: ``(n,)`` distinct integer class ids (any values, not necessarily ``0..n-1``).
        k: the number of folds, ``2 <= k <= n``.
        seed: the seed of the shuffle, in ``[0, 2**32)``.

    Returns:
        ``k`` pairs ``(train_classes, test_classes)``, each a sorted int64 array; in every pair they are
        disjoint and together hold all ``n`` classes.
    """
    from sklearn.model_selection import KFold  # on use: importing sklearn.model_selection takes ~1.5 s

    ids = _class_ids(classes, "classes")
    if k < 2:
        raise ValueError(f"k must be >= 2 (one fold to test, at least one to train), got k={k}")
    if k > len(ids):
        raise ValueError(f"k={k} exceeds the number of classes ({len(ids)}); every fold needs a test class")
    splitter = KFold(n_splits=k, shuffle=True, random_state=seed)
    return [(np.sort(ids[train]), np.sort(ids[test])) for train, test in splitter.split(ids)]


def group_kfold(
    groups: Mapping[str, Sequence[int]], k: int | None = None, seed: int = 0
) -> list[tuple[ClassIds, ClassIds, list[str]]]:
    """Cross-validation that holds out whole groups of classes.

    Every class is labelled by its group. With ``k=None`` it is ``LeaveOneGroupOut``: fold ``i`` holds out the
    ``i``-th group in the mapping's order (``seed`` is unused). Otherwise it is
    ``GroupKFold(n_splits=k, shuffle=True, random_state=seed)`` (scikit-learn >= 1.6): the groups are shuffled
    (numpy's legacy ``RandomState(seed)``) and cut into ``k`` contiguous folds whose numbers of groups differ by
    at most 1. Class counts are not balanced; groups of unequal size give folds of unequal size.

    Args:
        groups: group name -> its class ids; every group non-empty, no class id in two groups.
        k: the number of folds, ``2 <= k <= len(groups)`` (default: ``len(groups)``).
        seed: the seed of the shuffle when ``k`` is given, in ``[0, 2**32)``.

    Returns:
        One triple per fold, ``(train_classes, test_classes, held_out)``: sorted int64 arrays of class ids, and
        the names of the held-out groups in the mapping's order.
    """
    from sklearn.model_selection import GroupKFold, LeaveOneGroupOut

    names = list(groups)
    if len(names) < 2:
        raise ValueError(f"group_kfold needs at least 2 groups to hold one out, got {len(names)}")
    owner: dict[int, str] = {}
    for name in names:
        ids = _class_ids(list(groups[name]), f"group {name!r}")
        if len(ids) == 0:
            raise ValueError(f"group {name!r} has no classes; drop it or give it its class ids")
        for c in ids.tolist():
            if c in owner:
                raise ValueError(f"class {c} is in both group {owner[c]!r} and group {name!r}; groups must be disjoint")
            owner[c] = name
    if k is not None:
        if k < 2:
            raise ValueError(f"k must be >= 2 (one fold to test, at least one to train), got k={k}")
        if k > len(names):
            raise ValueError(f"k={k} exceeds the number of groups ({len(names)}); pass k=None to leave one group out")
    classes = np.array(list(owner), dtype=np.int64)  # (n,) every class once
    # Group labels are positions in the mapping, so LeaveOneGroupOut's sorted order is the mapping's order.
    position = {name: i for i, name in enumerate(names)}
    labels = np.array([position[owner[c]] for c in owner.keys()], dtype=np.int64)  # (n,)
    splitter = LeaveOneGroupOut() if k is None else GroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [
        (np.sort(classes[train]), np.sort(classes[test]), [names[i] for i in np.unique(labels[test]).tolist()])
        for train, test in splitter.split(classes, groups=labels)
    ]
