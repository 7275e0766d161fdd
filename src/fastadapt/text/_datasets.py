"""Labelled text: CLINC150 (Larson et al. 2019, arXiv:1909.02027), any CSV of ``text,label``, and folders in
the DNNC few-shot format (HWU64)."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ..data import REGISTRY, DataError, ensure_dataset

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class TextDataset:
    """Texts with integer class labels, the publisher's example split, and optional class groups.

    Attributes:
        texts: the utterances.
        labels: ``(n,)`` int64 class ids in ``0..len(class_names)-1``.
        class_names: one name per class id.
        splits: ``(n,)`` each example's split, ``"train"``, ``"val"`` or ``"test"``.
        groups: group name -> its class ids (CLINC150's 10 domains); empty when the data has none.
    """

    texts: tuple[str, ...]
    labels: npt.NDArray[np.int64]
    class_names: tuple[str, ...]
    splits: npt.NDArray[np.str_]
    groups: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.texts)
        if len(self.labels) != n or len(self.splits) != n:
            raise ValueError(
                f"{n} texts but {len(self.labels)} labels and {len(self.splits)} splits; give one of each per text"
            )
        unknown = sorted(set(np.unique(self.splits).tolist()) - set(SPLITS))
        if unknown:
            raise ValueError(f"unknown split names {unknown}; use {SPLITS}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def indices(self, split: str) -> npt.NDArray[np.int64]:
        """The example indices of one split."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")
        return np.flatnonzero(self.splits == split).astype(np.int64)


#: The label CLINC150's out-of-scope utterances get when they are loaded.
OUT_OF_SCOPE = "oos"


def clinc150_from_files(data_full: Path | str, domains: Path | str, out_of_scope: bool = False) -> TextDataset:
    """CLINC150's 150 in-scope intents from the publisher's ``data_full.json`` and ``domains.json``.

    Class ids follow ``domains.json``: domain by domain, intents in the listed order. The out-of-scope
    utterances are left out (the few-shot protocol scores the 4,500 in-scope test utterances), unless
    ``out_of_scope``: then ``oos_train`` / ``oos_val`` / ``oos_test`` (100 / 100 / 1,000) are class 150,
    named :data:`OUT_OF_SCOPE`, in no group.
    """
    data_full, domains = Path(data_full), Path(domains)
    try:
        rows = json.loads(data_full.read_text(encoding="utf-8"))
        groups_by_name = json.loads(domains.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise DataError(
            f"cannot read CLINC150 ({error}); re-download it with `fastadapt data download clinc150`"
        ) from None
    names = [intent for intents in groups_by_name.values() for intent in intents]
    ids = {name: i for i, name in enumerate(names)}
    texts: list[str] = []
    labels: list[int] = []
    splits: list[str] = []
    for split in SPLITS:
        if split not in rows:
            raise DataError(f"{data_full} has no {split!r} rows; it is not CLINC150's data_full.json")
        for text, intent in rows[split]:
            if intent not in ids:
                raise DataError(f"{data_full}: intent {intent!r} ({split}) is not in {domains}")
            texts.append(text)
            labels.append(ids[intent])
            splits.append(split)
    if out_of_scope:
        for split in SPLITS:
            for text, _ in rows.get(f"oos_{split}", []):
                texts.append(text)
                labels.append(len(names))
                splits.append(split)
        names.append(OUT_OF_SCOPE)
    offsets = np.cumsum([0] + [len(v) for v in groups_by_name.values()])
    groups = {name: tuple(range(int(offsets[i]), int(offsets[i + 1]))) for i, name in enumerate(groups_by_name)}
    return TextDataset(tuple(texts), np.array(labels, dtype=np.int64), tuple(names), np.array(splits), groups)


def load_clinc150(
    root: Path | str | None = None, *, download: bool = False, progress: bool = True, out_of_scope: bool = False
) -> TextDataset:
    """CLINC150 from ``root`` (a folder with ``data_full.json`` and ``domains.json``, used as it is) or from
    the verified copy in the cache (``fastadapt data download clinc150``), downloaded first if ``download``;
    with its out-of-scope utterances as class ``"oos"`` if ``out_of_scope``."""
    files = [f.name for f in REGISTRY["clinc150"].files]
    if root is None:
        folder = ensure_dataset("clinc150", download_missing=download, progress=progress)
    else:
        folder = Path(root)
        for name in files:
            if not (folder / name).is_file():
                raise DataError(
                    f"{folder / name} does not exist; put CLINC150's {name} there "
                    f"({REGISTRY['clinc150'].file(name).url}), or leave data.root unset to use the cache "
                    "(`fastadapt data download clinc150`)"
                )
    return clinc150_from_files(folder / files[0], folder / files[1], out_of_scope)


def load_text_csv(
    path: Path | str,
    *,
    text_column: str = "text",
    label_column: str = "label",
    group_column: str | None = "group",
    split_column: str = "split",
) -> TextDataset:
    """Any UTF-8 CSV with a header holding ``text`` and ``label`` columns.

    Optional columns: ``group`` (classes of one group are held out together, like CLINC150's domains;
    a class must have one group) and ``split`` (``train``/``val``/``test`` per row; default: every row is
    ``train``). Class ids follow the sorted label names.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            missing = [c for c in (text_column, label_column) if c not in header]
            if missing:
                raise DataError(
                    f"{path}: no column {missing[0]!r} in the header {header}; the CSV needs a header with "
                    f"{text_column!r} and {label_column!r} columns"
                )
            rows = list(reader)
    except UnicodeDecodeError as error:
        raise DataError(f"{path} is not UTF-8 ({error}); save it as UTF-8") from None
    except OSError as error:
        raise DataError(f"cannot read {path}: {error}") from None
    if not rows:
        raise DataError(f"{path} has a header but no rows")
    for line, row in enumerate(rows, start=2):
        if not (row.get(text_column) or "").strip() or not (row.get(label_column) or "").strip():
            raise DataError(f"{path}, line {line}: empty {text_column!r} or {label_column!r}; every row needs both")
    names = sorted({row[label_column].strip() for row in rows})
    ids = {name: i for i, name in enumerate(names)}
    labels = np.array([ids[row[label_column].strip()] for row in rows], dtype=np.int64)
    splits = np.array([(row.get(split_column) or "train").strip() for row in rows])
    bad = sorted(set(splits.tolist()) - set(SPLITS))
    if bad:
        raise DataError(f"{path}: column {split_column!r} has values {bad}; use {list(SPLITS)}")
    groups: dict[str, list[int]] = {}
    if group_column is not None and group_column in (rows[0] or {}):
        owner: dict[int, str] = {}
        for line, row in enumerate(rows, start=2):
            group, label = (row.get(group_column) or "").strip(), ids[row[label_column].strip()]
            if not group:
                raise DataError(f"{path}, line {line}: empty {group_column!r}; give every row its group")
            if owner.setdefault(label, group) != group:
                raise DataError(
                    f"{path}, line {line}: class {names[label]!r} is in group {group!r} and in "
                    f"{owner[label]!r}; a class belongs to one group"
                )
        for label, group in sorted(owner.items()):
            groups.setdefault(group, []).append(label)
    return TextDataset(
        tuple(row[text_column] for row in rows),
        labels,
        tuple(names),
        splits,
        {k: tuple(v) for k, v in groups.items()},
    )


def _read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{path} is not UTF-8 ({error}); save it as UTF-8") from None
    except OSError as error:
        raise DataError(f"cannot read {path}: {error}") from None
    return text.splitlines()


def load_dnnc_folder(
    root: Path | str,
    parts: Sequence[tuple[str, str]] = (("train", "train"), ("val", "valid"), ("test", "test")),
    group_separator: str | None = "_",
) -> TextDataset:
    """The DNNC / CPFT few-shot format (Zhang et al. 2020, arXiv:2010.13009): one folder per split, each holding
    ``seq.in`` (one utterance per line) and ``label`` (its intent, line by line), e.g. HWU64 with its fixed
    ``train_5`` / ``train_10`` training subsets.

    Args:
        root: the folder holding the split folders.
        parts: ``(split, folder)`` pairs: which folder is ``train``, ``val`` and ``test`` (pass
            ``("train", "train_5")`` for the fixed 5-shot set); a split may be left out.
        group_separator: a class's group is its name up to this separator (HWU64's ``alarm_query`` is in
            ``alarm``; HWU64 has 18 such prefixes); ``None``: no groups.

    Raises:
        DataError: a missing folder or file, ``seq.in`` and ``label`` of different lengths, an empty line, a
            test or validation label that no training line has (named).
    """
    root = Path(root)
    texts, labels, splits = [], [], []
    for split, folder in parts:
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r} for {root / folder}; use {list(SPLITS)}")
        where = root / folder
        missing = [f for f in ("seq.in", "label") if not (where / f).is_file()]
        if missing:
            raise DataError(f"{where} has no {' or '.join(missing)}; a DNNC split folder holds seq.in and label")
        lines, names = _read_lines(where / "seq.in"), _read_lines(where / "label")
        if len(lines) != len(names):
            raise DataError(f"{where}: seq.in has {len(lines)} lines but label {len(names)}; one label per utterance")
        for number, (text, name) in enumerate(zip(lines, names, strict=True), start=1):
            if not text.strip() or not name.strip():
                raise DataError(f"{where}, line {number}: empty utterance or label; every line needs both")
            texts.append(text.strip())
            labels.append(name.strip())
            splits.append(split)
    trained = {name for name, split in zip(labels, splits, strict=True) if split == "train"}
    unseen = sorted({name for name, split in zip(labels, splits, strict=True) if split != "train"} - trained)
    if trained and unseen:
        raise DataError(
            f"{root}: {len(unseen)} labels of the validation or test folders have no training utterance (e.g. "
            f"{unseen[:3]}); every class needs training examples"
        )
    names_sorted = sorted(set(labels))
    ids = {name: i for i, name in enumerate(names_sorted)}
    groups: dict[str, list[int]] = {}
    if group_separator is not None:
        for name in names_sorted:
            groups.setdefault(name.split(group_separator, 1)[0], []).append(ids[name])
    return TextDataset(
        tuple(texts),
        np.array([ids[n] for n in labels], dtype=np.int64),
        tuple(names_sorted),
        np.array(splits),
        {k: tuple(v) for k, v in groups.items()},
    )


def texts_of(dataset: TextDataset, indices: Sequence[int] | npt.NDArray[np.int64]) -> list[str]:
    return [dataset.texts[i] for i in np.asarray(indices).tolist()]
