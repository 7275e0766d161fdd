"""A trained run as the service sees it: what its inputs look like, how a support set becomes tensors, and the
adapt / predict / recommend calls of the Python API on them."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..evaluation import placement
from ..recsys import RecsysData, user_categories
from ..recsys import recommend as recommend_items
from ..training import Experiment, load_run
from ..typing import Params
from ._images import IMAGE_DATASETS, ImageDecoder

#: Held while an adaptation seeds torch's global generator (one per process, shared by the worker threads).
_SEEDED = threading.Lock()
#: Algorithms whose output layer has no unit per way: they adapt to any number of classes.
ANY_WAYS = ("protonet", "hypernet", "logistic")


class InputError(ValueError):
    """A request whose content does not fit the model (HTTP 422); ``limit`` names a limit it broke, if any."""

    def __init__(self, message: str, limit: str | None = None, value: Any = None, maximum: Any = None) -> None:
        super().__init__(message)
        self.limit, self.value, self.maximum = limit, value, maximum


@dataclass
class Adapted:
    """An adapted model: the algorithm's state for one support set, and the labels its outputs stand for."""

    model: str
    state: Params
    labels: list[Any]
    adapt_ms: float
    nbytes: int = field(init=False)

    def __post_init__(self) -> None:
        self.nbytes = sum(t.numel() * t.element_size() for t in self.state.values())


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ServedModel:
    """One run directory, loaded once: its best checkpoint's parameters, in eval mode (no dropout), on its device.

    ``kind`` is ``classification`` (labels), ``regression`` (numbers) or ``recommendation`` (a movielens run).
    Inputs of the first two are arrays of numbers of the run's example shape (an 8x8 digit is 64 numbers or an
    8x8 nested list); ``input_shape`` says which."""

    def __init__(
        self, run_dir: str | Path, name: str | None = None, max_pixels: int = 4_000_000, max_chars: int = 2_000
    ) -> None:
        self.run_dir = Path(run_dir)
        self.name = name or self.run_dir.resolve().name
        experiment, params, path = load_run(self.run_dir)
        self.experiment: Experiment = experiment
        self.params = {k: v.detach() for k, v in params.items()}
        self.checkpoint_hash = _file_hash(path)
        config = experiment.config
        model = getattr(experiment.algorithm, "model", None)
        if isinstance(model, torch.nn.Module):
            model.eval()  # once: requests never switch modes, so concurrent ones cannot race on them
        self.algorithm = experiment.algorithm
        self.steps = config.algorithm.test_steps
        self.trained_ways = experiment.ways
        self.input_shape: tuple[int, ...] = ()
        self.target_shape: tuple[int, ...] = ()
        if isinstance(experiment.context, RecsysData):
            self.kind = "recommendation"
        else:
            task = experiment.sources[config.evaluation.split].sample(torch.Generator().manual_seed(0))
            self.input_shape = tuple(task.support_x.shape[1:])
            self.target_shape = tuple(task.support_y.shape[1:])
            self.kind = "classification" if not task.support_y.is_floating_point() else "regression"
        self.images: ImageDecoder | None = None
        self.max_chars = max_chars
        self.encoder: Any = None  # a text run's sentence encoder, built at the first text input
        self.text = experiment.suite.name == "text"
        self._lock = threading.Lock()
        if config.data.dataset in IMAGE_DATASETS and len(self.input_shape) == 3 and self.input_shape[0] in (1, 3):
            data = config.data
            self.images = ImageDecoder(data.dataset, self.input_shape, data.mean, data.std, max_pixels)
        self.summary = self._summary()

    def _summary(self) -> dict[str, Any]:
        config = self.experiment.config
        metric = None
        found = self.run_dir / "eval" / f"{config.evaluation.split}_summary.json"
        if found.is_file():
            saved = json.loads(found.read_text())
            metric = {k: saved.get(k) for k in ("metric", "mean", "ci95", "episodes", "split")}
        return {
            "name": self.name,
            "suite": self.experiment.suite.name,
            "dataset": config.data.dataset,
            "algorithm": config.algorithm.name,
            "kind": self.kind,
            "input_shape": list(self.input_shape),
            "inputs": ["numbers", *(["image"] if self.images is not None else []), *(["text"] if self.text else [])],
            "ways": self.trained_ways,
            "shots": config.task.shots,
            "any_ways": config.algorithm.name in ANY_WAYS,
            "steps": self.steps,
            "test_metric": metric,
            "checkpoint_sha256": self.checkpoint_hash,
        }

    # -- inputs --------------------------------------------------------------------------------
    def tensor(self, inputs: list[Any], what: str) -> Tensor:
        """Numeric inputs -> ``(n, *input_shape)`` on the parameters' device and dtype."""
        size = math.prod(self.input_shape)
        rows = []
        for i, value in enumerate(inputs):
            if isinstance(value, str) and self.text:
                rows.append(self._embed(value, f"{what}[{i}]"))
                continue
            if isinstance(value, str):
                if self.images is None:
                    raise InputError(
                        f"{what}[{i}] is a string; model {self.name!r} takes arrays of {size} numbers "
                        f"(shape {list(self.input_shape)}), not images or text"
                    )
                rows.append(self.images.decode(value, f"{what}[{i}]"))
                continue
            try:
                array = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError):
                raise InputError(
                    f"{what}[{i}] is not an array of numbers; model {self.name!r} takes {size} numbers "
                    f"(shape {list(self.input_shape)})"
                ) from None
            if array.size != size:
                raise InputError(
                    f"{what}[{i}] has {array.size} numbers; model {self.name!r} takes {size} "
                    f"(shape {list(self.input_shape)})"
                )
            if not np.isfinite(array).all():
                raise InputError(f"{what}[{i}] holds a NaN or infinite number")
            rows.append(array.reshape(self.input_shape))
        device, dtype = placement(self.params)
        x = torch.as_tensor(np.stack(rows), dtype=dtype, device=device)
        if not bool(torch.isfinite(x).all()):
            raise InputError(f"{what} holds a number too large for the model's {str(dtype).split('.')[-1]}")
        return x

    def _embed(self, text: str, where: str) -> np.ndarray:
        """A text run's input: the vector of the run's encoder, as its training texts were embedded."""
        if len(text) > self.max_chars:
            raise InputError(
                f"{where}: a text of {len(text)} characters is over the limit of {self.max_chars} (text_chars)",
                "text_chars",
                len(text),
                self.max_chars,
            )
        if not text.strip():
            raise InputError(f"{where} is an empty text")
        with self._lock:  # built once, by the first request that needs it
            if self.encoder is None:
                from ..text import build_encoder

                self.encoder = build_encoder(self.experiment.config.data.encoder)
        vector = np.asarray(self.encoder.encode_batch([text])[0], dtype=np.float64)
        return vector.reshape(self.input_shape)

    def targets(self, labels: list[Any]) -> tuple[Tensor, list[Any]]:
        """Support labels -> targets and the label of each output (first appearance order) for classification;
        numbers for regression."""
        device, dtype = placement(self.params)
        if self.kind == "regression":
            try:
                values = np.asarray(labels, dtype=np.float64)
            except (TypeError, ValueError):
                raise InputError(f"model {self.name!r} is a regression: every support label must be a number") from None
            if not np.isfinite(values).all():
                raise InputError("a support label is NaN or infinite")
            return torch.as_tensor(values, dtype=dtype, device=device).reshape(-1, *self.target_shape), []
        order = list(dict.fromkeys(labels))
        if len(order) < 2:
            raise InputError(f"the support set has {len(order)} label; give examples of 2 or more labels")
        if self.trained_ways is not None and len(order) != self.trained_ways and self.summary["any_ways"] is False:
            raise InputError(
                f"model {self.name!r} ({self.summary['algorithm']}) has one output per way and was trained on "
                f"{self.trained_ways}-way tasks; the support set has {len(order)} labels"
            )
        index = {label: i for i, label in enumerate(order)}
        return torch.tensor([index[label] for label in labels], device=device), order

    # -- the Python API's calls ------------------------------------------------------------------
    @contextlib.contextmanager
    def _computing(self, what: str) -> Iterator[None]:
        """A model that cannot compute on well-formed inputs (batch norm over one example of 1x1 features) is
        the request's problem (422), not the server's."""
        try:
            yield
        except (ValueError, RuntimeError) as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise InputError(f"model {self.name!r} cannot compute on these {what}: {first[:300]}") from None

    def adapt(self, inputs: list[Any], labels: list[Any], steps: int | None, seed: int) -> Adapted:
        x = self.tensor(inputs, "support")
        y, order = self.targets(labels)
        began = time.perf_counter()
        # torch's global generator is the process's: adaptations that seed it take turns
        with _SEEDED, torch.random.fork_rng(devices=[]), self._computing("support set"):
            torch.manual_seed(seed)
            with torch.no_grad():  # inner steps take their own gradients
                state = self.algorithm.adapt(self.params, x, y, steps=self.steps if steps is None else steps)
        state = {k: v.detach() for k, v in state.items()}
        return Adapted(self.name, state, order, (time.perf_counter() - began) * 1000)

    def predict(self, adapted: Adapted, inputs: list[Any], top_k: int | None) -> list[Any]:
        x = self.tensor(inputs, "inputs")
        with torch.no_grad(), self._computing("inputs"):
            outputs = self.algorithm.predict(self.params, adapted.state, x)
        if self.kind == "regression":
            return [row.tolist() if row.ndim else float(row) for row in outputs.reshape(len(x), -1).squeeze(-1)]
        probabilities = torch.softmax(outputs.double(), dim=-1)
        k = len(adapted.labels) if top_k is None else min(top_k, len(adapted.labels))
        values, indices = probabilities.topk(k, dim=-1)
        return [
            [{"label": adapted.labels[i], "probability": float(p)} for p, i in zip(row_p, row_i, strict=True)]
            for row_p, row_i in zip(values.tolist(), indices.tolist(), strict=True)
        ]

    def recommend(
        self, ratings: list[tuple[int, float]], features: dict[str, Any], top: int, steps: int | None
    ) -> list[dict[str, Any]]:
        data = self.experiment.context.data
        index = {int(item_id): i for i, item_id in enumerate(data.item_ids)}
        items, values = [], []
        for item_id, rating in ratings:
            if item_id not in index:
                raise InputError(f"item_id {item_id} is not one of {data.name}'s items")
            if not 1.0 <= rating <= 5.0:
                raise InputError(f"rating {rating} of item {item_id} is outside 1-5")
            items.append(index[item_id])
            values.append(rating)
        try:
            user = user_categories(data, **features)
        except ValueError as error:
            raise InputError(str(error)) from None
        found = recommend_items(
            self.algorithm,
            self.params,
            data,
            np.array(items, dtype=np.int64),
            np.array(values, dtype=np.float32),
            user,
            top,
            self.steps if steps is None else steps,
        )
        return [{"item_id": r.item_id, "title": r.title, "score": r.predicted_rating} for r in found]
