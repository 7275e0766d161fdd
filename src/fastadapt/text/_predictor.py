"""A fitted few-shot text classifier that can be saved and used again: the logistic head, nearest class mean
or an adapted meta-trained head, with the encoder it reads, its class names and an optional out-of-scope
threshold. Saved as one safetensors file (tensors and a JSON record, written atomically, content-checked on
load; nothing pickled)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from ..algorithms import build_algorithm
from ..training import CheckpointError, load_checkpoint, save_checkpoint
from ._fewshot import Array, FittedHead, HeadConfig, head_model

KINDS = ("linear", "nearest-mean", "head")
FORMAT = "fastadapt-text-classifier/1"


def _out_width(params: dict[str, Tensor]) -> int:
    """The output width of a head: the rows of its last weight matrix."""
    return int([v for k, v in params.items() if k.endswith("weight")][-1].shape[0])


@dataclass
class Predictor:
    """Class probabilities of embeddings ``(n, d)``.

    Attributes:
        kind: ``linear`` (``softmax(x W^T + b)``: the logistic head), ``nearest-mean`` (softmax of minus the
            squared distance to each class mean) or ``head`` (a meta-trained head's parameters and its
            adaptation state).
        tensors: ``weight``/``bias``, ``means``, or ``params.*``/``state.*``.
        meta: the method's name and, for a head, its :class:`HeadConfig` fields, input width, classes and the
            inner rate it ran with.
        class_names, encoder: what the class ids mean, and the encoder whose embeddings it reads.
        threshold: out-of-scope when the largest probability is below it (``None``: never).
    """

    kind: str
    tensors: dict[str, Tensor]
    meta: dict[str, Any] = field(default_factory=dict)
    class_names: tuple[str, ...] = ()
    encoder: str = ""
    threshold: float | None = None

    @classmethod
    def linear(cls, model: Any, name: str = "logistic") -> Predictor:
        """From a fitted scikit-learn linear classifier (``coef_``, ``intercept_``; a binary one's single row
        becomes two, ``[0, w]``, whose softmax is its sigmoid)."""
        weight, bias = np.asarray(model.coef_, dtype=np.float64), np.asarray(model.intercept_, dtype=np.float64)
        if weight.shape[0] == 1:
            weight, bias = np.concatenate([np.zeros_like(weight), weight]), np.concatenate([[0.0], bias])
        return cls("linear", {"weight": torch.from_numpy(weight), "bias": torch.from_numpy(bias)}, {"method": name})

    @classmethod
    def nearest_mean(cls, support_x: Array, support_y: npt.NDArray[np.int64]) -> Predictor:
        classes = int(support_y.max()) + 1
        means = np.stack([support_x[support_y == c].mean(0) for c in range(classes)]).astype(np.float64)
        return cls("nearest-mean", {"means": torch.from_numpy(means)}, {"method": "nearest-mean"})

    @classmethod
    def head(cls, head: FittedHead, state: dict[str, Tensor], name: str) -> Predictor:
        tensors = {f"params.{k}": v.detach().cpu() for k, v in head.params.items()}
        tensors.update({f"state.{k}": v.detach().cpu() for k, v in state.items()})
        first = next(v for k, v in head.params.items() if k.endswith("weight"))
        config = dataclasses.asdict(head.config)
        meta = {
            "method": name,
            "config": {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()},
            "in_features": int(first.shape[1]),
            "classes": int(head.algorithm.ways) if hasattr(head.algorithm, "ways") else _out_width(head.params),
            "effective_inner_lr": head.effective_inner_lr,
        }
        return cls("head", tensors, meta)

    @property
    def classes(self) -> int:
        return len(self.class_names) or int(self.meta.get("classes") or self._width())

    def _width(self) -> int:
        if self.kind == "linear":
            return int(self.tensors["weight"].shape[0])
        if self.kind == "nearest-mean":
            return int(self.tensors["means"].shape[0])
        return int(self.meta["classes"])

    @property
    def method(self) -> str:
        return str(self.meta.get("method", self.kind))

    def probabilities(self, x: Array) -> npt.NDArray[np.float64]:
        """``(n, C)`` class probabilities of the embeddings ``x`` ``(n, d)``."""
        q = torch.from_numpy(np.ascontiguousarray(x)).double()
        with torch.no_grad():
            if self.kind == "linear":
                logits = q @ self.tensors["weight"].double().T + self.tensors["bias"].double()
            elif self.kind == "nearest-mean":
                means = self.tensors["means"].double()
                logits = -((q * q).sum(-1, keepdim=True) - 2 * q @ means.T + (means * means).sum(-1))
            else:
                return self._head_probabilities(q)
            return np.asarray(torch.softmax(logits, -1).numpy())

    def _head_probabilities(self, q: Tensor) -> npt.NDArray[np.float64]:
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in self.meta["config"].items()}
        config = HeadConfig(**fields)
        classes = self.classes
        model = head_model(int(self.meta["in_features"]), config.hidden, classes)
        if config.algorithm == "protonet":
            algorithm = build_algorithm("protonet", model, ways=classes)
        else:
            options = {"inner_lr": float(self.meta["effective_inner_lr"]), "inner_steps": config.inner_steps}
            algorithm = build_algorithm(config.algorithm, model, **options)
        params = {k[7:]: v for k, v in self.tensors.items() if k.startswith("params.")}
        state = {k[6:]: v for k, v in self.tensors.items() if k.startswith("state.")}
        dtype = next(iter(params.values())).dtype
        with torch.no_grad():
            logits = algorithm.predict(params, state, q.to(dtype))
        return np.asarray(torch.softmax(logits.double(), -1).numpy())

    def predict(self, x: Array, top_k: int = 1) -> list[list[tuple[str, float]]]:
        """Per row of ``x`` the ``top_k`` (label, probability) pairs, best first; ``("out-of-scope", p)`` first
        when the best probability ``p`` is below the threshold."""
        p = self.probabilities(x)
        names = self.class_names or tuple(str(c) for c in range(p.shape[1]))
        rows = []
        for row in p:
            order = np.argsort(-row)[:top_k]
            ranked = [(names[i], float(row[i])) for i in order.tolist()]
            if self.threshold is not None and row[order[0]] < self.threshold:
                ranked = [("out-of-scope", float(row[order[0]])), *ranked[: top_k - 1]]
            rows.append(ranked)
        return rows

    def save(self, path: Path | str) -> None:
        """Writes the predictor to ``path`` (atomically)."""
        state = {
            "format": FORMAT,
            "kind": self.kind,
            "meta": self.meta,
            "class_names": list(self.class_names),
            "encoder": self.encoder,
            "threshold": self.threshold,
        }
        save_checkpoint(Path(path), self.tensors, state)

    @classmethod
    def load(cls, path: Path | str) -> Predictor:
        """Reads a predictor written by :meth:`save`.

        Raises:
            CheckpointError: the file is missing, damaged, or not a saved text classifier.
        """
        try:
            tensors, state = load_checkpoint(Path(path))
        except CheckpointError as error:
            reason = str(error).split("; resume from")[0]
            raise CheckpointError(f"{reason}; run `fastadapt text fit ... --save` again to write a new one") from None
        if state.get("format") != FORMAT or state.get("kind") not in KINDS:
            raise CheckpointError(f"{path} is not a saved text classifier (fastadapt text fit --save writes one)")
        return cls(
            state["kind"],
            tensors,
            state["meta"],
            tuple(state["class_names"]),
            state["encoder"],
            state["threshold"],
        )
