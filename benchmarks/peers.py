"""fastadapt against learn2learn and higher on MAML's Omniglot configuration, in one run.

    pip install -e '.[bench]'     # the peers; one that cannot be installed is reported and skipped
    python benchmarks/peers.py [--json] [--repeats 3] [--rounds 1] [--learn2learn-source DIR]
                               [--peer-model stock|fastadapt] [--configs CELL ...] [--quick]

learn2learn 0.2.0 does not build on Python 3.11 (its generated C includes longintrepr.h). Its compiled
modules are data utilities only; ``--learn2learn-source DIR`` (an unpacked learn2learn sdist or checkout)
loads its pure-Python ``learn2learn.algorithms.maml`` and ``learn2learn.utils`` from DIR without running the
package's ``__init__`` (which imports the compiled modules, gym and torchvision), so its MAML can be timed.

Conv4, 5-way 1-shot, 15 queries per class, meta-batch 32, inner lr 0.4, on identical synthetic inputs and
identical initial weights. Cells (``CONFIGS``): second-order MAML at 1, 5 and 10 inner steps (``maml_so_N``),
first-order MAML at 5 (``maml_fo_5``), second-order ANIL at 5 (``anil_so_5``; the peers adapt the head on the
body's features, as fastadapt does), fastadapt's iMAML at 5 and 10 steps (no peer has one), and second-order
MAML at 10 steps on 5-shot tasks (``maml_so_10_5shot``), where the support passes dominate memory.
``fastadapt-checkpoint`` is second-order MAML with ``checkpoint_inner=True``.
The peers run on the Conv4 their users build (``StockConv4``: learn2learn's ``OmniglotCNN`` block order, conv ->
``nn.BatchNorm2d`` -> ``nn.ReLU`` -> ``nn.MaxPool2d``, torch's own layers) with fastadapt's weights; fastadapt runs
its own ``Conv4`` (the same function: it pools before the activation, and pools without torch's NCHW kernel).
``--peer-model fastadapt`` runs the peers on fastadapt's ``Conv4`` instead, which splits a difference into the
model's part and the algorithm's.
Each (cell, library) is timed in a fresh process (one warm-up, then the median of ``--repeats``
meta-iterations) with its peak RSS above the process's RSS before the warm-up; the parent also checks that
every library computes the same meta-gradient as fastadapt (max absolute difference). ``--rounds R`` runs the
libraries of a cell in turn R times (each run a fresh process) and reports medians; ``speedup`` is then the median
of the ratios within a round, which cancels the machine's drift (on the project's 2-core CPU the same cell moves
by ±15 % between runs minutes apart). ``ratios`` holds the speed and memory ratios the performance targets name,
from this one run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastadapt.algorithms import ANIL, IMAML, MAML, Algorithm, meta_gradient
from fastadapt.models import Conv4, _pool
from fastadapt.tasks import TaskBatch
from meta_throughput import LR, META_BATCH, WAYS, omniglot_batch, reset_peak, run_worker, status_mb

#: cell -> (algorithm, inner steps, first order); Conv4, 5-way 1-shot, 15 queries, meta-batch 32, inner lr 0.4
CONFIGS: dict[str, tuple[str, int, bool]] = {
    "maml_so_1": ("maml", 1, False),
    "maml_so_5": ("maml", 5, False),
    "maml_so_10": ("maml", 10, False),
    "maml_fo_5": ("maml", 5, True),
    "anil_so_5": ("anil", 5, False),
    "imaml_5": ("imaml", 5, False),
    "imaml_10": ("imaml", 10, False),
    "maml_so_10_5shot": ("maml", 10, False),
}
#: cells with more than one support example per class: where the inner steps' support passes, not the query pass,
#: hold most of a task's activations (the case inner-loop checkpointing is for)
SHOTS_OF = {"maml_so_10_5shot": 5}
QUICK = ("maml_so_1", "maml_so_5", "anil_so_5")
LIBRARIES = ("fastadapt", "fastadapt-channels-last", "fastadapt-checkpoint", "learn2learn", "higher")
PEERS = ("learn2learn", "higher")
SOURCE_ENV = "FASTADAPT_LEARN2LEARN_SOURCE"  # set from --learn2learn-source for the worker processes
PEER_MODEL_ENV = "FASTADAPT_PEER_MODEL"  # set from --peer-model for the worker processes


class StockConv4(nn.Module):
    """Conv4 as a learn2learn or higher user writes it: blocks of conv -> ``nn.BatchNorm2d`` (batch statistics)
    -> ``nn.ReLU`` -> ``nn.MaxPool2d(2)``, then ``head``; parameter names and order as fastadapt's ``Conv4``."""

    def __init__(self, model: Conv4) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        for conv in (m for m in model.body if isinstance(m, nn.Conv2d)):
            width = conv.out_channels
            blocks += [nn.Conv2d(conv.in_channels, width, 3, padding=1)]
            blocks += [nn.BatchNorm2d(width, track_running_stats=False), nn.ReLU(), nn.MaxPool2d(2)]
        self.body = nn.Sequential(*blocks, nn.Flatten())
        self.head = nn.Linear(model.head.in_features, model.head.out_features)
        self.to(model.head.weight.dtype)
        self.load_state_dict(model.state_dict())

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


@contextlib.contextmanager
def torch_pooling() -> Iterator[None]:
    """fastadapt's models with torch's own ``F.max_pool2d`` inside: no tensor is in ``max_pool_2x2``'s size
    range, so every pool takes torch's kernel (the "before" of that change)."""
    kept = _pool._NUMEL_RANGE
    _pool._NUMEL_RANGE = (2**62, 2**62)
    try:
        yield
    finally:
        _pool._NUMEL_RANGE = kept


def libraries(config: str) -> tuple[str, ...]:
    """Who runs a cell: iMAML is fastadapt's alone (the peers have none); checkpointing is second-order MAML's."""
    kind, _, first_order = CONFIGS[config]
    if kind == "imaml":
        return ("fastadapt", "fastadapt-channels-last")
    if kind == "maml" and not first_order:
        return LIBRARIES
    return ("fastadapt", "fastadapt-channels-last", *PEERS)


def learn2learn_maml() -> Any:
    """learn2learn's MAML class: from the installed package, else from the source folder in SOURCE_ENV."""
    source = os.environ.get(SOURCE_ENV)
    if not source:
        import learn2learn as l2l

        return l2l.algorithms.MAML
    package = Path(source) / "learn2learn"
    if not (package / "algorithms" / "maml.py").is_file():
        raise ImportError(f"--learn2learn-source {source}: no learn2learn/algorithms/maml.py there")
    for name, path in (("learn2learn", package), ("learn2learn.algorithms", package / "algorithms")):
        stub = types.ModuleType(name)
        stub.__path__ = [str(path)]
        sys.modules.setdefault(name, stub)
    from learn2learn.algorithms.maml import MAML  # type: ignore[import-not-found]

    return MAML


def _peer_gradient(
    library: str, model: Conv4 | StockConv4, batch: TaskBatch, lr: float, steps: int, first_order: bool, anil: bool
) -> list[Tensor]:
    """One meta-gradient with a peer library, accumulated in ``model``'s ``.grad`` fields. ANIL: the body's
    features once per task, the library adapting the head alone on them."""
    model.zero_grad(set_to_none=True)
    learner_of = model.head if anil else model
    for sx, sy, qx, qy in zip(*batch.tensors(), strict=True):
        if anil:
            sx, qx = model.body(sx), model.body(qx)
        if library == "learn2learn":
            learner = learn2learn_maml()(learner_of, lr=lr, first_order=first_order).clone()
            for _ in range(steps):
                learner.adapt(F.cross_entropy(learner(sx), sy))
            (F.cross_entropy(learner(qx), qy) / len(batch)).backward()
        else:
            import higher

            inner = torch.optim.SGD(learner_of.parameters(), lr=lr)
            detach = (lambda grads: [g.detach() for g in grads]) if first_order else None
            with higher.innerloop_ctx(learner_of, inner, copy_initial_weights=False) as (fmodel, diffopt):
                for _ in range(steps):
                    diffopt.step(F.cross_entropy(fmodel(sx), sy), grad_callback=detach)
                (F.cross_entropy(fmodel(qx), qy) / len(batch)).backward()
    return [p.grad if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]


def setup(
    config: str, checkpoint: bool = False, channels_last: bool = False, float64: bool = False
) -> tuple[Algorithm, Conv4, TaskBatch]:
    """The cell's algorithm, model and meta-batch; ``float64``: the model and inputs in double precision and
    a meta-batch of 4 (the meta-gradient check)."""
    kind, steps, first_order = CONFIGS[config]
    torch.manual_seed(0)
    model = Conv4(in_channels=1, out_features=WAYS, image_size=28, hidden=64, channels_last=channels_last)
    batch = omniglot_batch(SHOTS_OF.get(config, 1))
    if float64:
        model.double()
        sx, sy, qx, qy = next(batch.chunks(4)).tensors()
        batch = TaskBatch(sx.double(), sy, qx.double(), qy)
    algo: Algorithm
    if kind == "maml":
        algo = MAML(model, inner_lr=LR, inner_steps=steps, first_order=first_order, checkpoint_inner=checkpoint)
    elif kind == "anil":
        algo = ANIL(model, inner_lr=LR, inner_steps=steps)
    else:
        algo = IMAML(model, inner_lr=LR, inner_steps=steps)
    return algo, model, batch


def gradient_fn(config: str, library: str, float64: bool = False) -> Callable[[], list[Tensor]]:
    kind, steps, first_order = CONFIGS[config]
    variant = {"checkpoint": library == "fastadapt-checkpoint", "channels_last": library == "fastadapt-channels-last"}
    algo, model, batch = setup(config, float64=float64, **variant)
    if library.startswith("fastadapt"):
        params = {k: v.requires_grad_() for k, v in algo.init_params().items()}
        return lambda: list(meta_gradient(algo, params, batch, "loop")[0].values())
    peer_model: Conv4 | StockConv4 = model if os.environ.get(PEER_MODEL_ENV) == "fastadapt" else StockConv4(model)
    return lambda: _peer_gradient(library, peer_model, batch, LR, steps, first_order, anil=kind == "anil")


def worker(config: str, library: str, repeats: int) -> dict[str, Any]:
    torch.manual_seed(0)
    run = gradient_fn(config, library)
    reset_peak()
    base = status_mb("VmRSS")
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    return {"tasks_per_s": META_BATCH / seconds, "s_per_iter": seconds, "peak_mb": status_mb("VmHWM") - base}


def spawn(config: str, library: str, repeats: int, timeout: float) -> dict[str, Any]:
    return run_worker(__file__, [config, library, "--repeats", str(repeats)], timeout)


def available(library: str) -> str | None:
    """None if the library imports, else why not."""
    if library.startswith("fastadapt"):
        return None
    try:
        learn2learn_maml() if library == "learn2learn" else __import__(library)
    except Exception as error:  # an old peer can fail in many ways on a new Python
        return f"not installed or not importable on Python {sys.version.split()[0]}: {error}"
    return None


def max_grad_diff(config: str, library: str) -> float:
    """The largest absolute difference from fastadapt's meta-gradient, in float64 on 4 of the tasks: in float32
    a 5-step meta-gradient on these random inputs moves by ~0.1 with the rounding of the kernels (float32 against
    float64: 0.12), so only a float64 comparison can tell a wrong meta-gradient from a reordered sum."""
    torch.manual_seed(0)
    ours = gradient_fn(config, "fastadapt", float64=True)()
    torch.manual_seed(0)
    theirs = gradient_fn(config, library, float64=True)()
    return max(float((a - b).abs().max()) for a, b in zip(ours, theirs, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every library of a cell this many times, in turn, each in a fresh process; medians over rounds",
    )
    parser.add_argument("--configs", nargs="*", choices=list(CONFIGS), help="cells to run (default: all)")
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    parser.add_argument("--learn2learn-source", type=Path, help="an unpacked learn2learn sdist (see above)")
    parser.add_argument(
        "--peer-model",
        choices=["stock", "fastadapt"],
        default="stock",
        help="the Conv4 the peers run: torch's layers in learn2learn's order (default) or fastadapt's Conv4",
    )
    parser.add_argument("--worker", nargs=2, metavar=("CONFIG", "LIBRARY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.learn2learn_source:
        os.environ[SOURCE_ENV] = str(args.learn2learn_source.resolve())
    os.environ[PEER_MODEL_ENV] = args.peer_model
    if args.worker:
        print("RESULT " + json.dumps(worker(*args.worker, args.repeats)))
        return
    report: dict[str, Any] = {}
    for config in args.configs or (QUICK if args.quick else CONFIGS):
        entry: dict[str, Any] = {"max_abs_grad_diff": {}}
        runs: dict[str, list[dict[str, Any]]] = {}
        for round_ in range(args.rounds):
            for library in libraries(config):
                why = available(library)
                if why:
                    entry[library] = {"error": why}
                    continue
                runs.setdefault(library, []).append(spawn(config, library, args.repeats, args.timeout))
                print(f"{config} {library} round {round_}: {runs[library][-1]}", file=sys.stderr, flush=True)
        for library, rows in runs.items():
            entry[library] = aggregate(rows)
            if library != "fastadapt":
                entry["max_abs_grad_diff"][library] = max_grad_diff(config, library)
        entry["speedup"] = paired_speedups(runs)
        report[config] = entry
    report["ratios"] = targets(report)
    if args.json:
        print(json.dumps(report))
        return
    for config, entry in report.items():
        if config == "ratios":
            continue
        for library in libraries(config):
            row = entry[library]
            if "error" in row:
                print(f"{config:10s} {library:20s} skipped: {row['error']}")
            else:
                print(f"{config:10s} {library:20s} {row['tasks_per_s']:7.2f} tasks/s {row['peak_mb']:7.0f} MB")
        print(f"{config:10s} fastadapt speedup: {entry['speedup']}, max |grad diff|: {entry['max_abs_grad_diff']}")
    for name, value in report["ratios"].items():
        print(f"{name}: {value:.2f}")


def aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One library's rounds of a cell: a worker's error if any, else the medians, with every round's speed."""
    errors = [row for row in rows if "error" in row]
    if errors:
        return errors[0]
    out = {key: statistics.median(row[key] for row in rows) for key in ("tasks_per_s", "s_per_iter", "peak_mb")}
    if len(rows) > 1:
        out["tasks_per_s_rounds"] = [row["tasks_per_s"] for row in rows]
    return out


def paired_speedups(runs: dict[str, list[dict[str, Any]]]) -> dict[str, float]:
    """fastadapt's speed over each other library's, the median over rounds of the ratio within a round: the
    machine's speed drifts by more than the libraries differ, and a round runs them minutes apart, not hours."""
    ours = runs.get("fastadapt", [])
    out = {}
    for library, rows in runs.items():
        pairs = [
            a["tasks_per_s"] / b["tasks_per_s"]
            for a, b in zip(ours, rows, strict=False)
            if "tasks_per_s" in a and "tasks_per_s" in b
        ]
        if library != "fastadapt" and pairs:
            out[library] = statistics.median(pairs)
    return out


def targets(report: dict[str, Any]) -> dict[str, float]:
    """The issue's ratios, where both sides of one were measured in this run; a speed ratio within one cell is
    the cell's paired ``speedup`` (the same as the ratio of the medians when ``--rounds`` is 1)."""

    def get(config: str, library: str, key: str) -> float | None:
        value = report.get(config, {}).get(library, {}).get(key)
        return float(value) if value is not None else None

    out: dict[str, float] = {}
    fast, l2l, ckpt = "fastadapt", "learn2learn", "fastadapt-checkpoint"
    speed, memory = "tasks_per_s", "peak_mb"
    pairs = {
        "maml_so_1 speed vs learn2learn": (("maml_so_1", fast, speed), ("maml_so_1", l2l, speed)),
        "maml_so_5 speed vs learn2learn": (("maml_so_5", fast, speed), ("maml_so_5", l2l, speed)),
        "anil_so_5 speed vs learn2learn maml_so_5": (("anil_so_5", fast, speed), ("maml_so_5", l2l, speed)),
        "maml_so_5 peak memory vs learn2learn": (("maml_so_5", fast, memory), ("maml_so_5", l2l, memory)),
        "maml peak memory, 10 steps vs 1": (("maml_so_10", fast, memory), ("maml_so_1", fast, memory)),
        "checkpointed maml peak memory, 10 steps vs 1": (("maml_so_10", ckpt, memory), ("maml_so_1", ckpt, memory)),
        "imaml peak memory, 10 steps vs 5": (("imaml_10", fast, memory), ("imaml_5", fast, memory)),
        "imaml peak memory at 10 steps vs maml at 1": (("imaml_10", fast, memory), ("maml_so_1", fast, memory)),
        "5-shot 10 steps, checkpointed vs plain peak memory": (
            ("maml_so_10_5shot", ckpt, memory),
            ("maml_so_10_5shot", fast, memory),
        ),
    }
    for name, (a, b) in pairs.items():
        one_cell_speed = a[0] == b[0] and a[1] == fast and a[2] == b[2] == speed
        paired = report.get(a[0], {}).get("speedup", {}).get(b[1]) if one_cell_speed else None
        x, y = get(*a), get(*b)
        if paired is not None:  # one cell, both libraries: the within-round ratio, as in ``speedup``
            out[name] = paired
        elif x is not None and y:
            out[name] = x / y
    return out


if __name__ == "__main__":
    main()
