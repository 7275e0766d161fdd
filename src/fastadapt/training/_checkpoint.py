"""Checkpoints: one safetensors file (tensors + a JSON state in its metadata), written atomically,
verified by a content hash on load. Loading never unpickles anything."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

FORMAT = "fastadapt-checkpoint-1"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be trusted: missing, truncated, tampered with, or of another format."""


def _digest(tensors: dict[str, Tensor], state: str) -> str:
    h = hashlib.sha256(state.encode())
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_checkpoint(path: Path, tensors: dict[str, Tensor], state: dict[str, Any]) -> None:
    """Writes ``tensors`` and the JSON-serialisable ``state`` to ``path`` atomically: a temporary file
    in the same directory, fsynced, then renamed over the target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    record = json.dumps(state)
    metadata = {"format": FORMAT, "state": record, "sha256": _digest(tensors, record)}
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Reads a checkpoint written by :func:`save_checkpoint`; raises :class:`CheckpointError` with
    the reason if it is missing, truncated or altered."""
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        tensors = load_file(path)
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({error}); resume from an earlier checkpoint or start a new run"
        ) from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a fastadapt checkpoint (format {metadata.get('format')!r}, expected {FORMAT!r})"
        )
    if _digest(tensors, metadata.get("state", "")) != metadata.get("sha256"):
        raise CheckpointError(
            f"checkpoint {path} fails its content check (sha256 mismatch): it was modified or damaged "
            "after it was written; resume from an earlier checkpoint or start a new run"
        )
    try:
        state = json.loads(metadata["state"])
    except (KeyError, json.JSONDecodeError) as error:
        raise CheckpointError(f"checkpoint {path} has an unreadable state record ({error})") from None
    return tensors, state
