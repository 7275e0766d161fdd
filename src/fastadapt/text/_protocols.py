"""The two few-shot text protocols.

* All intents, K-shot (the intent-detection literature: Casanueva et al. 2020, arXiv:2003.04807; DNNC,
  arXiv:2010.13009; CPFT, arXiv:2109.06349): K training utterances of every intent, drawn with a seed; the
  model is scored on the whole test split.
* Held-out groups, episodic: meta-train on the intents of some domains, test N-way K-shot episodes on the
  intents of the other domains; :func:`heldout_classes` rotates the held-out domains (k-fold over class
  groups).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch

from ..evaluation import class_kfold, group_kfold
from ..tasks import ClassSplit, LabelledPool
from ._datasets import TextDataset

Indices = npt.NDArray[np.int64]


def kshot_indices(dataset: TextDataset, shots: int, seed: int, split: str = "train") -> Indices:
    """``shots`` examples of every class from one split, drawn with ``np.random.default_rng(seed)``;
    class-major order (all examples of class 0, then class 1, ...)."""
    if shots < 1:
        raise ValueError(f"shots must be >= 1, got {shots}")
    rng = np.random.default_rng(seed)
    pool = dataset.indices(split)
    chosen = []
    for c in range(dataset.num_classes):
        members = pool[dataset.labels[pool] == c]
        if len(members) < shots:
            raise ValueError(
                f"shots={shots} but class {dataset.class_names[c]!r} has only {len(members)} {split} examples; "
                "lower shots"
            )
        chosen.append(rng.choice(members, size=shots, replace=False))
    return np.concatenate(chosen).astype(np.int64)


def heldout_classes(dataset: TextDataset, folds: int, fold: int, seed: int = 0) -> tuple[Indices, Indices, list[str]]:
    """Fold ``fold`` of a ``folds``-fold cross-validation over class groups (whole domains held out; over
    single classes when the data has no groups): ``(train classes, held-out classes, held-out group names)``."""
    if not 0 <= fold < folds:
        raise ValueError(f"fold={fold} is not one of the {folds} folds; use 0..{folds - 1}")
    if dataset.groups:
        return group_kfold(dataset.groups, k=folds, seed=seed)[fold]
    train, test = class_kfold(np.arange(dataset.num_classes), k=folds, seed=seed)[fold]
    return train, test, [dataset.class_names[c] for c in test.tolist()]


def episodic_pool(
    dataset: TextDataset,
    embeddings: npt.NDArray[np.float32],
    train_classes: Indices,
    test_classes: Indices,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[LabelledPool, ClassSplit]:
    """A pool of embedded utterances and its class split for held-out-class episodes.

    * train: the training classes' ``train`` utterances;
    * val: the same classes' ``val`` utterances as separate pool classes (``"<name> (val)"``), so validation
      measures new utterances and the split stays disjoint; a class without ``val`` utterances gives
      ``val_fraction`` of its ``train`` utterances instead;
    * test: the held-out classes' ``test`` utterances, or all their utterances if they have none (they were
      never trained on).
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if len(embeddings) != len(dataset.texts):
        raise ValueError(f"{len(embeddings)} embeddings for {len(dataset.texts)} texts; embed every text once")
    rng = np.random.default_rng(seed)
    rows: list[Indices] = []
    labels: list[Indices] = []
    names: list[str] = []
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}

    def add(part: str, name: str, members: Indices) -> None:
        parts[part].append(len(names))
        rows.append(members)
        labels.append(np.full(len(members), len(names), dtype=np.int64))
        names.append(name)

    for c in np.asarray(train_classes).tolist():
        mine = dataset.labels == c
        train = np.flatnonzero(mine & (dataset.splits == "train"))
        val = np.flatnonzero(mine & (dataset.splits == "val"))
        if len(val) == 0:
            if len(train) < 2:
                raise ValueError(
                    f"class {dataset.class_names[c]!r} has {len(train)} train example(s) and no val ones; "
                    "a training class needs 2 or more to carve validation utterances from"
                )
            train = rng.permutation(train)
            cut = min(len(train) - 1, max(1, round(val_fraction * len(train))))
            train, val = np.sort(train[cut:]), np.sort(train[:cut])
        add("train", dataset.class_names[c], train)
        add("val", f"{dataset.class_names[c]} (val)", val)
    for c in np.asarray(test_classes).tolist():
        mine = dataset.labels == c
        test = np.flatnonzero(mine & (dataset.splits == "test"))
        add("test", dataset.class_names[c], test if len(test) else np.flatnonzero(mine))
    index = np.concatenate(rows)
    pool = LabelledPool(
        torch.from_numpy(np.ascontiguousarray(embeddings[index])),
        torch.from_numpy(np.concatenate(labels)),
        tuple(names),
    )
    return pool, ClassSplit(tuple(parts["train"]), tuple(parts["val"]), tuple(parts["test"]))
