"""Scale-out on ``torch.distributed``: the meta-batch sharded over ranks, the meta-gradient all-reduced.

Second-order MAML differentiates twice, which ``DistributedDataParallel`` does not support, so the ranks do
what DDP would do by hand, once per meta-iteration:

- every rank draws the same meta-batch from the same seeded generator and differentiates only its own
  contiguous share of the tasks (:meth:`Group.share`); an episode sampler draws the plans of all (labels only,
  cheap) and loads only the share's examples;
- each rank's meta-gradient is divided by the *global* meta-batch size, so the sum over ranks is the global
  mean; the sum is one ``all_reduce`` of one flat buffer per dtype (the gradients and the loss and metric
  sums together);
- every rank applies the same optimiser step to the same gradient, so the parameters stay identical, which
  :meth:`Group.check_identical` verifies with a hash every ``training.sync_check_every`` steps.

Launched with ``torchrun`` (``fastadapt train --nproc N`` wraps it for one machine): the backend is ``gloo`` on
CPUs and ``nccl`` on CUDA devices. On gloo, a rank that dies closes its sockets and the others' next collective
fails, and a rank that hangs makes the others' collective time out after ``training.dist_timeout`` seconds;
either way they stop with a :class:`DistributedError` naming the step and how to resume. On nccl a timed-out
collective is aborted by its watchdog, which ends the process (torchrun then stops the others).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor

from ._config import ConfigError

#: torchrun's variables: which process this is, and of how many.
RANK_ENV, WORLD_ENV = "RANK", "WORLD_SIZE"
#: Set by torchrun to the number of times it has restarted the workers (``--max-restarts``).
RESTARTS_ENV = "TORCHELASTIC_RESTART_COUNT"


class DistributedError(RuntimeError):
    """A collective failed: another rank died or stopped answering."""


def world_size_from_environment() -> int:
    """``$WORLD_SIZE`` (1 when unset: a plain single-process run)."""
    raw = os.environ.get(WORLD_ENV, "1").strip() or "1"
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{WORLD_ENV}={raw!r} is not a whole number of processes") from None


def is_main_process() -> bool:
    """Rank 0 of a distributed run (``$RANK``), or a single-process run."""
    return int(os.environ.get(RANK_ENV, "0") or 0) == 0


def restarts() -> int:
    """How many times torchrun has restarted this run's workers (0 on the first attempt or without torchrun)."""
    return int(os.environ.get(RESTARTS_ENV, "0") or 0)


def shard_bounds(size: int, rank: int, world_size: int) -> range:
    """Rank ``rank``'s contiguous share of ``size`` items split over ``world_size`` ranks: sizes differ by at
    most one, the first ``size % world_size`` ranks taking one more (``numpy.array_split``'s rule)."""
    base, extra = divmod(size, world_size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (rank < extra))


def _digest(tensors: Iterable[Tensor]) -> int:
    digest = hashlib.blake2b(digest_size=8)
    for tensor in tensors:
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return int.from_bytes(digest.digest(), "little") >> 1  # fits in an int64


@dataclass
class Group:
    """This process's place in a distributed run and the collectives the trainer needs.

    Built by :func:`join_process_group` from torchrun's environment; ``step`` is the trainer's, for messages."""

    rank: int
    world_size: int
    backend: str
    timeout_s: float
    device: torch.device
    step: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes logs, TensorBoard events, plots and checkpoints."""
        return self.rank == 0

    def share(self, size: int) -> range:
        """The task indices of a ``size``-task meta-batch (or evaluation) this rank computes."""
        return shard_bounds(size, self.rank, self.world_size)

    def _collective(self, what: str, call: object) -> None:
        try:
            work = call()  # type: ignore[operator]
            if work is not None:
                work.wait()
        except (RuntimeError, dist.DistBackendError) as error:  # gloo and nccl raise these on a lost peer
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise DistributedError(
                f"rank {self.rank} of {self.world_size}: {what} at step {self.step} failed ({first[:200]}): another "
                f"rank died or stopped answering (timeout {self.timeout_s:g} s, training.dist_timeout); resume with "
                "`fastadapt train CONFIG --run-dir RUN --resume`, or launch with torchrun --max-restarts N to "
                "restart from the last checkpoint automatically"
            ) from None

    def all_sum(self, tensors: Sequence[Tensor], what: str = "all_reduce of the meta-gradient") -> None:
        """Replaces every tensor by its sum over the ranks, with one ``all_reduce`` per dtype (a flat bucket)."""
        by_dtype: dict[torch.dtype, list[Tensor]] = {}
        for tensor in tensors:
            by_dtype.setdefault(tensor.dtype, []).append(tensor)
        for group in by_dtype.values():
            flat = torch.cat([t.reshape(-1) for t in group]).to(self.device)
            self._collective(what, lambda flat=flat: dist.all_reduce(flat, op=dist.ReduceOp.SUM))
            flat = flat.to(group[0].device)
            offset = 0
            for t in group:
                t.copy_(flat[offset : offset + t.numel()].view_as(t))
                offset += t.numel()

    def broadcast(self, tensors: Iterable[Tensor], what: str = "broadcast of the parameters") -> None:
        """Rank 0's values into every rank's ``tensors`` (in place)."""
        for tensor in tensors:
            buffer = tensor.detach().to(self.device).contiguous()
            self._collective(what, lambda buffer=buffer: dist.broadcast(buffer, src=0))
            with torch.no_grad():
                tensor.copy_(buffer.to(tensor.device))

    def gather_bytes(self, tensor: Tensor, what: str = "gather of the random-number states") -> list[Tensor]:
        """Every rank's ``tensor`` (same shape on every rank), in rank order."""
        local = tensor.to(torch.int64).to(self.device)
        out = [torch.empty_like(local) for _ in range(self.world_size)]
        self._collective(what, lambda: dist.all_gather(out, local))
        return [t.cpu().to(tensor.dtype) for t in out]

    def check_identical(self, tensors: Iterable[Tensor]) -> None:
        """Raises :class:`DistributedError` unless every rank holds the same bytes (a hash, all-gathered)."""
        mine = torch.tensor([_digest(tensors)], dtype=torch.int64)
        hashes = [int(h) for h in self.gather_bytes(mine, "parameter check")]
        differ = [r for r, h in enumerate(hashes) if h != hashes[0]]
        if differ:
            raise DistributedError(
                f"at step {self.step} the parameters of rank(s) {differ} differ from rank 0's: the ranks no longer "
                "train one model (a rank ran other code or data, or a non-deterministic reduction); stop and resume "
                "from the last checkpoint, which every rank loads alike"
            )

    def barrier(self, what: str = "barrier") -> None:
        self._collective(what, lambda: dist.barrier())

    def close(self) -> None:
        """Leaves the group together with the other ranks (a barrier first: a rank that tore its sockets down while
        another was still finishing made gloo abort that one), then destroys it."""
        if not dist.is_initialized():
            return
        try:
            self.barrier("the closing barrier")
        except DistributedError:
            pass  # the others are gone already: nothing to wait for
        dist.destroy_process_group()


def join_process_group(device: torch.device, timeout_s: float) -> Group | None:
    """Joins the process group torchrun describes in the environment (``None`` when ``$WORLD_SIZE`` is 1):
    ``nccl`` for a CUDA device, ``gloo`` otherwise."""
    world_size = world_size_from_environment()
    if world_size <= 1:
        return None
    if not dist.is_available():
        raise ConfigError(f"{WORLD_ENV}={world_size} but this torch build has no torch.distributed")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        timeout = timedelta(seconds=timeout_s)
        try:
            store, rank, size = next(dist.rendezvous("env://", timeout=timeout))
            # torchrun keeps its store across --max-restarts: without a prefix per attempt, a restarted rank
            # reads the dead attempt's addresses and cannot connect (pytorch #167288)
            store = dist.PrefixStore(f"fastadapt/attempt-{restarts()}/", store)
            dist.init_process_group(backend, store=store, rank=rank, world_size=size, timeout=timeout)
        except ValueError as error:  # a variable torchrun sets is missing
            raise ConfigError(
                f"{WORLD_ENV}={world_size} but the process group cannot start ({error}); launch with torchrun "
                "or `fastadapt train --nproc N`"
            ) from None
    return Group(dist.get_rank(), dist.get_world_size(), dist.get_backend(), timeout_s, device)
