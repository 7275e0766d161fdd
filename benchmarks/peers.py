"""fastadapt against learn2learn and higher on MAML's Omniglot configuration, in one run.

    pip install -e '.[bench]'     # the peers; one that cannot be installed is reported and skipped
    python benchmarks/peers.py [--json] [--repeats 3] [--learn2learn-source DIR]

learn2learn 0.2.0 does not build on Python 3.11 (its generated C includes longintrepr.h). Its compiled
modules are data utilities only; ``--learn2learn-source DIR`` (an unpacked learn2learn sdist or checkout)
loads its pure-Python ``learn2learn.algorithms.maml`` and ``learn2learn.utils`` from DIR without running the
package's ``__init__`` (which imports the compiled modules, gym and torchvision), so its MAML can be timed.

Conv4, 5-way 1-shot, 15 queries per class, meta-batch 32, one inner step of lr 0.4, second order
(``maml_so``) and first order (``maml_fo``), on identical synthetic inputs and identical initial weights.
Each (configuration, library) is timed in a fresh process (one warm-up, then the median of ``--repeats``
meta-iterations) with its peak RSS above the process's RSS before the warm-up; the parent also checks that
every library computes the same meta-gradient as fastadapt (max absolute difference).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastadapt.algorithms import meta_gradient
from fastadapt.tasks import TaskBatch
from meta_throughput import reset_peak, run_worker, setup, status_mb

CONFIGS = {"maml_so": "maml", "maml_fo": "fomaml"}  # -> meta_throughput keys (1 inner step, lr 0.4)
LIBRARIES = ("fastadapt", "learn2learn", "higher")
SOURCE_ENV = "FASTADAPT_LEARN2LEARN_SOURCE"  # set from --learn2learn-source for the worker processes


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


def _peer_gradient(library: str, model: nn.Module, batch: TaskBatch, lr: float, first_order: bool) -> list[Tensor]:
    """One meta-gradient with a peer library, accumulated in ``model``'s ``.grad`` fields."""
    model.zero_grad(set_to_none=True)
    if library == "learn2learn":
        maml = learn2learn_maml()(model, lr=lr, first_order=first_order)
        for sx, sy, qx, qy in zip(*batch.tensors(), strict=True):
            learner = maml.clone()
            learner.adapt(F.cross_entropy(learner(sx), sy))
            (F.cross_entropy(learner(qx), qy) / len(batch)).backward()
    else:
        import higher

        inner = torch.optim.SGD(model.parameters(), lr=lr)
        detach = (lambda grads: [g.detach() for g in grads]) if first_order else None
        for sx, sy, qx, qy in zip(*batch.tensors(), strict=True):
            with higher.innerloop_ctx(model, inner, copy_initial_weights=False) as (fmodel, diffopt):
                diffopt.step(F.cross_entropy(fmodel(sx), sy), grad_callback=detach)
                (F.cross_entropy(fmodel(qx), qy) / len(batch)).backward()
    return [p.grad if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]


def gradient_fn(config: str, library: str) -> Callable[[], list[Tensor]]:
    algo, model, batch, lr = setup(CONFIGS[config])
    if library == "fastadapt":
        params = {k: v.requires_grad_() for k, v in algo.init_params().items()}
        return lambda: list(meta_gradient(algo, params, batch, "loop")[0].values())
    return lambda: _peer_gradient(library, model, batch, lr, first_order=config == "maml_fo")


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
    return {"tasks_per_s": 32 / seconds, "s_per_iter": seconds, "peak_mb": status_mb("VmHWM") - base}


def spawn(config: str, library: str, repeats: int, timeout: float) -> dict[str, Any]:
    return run_worker(__file__, [config, library, "--repeats", str(repeats)], timeout)


def available(library: str) -> str | None:
    """None if the library imports, else why not."""
    if library == "fastadapt":
        return None
    try:
        learn2learn_maml() if library == "learn2learn" else __import__(library)
    except Exception as error:  # an old peer can fail in many ways on a new Python
        return f"not installed or not importable on Python {sys.version.split()[0]}: {error}"
    return None


def max_grad_diff(config: str, library: str) -> float:
    torch.manual_seed(0)
    ours = gradient_fn(config, "fastadapt")()
    torch.manual_seed(0)
    theirs = gradient_fn(config, library)()
    return max(float((a - b).abs().max()) for a, b in zip(ours, theirs, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--learn2learn-source", type=Path, help="an unpacked learn2learn sdist (see above)")
    parser.add_argument("--worker", nargs=2, metavar=("CONFIG", "LIBRARY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.learn2learn_source:
        os.environ[SOURCE_ENV] = str(args.learn2learn_source.resolve())
    if args.worker:
        print("RESULT " + json.dumps(worker(*args.worker, args.repeats)))
        return
    report: dict[str, Any] = {}
    for config in CONFIGS:
        entry: dict[str, Any] = {"max_abs_grad_diff": {}}
        for library in LIBRARIES:
            why = available(library)
            entry[library] = {"error": why} if why else spawn(config, library, args.repeats, args.timeout)
            print(f"{config} {library}: {entry[library]}", file=sys.stderr, flush=True)
            if library != "fastadapt" and not why:
                entry["max_abs_grad_diff"][library] = max_grad_diff(config, library)
        ours = entry["fastadapt"].get("tasks_per_s")
        entry["speedup"] = {
            lib: ours / entry[lib]["tasks_per_s"] for lib in LIBRARIES[1:] if ours and "tasks_per_s" in entry[lib]
        }
        report[config] = entry
    if args.json:
        print(json.dumps(report))
        return
    for config, entry in report.items():
        for library in LIBRARIES:
            row = entry[library]
            if "error" in row:
                print(f"{config:8s} {library:12s} skipped: {row['error']}")
            else:
                print(f"{config:8s} {library:12s} {row['tasks_per_s']:7.2f} tasks/s {row['peak_mb']:7.0f} MB")
        print(f"{config:8s} fastadapt speedup: {entry['speedup']}, max |grad diff|: {entry['max_abs_grad_diff']}")


if __name__ == "__main__":
    main()
