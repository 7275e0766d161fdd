"""Meta-training throughput on the CPU against CUDA, for every batching strategy, measured in one run.

    python benchmarks/gpu_throughput.py [--devices cpu,cuda] [--keys maml,protonet] [--iterations 10] [--json]
    python benchmarks/gpu_throughput.py --devices cpu --iterations 1 --meta-batch 2   # smoke run, no GPU, seconds

The workloads are ``benchmarks/meta_throughput.py``'s (its ``setup``): second-order MAML (one inner step, inner
lr 0.4) and ProtoNet on Conv4 over Omniglot-shaped random meta-batches (1x28x28, 5-way 1-shot, 15 queries per
class, meta-batch 32, or the first ``--meta-batch`` tasks of it). A meta-iteration is one ``meta_gradient`` call
with the batch already on the device (no data loading or host-to-device copy is timed). Each (key, device,
strategy) runs one warm-up iteration (cuDNN's algorithm search, the caching allocator), then ``--iterations``
timed ones, each ended by ``torch.cuda.synchronize`` on CUDA; a row reports the median. Strategies are
``fastadapt.algorithms.STRATEGIES`` (chunked with chunks of 8), less those ``vmap_hazard`` refuses. ``vs cpu
loop`` is the row's tasks/s over the CPU loop strategy's for the same key (``-`` without a CPU row). CUDA runs in
float32 with torch's defaults (TF32 convolutions under cuDNN). Unlike ``meta_throughput.py``, every row runs in
this one process, so rows are comparable with each other, but no peak memory is reported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import torch

from fastadapt.algorithms import STRATEGIES, meta_gradient, vmap_hazard
from meta_throughput import META_BATCH, setup

KEYS = ("maml", "protonet")


def measure(key: str, device: str, strategy: str, iterations: int, tasks: int = META_BATCH) -> dict[str, Any]:
    """Median seconds per meta-iteration of ``strategy`` for ``key`` on ``device`` over the first ``tasks`` tasks
    of the meta-batch, and tasks per second."""
    algorithm, model, batch, _ = setup(key)
    model.to(device)
    batch = next(batch.chunks(tasks)).to(device)
    params = {k: v.requires_grad_() for k, v in algorithm.init_params().items()}
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else lambda: None

    def run() -> None:
        meta_gradient(algorithm, params, batch, strategy)
        sync()

    run()  # warm-up
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    row = {"key": key, "device": device, "strategy": strategy}
    return row | {"s_per_iter": seconds, "tasks_per_s": len(batch) / seconds}


def benchmark(keys: list[str], devices: list[str], iterations: int, tasks: int = META_BATCH) -> list[dict[str, Any]]:
    rows = []
    for key in keys:
        algorithm, _, _, _ = setup(key)
        allowed = [s for s in STRATEGIES if s == "loop" or vmap_hazard(algorithm) is None]
        for device in devices:
            for strategy in allowed:
                rows.append(measure(key, device, strategy, iterations, tasks))
        cpu_loop = next((r["tasks_per_s"] for r in rows if r["key"] == key and r["device"] == "cpu"), None)
        for row in rows:
            if row["key"] == key:
                row["vs_cpu_loop"] = None if cpu_loop is None else row["tasks_per_s"] / cpu_loop
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'key':<10}{'device':<8}{'strategy':<10}{'tasks/s':>10}{'s/iter':>10}{'vs cpu loop':>13}"]
    for r in rows:
        ratio = "-" if r["vs_cpu_loop"] is None else f"{r['vs_cpu_loop']:.2f}x"
        lines.append(
            f"{r['key']:<10}{r['device']:<8}{r['strategy']:<10}{r['tasks_per_s']:>10.1f}{r['s_per_iter']:>10.4f}"
            f"{ratio:>13}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", default="cpu,cuda", help="comma-separated, in order (default cpu,cuda)")
    parser.add_argument("--keys", default=",".join(KEYS), help="comma-separated subset of " + ",".join(KEYS))
    parser.add_argument("--iterations", type=int, default=10, help="timed iterations per row (median; default 10)")
    parser.add_argument("--meta-batch", type=int, default=META_BATCH, help=f"tasks per meta-batch (<= {META_BATCH})")
    parser.add_argument("--json", action="store_true", help="print a JSON list of rows instead of a table")
    args = parser.parse_args()
    keys, devices = args.keys.split(","), args.devices.split(",")
    if bad := [k for k in keys if k not in KEYS]:
        parser.error(f"unknown keys {bad}; choose from {KEYS}")
    if any(torch.device(d).type == "cuda" for d in devices) and not torch.cuda.is_available():
        parser.error(f"--devices {args.devices} but CUDA is not available (torch {torch.__version__}); use cpu")
    if args.iterations < 1:
        parser.error(f"--iterations must be >= 1, got {args.iterations}")
    if not 1 <= args.meta_batch <= META_BATCH:
        parser.error(f"--meta-batch must be between 1 and {META_BATCH}, got {args.meta_batch}")
    names = [torch.cuda.get_device_name(torch.device(d)) for d in devices if torch.device(d).type == "cuda"]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; {', '.join(names) or 'no GPU'}; "
        f"meta-batch {args.meta_batch}, {args.iterations} timed iterations per row",
        flush=True,
    )
    rows = benchmark(keys, devices, args.iterations, args.meta_batch)
    print(json.dumps(rows, indent=2) if args.json else table(rows))


if __name__ == "__main__":
    main()
