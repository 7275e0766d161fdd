"""Fine-tuning the sentence encoder itself, on a CPU:

* :func:`setfit_encoder`: SetFit's contrastive fine-tuning (Tunstall et al. 2022, arXiv:2209.11055; the ``setfit``
  package) on a few-shot set, with the number of pairs capped; any head is then fitted on its embeddings.
* :func:`protonet_encoder`: episodic (Prototypical Network) fine-tuning of the encoder's top layers on a large
  labelled source dataset, validated on episodes of held-out source classes, the best step kept (the pretrained
  encoder included): meta-training that transfers to another dataset's intents.

Both write a sentence-transformers folder, usable wherever an encoder name is (``--encoder FOLDER``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from .._extras import require
from ..tasks import EpisodeSampler, LabelledPool
from ._encoders import SentenceEncoder

Labels = npt.NDArray[np.int64]


def replace_folder(source: Path, target: Path) -> None:
    """Moves the folder ``source`` to ``target``, replacing what is there: the old one is renamed aside first
    and removed only after the new one is in place, so ``target`` always holds one whole model."""
    target.parent.mkdir(parents=True, exist_ok=True)
    old = target.with_name(target.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        os.replace(target, old)
    try:
        os.replace(source, target)
    except OSError:
        if old.exists():
            os.replace(old, target)  # the previous model stays
        raise
    if old.exists():
        shutil.rmtree(old)


def setfit_encoder(
    encoder: str,
    texts: Sequence[str],
    labels: Labels,
    out: Path,
    seed: int = 0,
    max_pairs: int = 4000,
    batch_size: int = 16,
) -> dict[str, Any]:
    """SetFit's body fine-tuning on ``texts`` / ``labels`` (contrastive pairs of same- and different-label
    texts, cosine-similarity loss, one epoch, the package's default rates), with ``num_iterations`` set so that
    at most ``max_pairs`` pairs are drawn; the fine-tuned encoder is saved to ``out``.

    Returns:
        ``{"pairs", "seconds"}``.

    Raises:
        MissingExtraError: ``setfit`` is not installed.
    """
    require("setfit", "setfit", "encoder fine-tuning with SetFit")
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    start = time.perf_counter()
    iterations = max(1, max_pairs // (2 * len(texts)))
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as scratch:  # beside out: the final move is a rename
        model = SetFitModel.from_pretrained(SentenceEncoder(encoder)._location())
        args = TrainingArguments(
            output_dir=scratch, batch_size=batch_size, num_epochs=1, num_iterations=iterations, seed=seed,
            report_to="none", show_progress_bar=False, save_strategy="no", logging_strategy="no",
        )  # fmt: skip
        data = Dataset.from_dict({"text": list(texts), "label": [int(v) for v in labels]})
        trainer = Trainer(model=model, args=args, train_dataset=data)
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            # Its data loader asks for pinned memory, which a CPU has none of; that changes nothing here.
            warnings.filterwarnings("ignore", message=".*'pin_memory' argument is set as true.*")
            trainer.train_embeddings(*trainer.dataset_to_parameters(data), args=args)
        model.model_body.save(os.path.join(scratch, "encoder"))
        replace_folder(Path(scratch) / "encoder", out)
    return {"pairs": 2 * iterations * len(texts), "seconds": round(time.perf_counter() - start, 1)}


def _embed(model: Any, texts: Sequence[str]) -> torch.Tensor:
    features = model.preprocess(list(texts))
    features = {k: v.to(model.device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}
    return torch.nn.functional.normalize(model(features)["sentence_embedding"], dim=-1)


def _episode_logits(model: Any, texts: Sequence[str], task: Any, ways: int, scale: torch.Tensor) -> torch.Tensor:
    ids = torch.cat([task.support_x, task.query_x])[:, 0].long().tolist()
    z = _embed(model, [texts[i] for i in ids])
    support, query = z[: len(task.support_x)], z[len(task.support_x) :]
    prototypes = torch.zeros(ways, z.shape[1], dtype=z.dtype).index_add_(0, task.support_y, support)
    prototypes = torch.nn.functional.normalize(prototypes, dim=-1)
    return scale * query @ prototypes.T  # cosine logits: (n_query, ways)


def protonet_encoder(
    encoder: str,
    texts: Sequence[str],
    labels: Labels,
    out: Path,
    val_fraction: float = 0.2,
    ways: int = 20,
    shots: int = 3,
    queries: int = 2,
    steps: int = 200,
    layers: int = 2,
    lr: float = 2e-5,
    val_every: int = 25,
    val_episodes: int = 20,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Prototypical-Network fine-tuning of the top ``layers`` transformer layers of ``encoder`` on episodes of
    a labelled source dataset, with a learned logit scale (cosine similarity to normalised prototypes).

    ``val_fraction`` of the source classes (seeded) are held out; every ``val_every`` steps (and before the
    first) the mean accuracy on the same ``val_episodes`` episodes of those classes is measured, and the best
    step's encoder (ties: the earlier) is saved to ``out`` with ``meta_train.json`` (the history).

    Raises:
        ValueError: fewer than ``ways`` training or validation classes with ``shots + queries`` texts each, or
            ``layers`` outside ``1..`` the encoder's layer count.
    """
    say = log or (lambda _: None)
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    counts = np.bincount(labels)
    usable = classes[counts[classes] >= shots + queries]
    held = rng.permutation(usable)
    cut = max(1, round(val_fraction * len(held)))
    val_classes, train_classes = np.sort(held[:cut]), np.sort(held[cut:])
    val_ways = min(ways, len(val_classes))
    if len(train_classes) < ways or val_ways < 2:
        raise ValueError(
            f"{len(train_classes)} training and {len(val_classes)} validation source classes have {shots + queries} "
            f"or more texts; {ways}-way episodes need {ways} training classes and validation 2 or more (lower ways, "
            "raise val_fraction or give more classes)"
        )
    pool = LabelledPool(
        torch.arange(len(texts), dtype=torch.float64)[:, None], torch.as_tensor(labels), tuple(map(str, classes))
    )
    train = EpisodeSampler(pool, train_classes.tolist(), ways, shots, queries)
    val = EpisodeSampler(pool, val_classes.tolist(), val_ways, shots, queries)
    generator = torch.Generator().manual_seed(seed)
    val_tasks = [val.sample(torch.Generator().manual_seed(seed * 1000 + i)) for i in range(val_episodes)]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = SentenceEncoder(encoder).load()
        blocks = model[0].auto_model.encoder.layer
        if not 1 <= layers <= len(blocks):
            raise ValueError(f"layers={layers}: the encoder has {len(blocks)} transformer layers; use 1..{len(blocks)}")
        for p in model.parameters():
            p.requires_grad_(False)
        trained = [p for block in blocks[-layers:] for p in block.parameters()]
        for p in trained:
            p.requires_grad_(True)
        scale = torch.tensor(10.0, requires_grad=True)
        optimizer = torch.optim.AdamW([{"params": trained, "lr": lr}, {"params": [scale], "lr": 1e-2}])

        def validate() -> float:
            model.eval()
            with torch.no_grad():
                hits = [
                    (_episode_logits(model, texts, t, val_ways, scale).argmax(1) == t.query_y).double().mean().item()
                    for t in val_tasks
                ]
            model.train()
            return float(np.mean(hits))

        history = [{"step": 0, "val_accuracy": validate()}]
        best = (history[0]["val_accuracy"], 0, [p.detach().clone() for p in trained])
        say(f"meta-train step 0: validation accuracy {history[0]['val_accuracy']:.4f}")
        start = time.perf_counter()
        model.train()
        for step in range(1, steps + 1):
            task = train.sample(generator)
            loss = torch.nn.functional.cross_entropy(_episode_logits(model, texts, task, ways, scale), task.query_y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step % val_every == 0 or step == steps:
                accuracy = validate()
                history.append({"step": step, "val_accuracy": accuracy, "loss": float(loss.detach())})
                say(f"meta-train step {step}: loss {float(loss.detach()):.4f}, validation accuracy {accuracy:.4f}")
                if accuracy > best[0]:
                    best = (accuracy, step, [p.detach().clone() for p in trained])
        with torch.no_grad():
            for p, kept in zip(trained, best[2], strict=True):
                p.copy_(kept)
        model.eval()
    record = {
        "encoder": encoder,
        "best_step": best[1],
        "best_val_accuracy": best[0],
        "pretrained_val_accuracy": history[0]["val_accuracy"],
        "history": history,
        "seconds": round(time.perf_counter() - start, 1),
        "settings": {"ways": ways, "shots": shots, "queries": queries, "steps": steps, "layers": layers, "lr": lr},
        "classes": {"train": len(train_classes), "val": len(val_classes)},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as scratch:
        model.save(os.path.join(scratch, "encoder"))
        (Path(scratch) / "encoder" / "meta_train.json").write_text(json.dumps(record, indent=1))
        replace_folder(Path(scratch) / "encoder", out)
    return record
