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
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and "LOCAL_RANK" in os.environ and int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1) > 1:
        if device.index is not None:
            raise ConfigError(
                f"training.device={name} with {os.environ['LOCAL_WORLD_SIZE']} processes on this machine would put "
                "them all on one GPU; use training.device=cuda (or auto): each process takes cuda:LOCAL_RANK"
            )
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))  # torchrun: one GPU per local rank
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


#: Torch intra-op threads when neither ``training.threads`` nor ``$FASTADAPT_THREADS`` says: one. Measured by
#: ``benchmarks/threads.py`` on a 2-core machine (README, "Devices and threads"): on an idle machine two threads
#: were no faster than one for the shipped digits and sinusoid runs (0.88x, 1.01x), 1.55x for Omniglot ProtoNet's
#: 60-way episodes; with a second training beside it, two threads ran 0.31x and 0.08x of one idle thread where one
#: thread kept 0.57x and 0.62x (OpenMP threads spinning at barriers for a core they do not get). OpenMP's passive
#: wait policy rescued two threads only partly (0.34x, 0.52x) and slowed the idle case.
DEFAULT_THREADS = 1


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_threads(threads: int | None) -> int:
    """The intra-op thread count: ``threads``, else ``$FASTADAPT_THREADS``, else :data:`DEFAULT_THREADS`; in a
    distributed run (``$LOCAL_WORLD_SIZE`` > 1) the default is this rank's share of the machine's cores instead."""
    if threads is None:
        raw = os.environ.get(THREADS_ENV)
        if raw is None or not raw.strip():
            local = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
            return max(1, cores() // local) if local > 1 else DEFAULT_THREADS
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
    if chosen != torch.get_num_threads():
        torch.set_num_threads(chosen)
    return torch.get_num_threads()
