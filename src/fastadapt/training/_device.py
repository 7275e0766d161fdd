"""Where a run computes: the device from ``training.device`` and torch's thread count from ``training.threads``."""

from __future__ import annotations

import os
import re

import torch

from ._config import ConfigError

#: The environment variable that sets torch's intra-op threads when ``training.threads`` is not given.
THREADS_ENV = "FASTADAPT_THREADS"

_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?|mps")


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available, else the CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` as a device; a device
    this machine lacks is a :class:`ConfigError` that says so."""
    if not _DEVICE.fullmatch(name):
        raise ConfigError(f"training.device must be auto, cpu, cuda, cuda:N or mps; got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"training.device={name} but CUDA is not available (torch {torch.__version__}, a CPU build or no GPU); "
                "use training.device=cpu or auto"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"training.device={name} but this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"training.device={name} but MPS is not available here; use training.device=cpu or auto")
    return device


def resolve_threads(threads: int | None) -> int | None:
    """The intra-op thread count to set: ``threads``, else ``$FASTADAPT_THREADS``, else ``None`` (torch's own)."""
    if threads is None:
        raw = os.environ.get(THREADS_ENV)
        if raw is None or not raw.strip():
            return None
        try:
            threads = int(raw)
        except ValueError:
            raise ConfigError(f"{THREADS_ENV}={raw!r} is not a whole number of threads") from None
        where = THREADS_ENV
    else:
        where = "training.threads"
    if threads < 1:
        raise ConfigError(f"{where} must be >= 1, got {threads}")
    return threads


def apply_threads(threads: int | None) -> int:
    """Sets torch's intra-op threads (see :func:`resolve_threads`) and returns the number in force."""
    chosen = resolve_threads(threads)
    if chosen is not None and chosen != torch.get_num_threads():
        torch.set_num_threads(chosen)
    return torch.get_num_threads()
