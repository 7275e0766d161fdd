"""Does ``torch.compile`` help the inner loop, and where is it correct? One run, each path in a fresh process.

    python benchmarks/compile_check.py [--json] [--repeats 3]

Paths, on peers.py's Conv4 5-way 1-shot cell (meta-batch 32, 15 queries): ProtoNet's meta-gradient, first-order
MAML's (5 steps), evaluation (5 adaptation steps and the query forward, no meta-gradient) and second-order MAML's
(1 step), the last also with ``torch._functorch.config.donated_buffer = False`` (``maml_so_1_undonated``: the
setting torch's error for second order names). The model's functional forward (``functional_call`` over the
parameter dict, which every algorithm goes through) is replaced by ``torch.compile`` of it (inductor, default
mode); the compiled path's result is compared with eager (max absolute difference) and both are timed (median of
``--repeats`` after the first call, whose time includes compilation and is reported apart).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

import fastadapt.algorithms._functional as functional
from fastadapt.algorithms import MAML, ProtoNet, meta_gradient
from meta_throughput import run_worker
from peers import setup

PATHS = ("protonet", "fomaml_5", "evaluation_5", "maml_so_1", "maml_so_1_undonated")
UNDONATED = "_undonated"


def result_file(path: str, compiled: bool) -> str:
    """Where a worker leaves its result for the parent's comparison."""
    return str(Path(tempfile.gettempdir()) / f"fastadapt_compile_check_{path}_{int(compiled)}.safetensors")


def build(path: str) -> Callable[[], list[torch.Tensor]]:
    algo, model, batch = setup("maml_so_1")
    if path == "protonet":
        algo = ProtoNet(model, ways=5)
    elif path in ("fomaml_5", "evaluation_5"):
        algo = MAML(model, inner_lr=0.4, inner_steps=5, first_order=path == "fomaml_5")
    params = {k: v.requires_grad_() for k, v in algo.init_params().items()}
    if path == "evaluation_5":

        def evaluation() -> list[torch.Tensor]:
            outs = []
            for task in batch:
                sx, sy, qx, _ = task.tensors()
                with torch.no_grad():
                    state = algo.adapt(params, sx, sy)
                    outs.append(algo.predict(params, state, qx))
            return [torch.stack(outs)]

        return evaluation
    return lambda: list(meta_gradient(algo, params, batch, "loop")[0].values())


def worker(path: str, compiled: bool, repeats: int) -> dict[str, Any]:
    torch.manual_seed(0)
    if path.endswith(UNDONATED):
        from torch._functorch import config as functorch_config

        functorch_config.donated_buffer = False
    if compiled:
        eager = functional.functional_call
        compiled_call = torch.compile(lambda module, values, x: eager(module, values, (x,)))
        functional.functional_call = lambda module, values, args: compiled_call(module, values, args[0])  # type: ignore[assignment]
    run = build(path.removesuffix(UNDONATED))
    start = time.perf_counter()
    try:
        first = run()
    except Exception as error:  # a path torch.compile cannot take: the reason is the result
        return {"error": f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"}
    first_s = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    save_file({str(i): t.detach().contiguous() for i, t in enumerate(first)}, result_file(path, compiled))
    return {"first_call_s": first_s, "s_per_call": statistics.median(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--paths", nargs="*", choices=PATHS, default=list(PATHS))
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker[0], args.worker[1] == "1", args.repeats)))
        return
    report: dict[str, Any] = {}
    for path in args.paths:
        row = {
            mode: run_worker(__file__, [path, str(int(mode == "compiled")), "--repeats", str(args.repeats)], 1800)
            for mode in ("eager", "compiled")
        }
        if all("s_per_call" in row[m] for m in ("eager", "compiled")):
            a, b = load_file(result_file(path, False)), load_file(result_file(path, True))
            row["max_abs_diff"] = max(float((a[k] - b[k]).abs().max()) for k in a)
            row["speedup"] = row["eager"]["s_per_call"] / row["compiled"]["s_per_call"]
        report[path] = row
        print(f"{path}: {row}", file=sys.stderr, flush=True)
    print(json.dumps(report) if args.json else "\n".join(f"{k}: {v}" for k, v in report.items()))


if __name__ == "__main__":
    main()
