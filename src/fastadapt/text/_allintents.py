"""The all-intents K-shot protocol: every method sees the same K utterances per intent and is scored on the
whole test split; ensembles combine the methods of the same draw."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from ..evaluation import classification_report
from ._datasets import TextDataset, texts_of
from ._fewshot import (
    HeadConfig,
    adaptation_variants,
    average_probabilities,
    fit_logistic,
    hashed_mlp,
    logistic_head,
    meta_train_head,
    nearest_mean,
    uniform_soup,
)
from ._oos import choose_threshold, out_of_scope_report
from ._predictor import Predictor
from ._protocols import kshot_indices
from ._selection import kshot_folds, one_se_choice, select_head

BASELINES = ("logistic", "nearest-mean", "hashed-mlp")
#: The baselines whose validation score can choose them as the run's method (the hashed MLP is left out: it
#: costs more than the rest together and is never the best on a pretrained encoder).
SELECTABLE = ("logistic", "nearest-mean")
Probabilities = npt.NDArray[np.float64]


def _scores(truth: npt.NDArray[np.int64], probabilities: Probabilities, seconds: float) -> dict[str, Any]:
    report = classification_report(truth, probabilities.argmax(1), n_classes=probabilities.shape[1])
    return {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"], "seconds": round(seconds, 2)}


def all_intents(
    dataset: TextDataset,
    embeddings: npt.NDArray[np.float32],
    shots: int,
    seed: int,
    heads: Mapping[str, HeadConfig],
    baselines: Sequence[str] = BASELINES,
    soups: Sequence[str] = ("maml", "anil"),
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    split: str = "test",
    select: bool = True,
    folds: int = 2,
    validation: tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]] | None = None,
    out_of_scope: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]] | None = None,
    keep: dict[str, Predictor] | None = None,
    per_utterance: bool = False,
) -> dict[str, dict[str, Any]]:
    """One seeded K-shot draw, every method on it.

    Args:
        embeddings: ``(len(dataset.texts), d)`` frozen embeddings of every text.
        heads: name -> meta-trained head settings (their seed is replaced by ``seed``); episodes are drawn
            from the K-shot training utterances only.
        baselines: any of :data:`BASELINES`.
        soups: names in ``heads`` whose adaptation variants (inner learning rate x steps) are also combined,
            as a uniform soup and as a prediction ensemble of the same variants.
        split: where the methods are scored: ``"test"``, or ``"val"`` to choose settings without the test split.
        select: choose each head's settings (:func:`~fastadapt.text.select_head`: per-class inner rate and
            adaptation steps) on the K-shot draw by ``folds``-fold cross-validation, or on ``validation``
            (embeddings, labels) when given, before the head is meta-trained on the whole draw; and choose
            the run's method (``selected``) among the heads and :data:`SELECTABLE` baselines by the same
            validation accuracy. ``False``: the heads' settings as given, no ``selected`` row.
        out_of_scope: embeddings of out-of-scope validation and test utterances (needs ``validation``): each
            method's confidence threshold is chosen on the validation ones
            (:func:`~fastadapt.text.choose_threshold`) and its row gets ``oos``
            (:func:`~fastadapt.text.out_of_scope_report` on the test split and the test ones; the hashed MLP,
            which reads texts, is left out).
        per_utterance: add ``correct``, a list of 0/1 per test utterance, to every row (for paired tests over
            utterances).
        keep: filled with a :class:`~fastadapt.text.Predictor` of each baseline and head that can be saved
            (logistic, nearest-mean, the heads), with its threshold when ``out_of_scope`` is given.

    Returns:
        method -> ``{"accuracy", "macro_f1", "seconds"}`` on ``split``; an ensemble's or soup's seconds are
        its own cost beyond its members'. With ``select``, each head's row has ``selection``
        (:meth:`Selection.summary`: the chosen values and every candidate's validation accuracy; its seconds
        include the search), each selectable method's row its ``validation_accuracy``, and ``selected`` is
        the row of the method :func:`~fastadapt.text.one_se_choice` picks (the baselines first, then the heads
        in order: the first within one standard error of the best), with its name under ``method``.
        Ensembles: ``ensemble`` (the mean probabilities of the meta-trained heads), ``ensemble+logistic``
        (those and the logistic head), ``<head> soup`` and ``<head> variants`` for each name in ``soups``.
    """
    unknown = sorted(set(baselines) - set(BASELINES))
    if unknown:
        raise ValueError(f"unknown baselines {unknown}; choose from {BASELINES}")
    support = kshot_indices(dataset, shots, seed)
    test = dataset.indices(split)
    sx, sy = embeddings[support], dataset.labels[support]
    tx, ty = embeddings[test], dataset.labels[test]
    if out_of_scope is not None and validation is None:
        raise ValueError("out-of-scope thresholds are chosen on validation utterances: give validation too")
    # Every method predicts the test rows, then the validation and out-of-scope rows, in one call.
    extra = [] if validation is None else [validation[0]]
    extra += [] if out_of_scope is None else list(out_of_scope)
    bounds = np.cumsum([len(tx)] + [len(e) for e in extra]).tolist()
    rows_x = np.concatenate([tx, *extra]) if extra else tx
    say = log or (lambda _: None)
    results: dict[str, dict[str, Any]] = {}
    probabilities: dict[str, Probabilities] = {}
    validated: dict[str, float] = {}

    def record(name: str, p: Probabilities, seconds: float) -> None:
        parts = np.split(p, bounds[:-1]) if len(p) == len(rows_x) else [p]
        probabilities[name] = parts[0]
        results[name] = _scores(ty, parts[0], seconds)
        if per_utterance:
            results[name]["correct"] = (parts[0].argmax(1) == ty).astype(int).tolist()
        if validation is not None and len(parts) > 1 and name in validated:
            validated[name] = float((parts[1].argmax(1) == validation[1]).mean())
        if out_of_scope is not None and len(parts) == 4:
            threshold = choose_threshold(parts[1], validation[1], parts[2])  # type: ignore[index]
            results[name]["oos"] = out_of_scope_report(parts[0], ty, parts[3], threshold)
            if keep is not None and name in keep:
                keep[name].threshold = threshold
        say(f"{shots}-shot seed {seed} {name}: accuracy {results[name]['accuracy']:.4f} ({seconds:.1f} s)")

    pairs = kshot_folds(sy, folds, seed) if select and validation is None else []

    def validate(name: str) -> None:
        if validation is not None:
            validated[name] = 0.0  # scored on the validation rows of its predictions, in record()
            return
        fit = logistic_head if name == "logistic" else nearest_mean
        accuracies = [
            (
                np.asarray(fit(sx[tr], sy[tr], sx[va], **({"seed": seed} if name == "logistic" else {}))).argmax(1)
                == sy[va]
            ).mean()
            for tr, va in pairs
        ]
        validated[name] = float(np.mean(accuracies))

    for name in baselines:
        start = time.perf_counter()
        if select and name in SELECTABLE:
            validate(name)
        if name == "logistic":
            model = fit_logistic(sx, sy, seed=seed)
            p = np.asarray(model.predict_proba(rows_x))
            if keep is not None:
                keep[name] = Predictor.linear(model)
        elif name == "nearest-mean":
            p = nearest_mean(sx, sy, rows_x)
            if keep is not None:
                keep[name] = Predictor.nearest_mean(sx, sy)
        else:
            p = hashed_mlp(texts_of(dataset, support), sy, texts_of(dataset, test), seed=seed)
        record(name, p, time.perf_counter() - start)
    support_x, support_y, test_x = torch.from_numpy(sx), torch.from_numpy(sy), torch.from_numpy(rows_x)
    for name, config in heads.items():
        start = time.perf_counter()
        config = replace(config, seed=seed)
        selection = None
        if select:
            selection = select_head(
                config, sx, sy, dataset.num_classes, folds=folds, validation=validation, progress=progress
            )
            config = selection.config
            validated[name] = selection.scores[selection.best]  # with validation rows: scored again in record()
            say(f"{shots}-shot seed {seed} {name}: chose {selection.best} ({selection.validation})")
        fitted = selection.head if selection is not None else None  # a validation split's search trained it
        head = fitted or meta_train_head(config, sx, sy, classes=dataset.num_classes, progress=progress)
        state = head.adapt(support_x, support_y)
        if keep is not None:
            keep[name] = Predictor.head(head, state, name)
        p = head.probabilities(state, test_x).double().numpy()
        record(name, p, time.perf_counter() - start)
        if selection is not None:
            results[name]["selection"] = selection.summary()
        if head.effective_inner_lr is not None:
            results[name]["effective_inner_lr"] = head.effective_inner_lr
        if name in soups:
            start = time.perf_counter()
            variants = adaptation_variants(head)
            states = [v.adapt(support_x, support_y) for v in variants]
            members = [v.probabilities(s, test_x).double().numpy() for v, s in zip(variants, states, strict=True)]
            record(f"{name} variants", average_probabilities(members), time.perf_counter() - start)
            start = time.perf_counter()
            soup = head.probabilities(uniform_soup(states), test_x).double().numpy()
            record(f"{name} soup", soup, time.perf_counter() - start)
    if heads:
        record("ensemble", average_probabilities([probabilities[n] for n in heads]), 0.0)
        if "logistic" in probabilities:
            members = [probabilities[n] for n in (*heads, "logistic")]
            record("ensemble+logistic", average_probabilities(members), 0.0)
    for predictor in (keep or {}).values():
        predictor.class_names = dataset.class_names
    for name, accuracy in validated.items():
        results[name]["validation_accuracy"] = accuracy
    if validated:
        examples = len(validation[1]) if validation is not None else sum(len(va) for _, va in pairs)
        best = one_se_choice(validated, examples)
        results["selected"] = {**results[best], "method": best, "validation_examples": examples}
    return results
