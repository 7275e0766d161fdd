r"""Classification reports from integer labels: accuracy, per-class and macro precision/recall/F1, the
confusion matrix and its plot.

Definitions, for classes :math:`c = 0..C-1` with :math:`\mathrm{TP}_c, \mathrm{FP}_c, \mathrm{FN}_c` read off
the confusion matrix (rows = true class, columns = predicted class):

- ``precision`` :math:`= \mathrm{TP}_c / (\mathrm{TP}_c + \mathrm{FP}_c)`, and **0 for a class that is never
  predicted** (the denominator is 0);
- ``recall`` :math:`= \mathrm{TP}_c / (\mathrm{TP}_c + \mathrm{FN}_c)`, and 0 for a class with no true sample;
- ``f1`` :math:`= 2\,\mathrm{TP}_c / (2\,\mathrm{TP}_c + \mathrm{FP}_c + \mathrm{FN}_c)`, and 0 when that
  denominator is 0;
- the macro averages are the unweighted means over the classes that occur in ``y_true`` or ``y_pred``; a class
  id that occurs in neither has no defined score and is left out (it is still listed per class, with zeros).

The counts come from :func:`sklearn.metrics.confusion_matrix` and the per-class scores from
:func:`sklearn.metrics.precision_recall_fscore_support` (``labels=range(C)``, ``average=None``,
``zero_division=0``); the macro means over the present classes equal that function's ``average="macro"``
without ``labels``. The plot needs matplotlib (the ``plots`` extra), imported only when a plot is drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .._extras import require

#: Above this many classes the plot draws no per-cell numbers and no per-class tick labels.
_MAX_ANNOTATED_CLASSES = 30


def _labels(
    y_true: npt.ArrayLike, y_pred: npt.ArrayLike, n_classes: int | None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], int]:
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.ndim != 1 or t.shape != p.shape:
        raise ValueError(f"y_true and y_pred must be 1-D of the same length, got {t.shape} and {p.shape}")
    if len(t) == 0:
        raise ValueError("y_true is empty: a report needs at least one labelled example")
    for name, arr in (("y_true", t), ("y_pred", p)):
        if arr.dtype.kind not in "iu":
            raise ValueError(
                f"{name} must hold integer class ids, got dtype {arr.dtype}; "
                "map class names to ids 0..n_classes-1 (and logits to argmax) first"
            )
        if arr.min() < 0:
            raise ValueError(f"{name} holds the negative class id {int(arr.min())}; class ids start at 0")
    largest = int(max(t.max(), p.max()))
    if n_classes is None:
        n_classes = largest + 1
    elif largest >= n_classes:
        raise ValueError(f"class id {largest} is out of range for n_classes={n_classes}; pass n_classes > {largest}")
    return t.astype(np.int64), p.astype(np.int64), n_classes


def confusion_matrix(
    y_true: npt.ArrayLike, y_pred: npt.ArrayLike, n_classes: int | None = None
) -> npt.NDArray[np.int64]:
    """Counts of (true, predicted) class pairs.

    Args:
        y_true: ``(n,)`` integer class ids >= 0.
        y_pred: ``(n,)`` predicted class ids >= 0.
        n_classes: the number of classes ``C`` (default: the largest id seen plus one).

    Returns:
        ``(C, C)`` int64 matrix; entry ``[i, j]`` counts examples of true class ``i`` predicted as ``j``.
    """
    from sklearn import metrics  # on use: importing sklearn.metrics takes ~1.5 s

    t, p, c = _labels(y_true, y_pred, n_classes)
    return metrics.confusion_matrix(t, p, labels=np.arange(c)).astype(np.int64)


def _ratio(num: npt.NDArray[np.float64], den: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """``num / den`` with 0 where ``den`` is 0 (rows of the plot with no examples)."""
    out = np.zeros_like(num)
    np.divide(num, den, out=out, where=den > 0)
    return out


def classification_report(y_true: npt.ArrayLike, y_pred: npt.ArrayLike, n_classes: int | None = None) -> dict[str, Any]:
    """Accuracy, macro and per-class precision/recall/F1 (definitions in the module docstring).

    Args:
        y_true: ``(n,)`` integer class ids >= 0.
        y_pred: ``(n,)`` predicted class ids >= 0.
        n_classes: the number of classes ``C`` (default: the largest id seen plus one).

    Returns:
        ``{"accuracy", "macro_precision", "macro_recall", "macro_f1"}`` floats; ``"precision"``,
        ``"recall"``, ``"f1"`` (floats) and ``"support"`` (ints, true examples per class), lists of length
        ``C`` indexed by class id; ``"n_samples"``, ``"n_classes"`` (``C``) and ``"n_classes_averaged"``
        (the classes that occur in ``y_true`` or ``y_pred``, over which the macro means are taken).
    """
    from sklearn import metrics

    t, p, c = _labels(y_true, y_pred, n_classes)
    labels = np.arange(c)
    matrix = metrics.confusion_matrix(t, p, labels=labels)  # (C, C)
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        t, p, labels=labels, average=None, zero_division=0
    )
    present = (matrix.sum(axis=1) + matrix.sum(axis=0)) > 0  # (C,) true or predicted at least once
    return {
        "accuracy": float(np.trace(matrix) / len(t)),
        "macro_precision": float(precision[present].mean()),
        "macro_recall": float(recall[present].mean()),
        "macro_f1": float(f1[present].mean()),
        "precision": precision.astype(np.float64).tolist(),
        "recall": recall.astype(np.float64).tolist(),
        "f1": f1.astype(np.float64).tolist(),
        "support": support.astype(np.int64).tolist(),
        "n_samples": len(t),
        "n_classes": c,
        "n_classes_averaged": int(present.sum()),
    }


def plot_confusion_matrix(
    matrix: npt.ArrayLike,
    path: str | Path,
    class_names: Sequence[str] | None = None,
    normalise: bool = True,
    title: str | None = None,
) -> Path:
    """Writes a confusion matrix as a PNG heat map (rows = true class, columns = predicted class).

    Uses matplotlib's ``Figure`` with the Agg canvas directly, so calling it touches neither pyplot nor the
    global backend; matplotlib is imported here, not with the module, as it is an optional extra. Up to 30
    classes every cell shows its value and every tick its class name; above that (e.g. CLINC150's 150 intents)
    only the colours and sparse tick numbers are drawn.

    Args:
        matrix: ``(C, C)`` non-negative counts, e.g. from :func:`confusion_matrix`.
        path: where to write; must end in ``.png``. Missing parent folders are created.
        class_names: ``C`` tick labels (default: the class ids).
        normalise: divide each row by its sum, so a cell is the fraction of true class ``i`` predicted as
            ``j`` (rows with no examples stay 0).
        title: the figure title (default: none).

    Returns:
        The path written.

    Raises:
        ImportError: matplotlib is not installed (a ``MissingExtraError`` naming ``fastadapt[plots]``).
    """
    require("matplotlib", "plots", "plotting")  # raises, naming the extra, before any plotting import fails
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise ValueError(f"matrix must be a non-empty square (C, C) array, got shape {m.shape}")
    if (m < 0).any() or np.isnan(m).any():
        raise ValueError("matrix must hold non-negative counts; pass the output of confusion_matrix")
    c = m.shape[0]
    if class_names is not None and len(class_names) != c:
        raise ValueError(f"class_names has {len(class_names)} names for a matrix of {c} classes")
    out = Path(path)
    if out.suffix.lower() != ".png":
        raise ValueError(f"path must end in .png (the plot is written as PNG), got {out.name!r}")
    if normalise:
        m = _ratio(m, m.sum(axis=1, keepdims=True))  # (C, C) / (C, 1)

    side = min(4.0 + 0.35 * c, 20.0)  # inches; 150 classes -> 20 in. at 100 dpi, still readable as colours
    fig = Figure(figsize=(side + 1.5, side), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    vmax = 1.0 if normalise else max(float(m.max()), 1.0)
    image = ax.imshow(m, cmap="Blues", vmin=0.0, vmax=vmax)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class" if normalise else "count")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if title is not None:
        ax.set_title(title)
    if c <= _MAX_ANNOTATED_CLASSES:
        names = list(class_names) if class_names is not None else [str(i) for i in range(c)]
        ax.set_xticks(range(c), names, rotation=90 if c > 10 else 0)
        ax.set_yticks(range(c), names)
        threshold = vmax / 2  # dark cells get white text
        for i in range(c):
            for j in range(c):
                text = f"{m[i, j]:.2f}" if normalise else f"{int(m[i, j])}"
                color = "white" if m[i, j] > threshold else "black"
                ax.text(j, i, text, ha="center", va="center", fontsize=7 if c > 10 else 9, color=color)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", bbox_inches="tight")  # fits long names; tight_layout may warn instead
    return out
