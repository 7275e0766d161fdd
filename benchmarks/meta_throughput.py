"""Meta-batch throughput of each batching strategy, each measured in a fresh process.

    python benchmarks/meta_throughput.py [--json] [--keys maml,protonet] [--strategies loop,vmap] [--quick]
    python benchmarks/meta_throughput.py --profile maml loop     # top ops of one iteration

A meta-iteration is one ``fastadapt.algorithms.meta_gradient`` call on a synthetic meta-batch (random
tensors: no data loading is timed). Conv4 keys: Omniglot's shape (1x28x28, 5-way 1-shot, 15 queries per
class, meta-batch 32, inner lr 0.4); ``maml_sinusoid``: MAML's MLP(1, (40, 40), 1) regression (K=10, 10
queries, meta-batch 25, inner lr 0.01). Each key and strategy runs in a fresh worker (this script with
``--worker KEY STRATEGY``): one warm-up iteration, then the median of at least ``--repeats`` timed ones
(more when one takes under 0.1 s, up to 1 s in all). Peak MB is the worker's peak RSS minus its RSS just
before the warm-up (VmHWM, reset there: ``ru_maxrss`` cannot be reset and inherits the parent's
high-water mark through exec). ``reference`` (MAML keys) is a plain per-task loop of ``autograd.grad``
and ``functional_call`` without fastadapt algorithm code. FLOPs per iteration are counted with
``FlopCounterMode`` on the loop strategy only (it over-counts vmapped convolution backward) and used for
every strategy; the flop fraction is the achieved FLOP/s over the machine's, measured in the parent on
Conv4's 64->64 3x3 convolution forward+backward at 80x64x14x14 (Conv4 keys) or a 1024^2 matmul (MLP).
The full run takes ~15 min on 2 cores. Run it on an idle machine: with more busy threads than cores,
OpenMP's barriers make small ops up to 100x slower (each row reports the load average).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

from fastadapt.algorithms import ANIL, MAML, Algorithm, ProtoNet, default_strategy, meta_gradient
from fastadapt.models import MLP, Conv4
from fastadapt.tasks import SinusoidTasks, TaskBatch
from fastadapt.typing import Params

#: key -> (algorithm, inner steps, first order); all but the last run on Omniglot-shaped Conv4 input.
KEYS: dict[str, tuple[str, int, bool]] = {
    "maml": ("maml", 1, False),
    "maml_5": ("maml", 5, False),
    "fomaml": ("maml", 1, True),
    "fomaml_5": ("maml", 5, True),
    "anil_5": ("anil", 5, False),
    "protonet": ("protonet", 0, False),
    "maml_sinusoid": ("maml", 1, False),
}
REFERENCE_KEYS = ("maml", "maml_5", "fomaml", "fomaml_5")
STRATEGIES = ("loop", "vmap", "chunked4", "chunked8", "reference")
QUICK_STRATEGIES = ("loop", "chunked8", "reference")
WAYS, SHOTS, QUERIES, META_BATCH, LR = 5, 1, 15, 32, 0.4
MIN_TIME, SHORT_ITER = 1.0, 0.1


def omniglot_batch(shots: int = SHOTS) -> TaskBatch:
    """A synthetic Omniglot-shaped meta-batch (META_BATCH tasks, WAYS-way ``shots``-shot, QUERIES queries per class,
    28x28) from torch's global generator."""
    labels = torch.arange(WAYS)
    return TaskBatch(
        torch.randn(META_BATCH, WAYS * shots, 1, 28, 28),
        labels.repeat_interleave(shots).repeat(META_BATCH, 1),
        torch.randn(META_BATCH, WAYS * QUERIES, 1, 28, 28),
        labels.repeat_interleave(QUERIES).repeat(META_BATCH, 1),
    )


def setup(key: str) -> tuple[Algorithm, nn.Module, TaskBatch, float]:
    """The algorithm, its model, a synthetic meta-batch and the inner learning rate for ``key``."""
    kind, steps, first_order = KEYS[key]
    torch.manual_seed(0)
    if key == "maml_sinusoid":
        mlp = MLP(1, (40, 40), 1)
        batch = SinusoidTasks(shots=10, queries=10).sample_batch(25, torch.Generator().manual_seed(0))
        return MAML(mlp, loss="mse", inner_lr=0.01, inner_steps=1), mlp, batch, 0.01
    model = Conv4(in_channels=1, out_features=WAYS, image_size=28, hidden=64)
    batch = omniglot_batch()
    algo: Algorithm
    if kind == "maml":
        algo = MAML(model, inner_lr=LR, inner_steps=steps, first_order=first_order)
    elif kind == "anil":
        algo = ANIL(model, inner_lr=LR, inner_steps=steps)
    else:
        algo = ProtoNet(model, ways=WAYS)
    return algo, model, batch, LR


def reference_gradient(model: nn.Module, params: Params, batch: TaskBatch, lr: float, key: str) -> list[Tensor]:
    """MAML's meta-gradient as a plain per-task loop: autograd.grad + functional_call, nothing else."""
    _, steps, first_order = KEYS[key]
    leaves = list(params.values())
    totals = [torch.zeros_like(p) for p in leaves]
    for support_x, support_y, query_x, query_y in zip(*batch.tensors(), strict=True):
        fast = params
        for _ in range(steps):
            at = {k: v.detach().requires_grad_() for k, v in fast.items()} if first_order else fast
            loss = F.cross_entropy(functional_call(model, at, (support_x,)), support_y)
            grads = torch.autograd.grad(loss, list(at.values()), create_graph=not first_order)
            fast = {k: v - lr * g for (k, v), g in zip(fast.items(), grads, strict=True)}
        query_loss = F.cross_entropy(functional_call(model, fast, (query_x,)), query_y) / len(batch)
        for total, g in zip(totals, torch.autograd.grad(query_loss, leaves), strict=True):
            total.add_(g)
    return totals


def iteration(key: str, strategy: str) -> tuple[Callable[[], object], int]:
    """A function running one meta-iteration of ``strategy`` on ``key``, and the meta-batch size."""
    algo, model, batch, lr = setup(key)
    params = {k: v.requires_grad_() for k, v in algo.init_params().items()}
    if strategy == "reference":
        if key not in REFERENCE_KEYS:
            raise ValueError(f"the reference loop is only for {REFERENCE_KEYS}")
        return lambda: reference_gradient(model, params, batch, lr, key), len(batch)
    base, chunk = ("chunked", int(strategy[7:])) if strategy.startswith("chunked") else (strategy, 8)
    return lambda: meta_gradient(algo, params, batch, base, chunk), len(batch)


def status_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process from /proc/self/status, in MB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024


def reset_peak() -> bool:
    """Resets VmHWM to the current RSS (Linux >= 4.0). ``ru_maxrss`` cannot be reset, and a worker
    inherits the parent's high-water mark through exec, so it would over-report small workers."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def worker(key: str, strategy: str, repeats: int) -> dict[str, Any]:
    """Times one strategy in this (fresh) process; the loop strategy also counts FLOPs."""
    if strategy == "flops":  # FLOP count alone, when the loop strategy itself is not benchmarked
        run, _ = iteration(key, "loop")
        with FlopCounterMode(display=False) as counter:
            run()
        return {"flops": counter.get_total_flops()}
    run, tasks = iteration(key, strategy)
    gc.collect()
    resettable = reset_peak()
    baseline = status_mb("VmRSS")
    run()  # warm-up
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats or (times[-1] < SHORT_ITER and time.perf_counter() - start < MIN_TIME):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    peak = status_mb("VmHWM") if resettable else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result: dict[str, Any] = {"s_per_iter": statistics.median(times), "tasks": tasks, "iterations": len(times)}
    result |= {"peak_mb": peak - baseline, "rss_peak_mb": peak, "load_avg": os.getloadavg()[0]}
    if strategy == "loop":
        with FlopCounterMode(display=False) as counter:
            run()
        result["flops"] = counter.get_total_flops()
    return result


def spawn(key: str, strategy: str, repeats: int, timeout: float) -> dict[str, Any]:
    """Runs ``worker`` in a fresh process; failures and time-outs become an ``error`` entry."""
    return run_worker(__file__, [key, strategy, "--repeats", str(repeats)], timeout)


def run_worker(script: str, args: list[str], timeout: float) -> dict[str, Any]:
    """Runs ``script --worker ARGS`` in a fresh process and reads its ``RESULT {json}`` line; failures
    and time-outs become an ``error`` entry."""
    cmd = [sys.executable, script, "--worker", *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:g} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[7:])  # type: ignore[no-any-return]
    if proc.returncode < 0:
        cause = " (killed: out of memory?)" if proc.returncode == -9 else ""
        return {"error": f"worker died of signal {-proc.returncode}{cause}"}
    tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
    return {"error": f"worker exited with {proc.returncode}: {tail[0]}"}


def timed_flops(fn: Callable[[], object], reps: int = 10) -> float:
    """FLOP/s of ``fn``: FlopCounterMode's count over the median time of ``reps`` runs."""
    with FlopCounterMode(display=False) as counter:
        fn()
    for _ in range(2):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return counter.get_total_flops() / statistics.median(times)


def machine() -> dict[str, Any]:
    """The machine's conv (Conv4's 64->64 3x3, forward+backward, 80x64x14x14) and matmul FLOP/s."""
    torch.manual_seed(0)
    x = torch.randn(80, 64, 14, 14, requires_grad=True)
    w = (torch.randn(64, 64, 3, 3) / 24).requires_grad_()
    b = torch.zeros(64, requires_grad=True)
    grad_out = torch.randn(80, 64, 14, 14)
    # F.conv2d, not nn.Conv2d: FlopCounterMode's module hooks reject autograd.grad on a module's leaves
    conv_step = lambda: torch.autograd.grad(F.conv2d(x, w, b, padding=1), (x, w, b), grad_out)  # noqa: E731
    m1, m2 = torch.randn(1024, 1024), torch.randn(1024, 1024)
    return {
        "conv_gflops": timed_flops(conv_step) / 1e9,
        "matmul_gflops": timed_flops(lambda: m1 @ m2) / 1e9,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "load_avg": os.getloadavg()[0],
    }


def benchmark(keys: list[str], strategies: list[str], repeats: int, timeout: float) -> dict[str, Any]:
    report: dict[str, Any] = {}
    mach = machine()
    if mach["load_avg"] > 0.5 * (os.cpu_count() or 1):
        print(f"warning: load average {mach['load_avg']:.1f}; timings will be slowed", file=sys.stderr)
    for key in keys:
        _, model, _, _ = setup(key)
        chosen = [s for s in strategies if s != "reference" or key in REFERENCE_KEYS]
        rows: dict[str, dict[str, Any]] = {}
        for strategy in chosen:
            print(f"{key} {strategy} ...", file=sys.stderr, flush=True)
            rows[strategy] = spawn(key, strategy, repeats, timeout)
            print(f"  {rows[strategy]}", file=sys.stderr, flush=True)
        flops = rows.get("loop", {}).get("flops") or spawn(key, "flops", 1, timeout).get("flops")
        machine_flops = 1e9 * mach["matmul_gflops" if key == "maml_sinusoid" else "conv_gflops"]
        entry: dict[str, Any] = {}
        for strategy, row in rows.items():
            if "error" in row:
                entry[strategy] = {"error": row["error"]}
                continue
            s = row["s_per_iter"]
            entry[strategy] = {
                "tasks_per_s": row["tasks"] / s,
                "s_per_iter": s,
                "peak_mb": row["peak_mb"],
                "rss_peak_mb": row["rss_peak_mb"],
                "gflop_per_iter": flops / 1e9 if flops else None,
                "flop_fraction": flops / s / machine_flops if flops else None,
                "load_avg": row["load_avg"],  # 1-min load average as the worker ended: > ~2.5 means contended
            }
        ok = {s: r["tasks_per_s"] for s, r in entry.items() if "error" not in r and s != "reference"}
        entry["default"] = default = default_strategy(model, "cpu")
        entry["fastest"] = max(ok, key=ok.__getitem__) if ok else None
        if key in REFERENCE_KEYS:
            ref = entry.get("reference", {}).get("tasks_per_s")
            entry["speedup_vs_reference"] = ok[default] / ref if ref and default in ok else None
        report[key] = entry
    end = machine()  # the machine's speed drifts (shared host, clocks): show how much during the run
    report["machine"] = mach | {"conv_gflops_end": end["conv_gflops"], "matmul_gflops_end": end["matmul_gflops"]}
    return report


def cell(value: float | None, spec: str, width: int) -> str:
    return ("-" if value is None else format(value, spec)).rjust(width)


def table(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"torch {m['torch']}, {m['threads']} threads; machine: conv {m['conv_gflops']:.1f} GFLOP/s, "
        f"matmul {m['matmul_gflops']:.1f} GFLOP/s (at the end: {m['conv_gflops_end']:.1f}, "
        f"{m['matmul_gflops_end']:.1f}); load average {m['load_avg']:.1f} on {m['cpus']} CPUs",
        f"{'key':<14}{'strategy':<11}{'tasks/s':>9}{'s/iter':>9}{'peak MB':>9}{'RSS MB':>8}"
        f"{'GFLOP/it':>10}{'flop frac':>10}{'load':>6}  mark",
    ]
    for key, entry in report.items():
        if key == "machine":
            continue
        for strategy, row in entry.items():
            if not isinstance(row, dict):
                continue
            if "error" in row:
                lines.append(f"{key:<14}{strategy:<11}  ERROR: {row['error']}")
                continue
            mark = ",".join(n for n in ("default", "fastest") if entry[n] == strategy)
            lines.append(
                f"{key:<14}{strategy:<11}{row['tasks_per_s']:>9.2f}{row['s_per_iter']:>9.3f}{row['peak_mb']:>9.0f}"
                f"{row['rss_peak_mb']:>8.0f}{cell(row['gflop_per_iter'], '.1f', 10)}"
                f"{cell(row['flop_fraction'], '.1%', 10)}{row['load_avg']:>6.1f}  {mark}"
            )
        if entry.get("speedup_vs_reference") is not None:
            lines.append(f"{'':<14}default {entry['default']} vs reference: {entry['speedup_vs_reference']:.2f}x")
    return "\n".join(lines)


def profile(key: str, strategy: str, rows: int = 15) -> None:
    run, _ = iteration(key, strategy)
    run()  # warm-up
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        run()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--keys", default=",".join(KEYS), help="comma-separated subset of " + ",".join(KEYS))
    parser.add_argument("--strategies", default=None, help="comma-separated, e.g. loop,vmap,chunked4,reference")
    parser.add_argument("--repeats", type=int, default=3, help="timed iterations (median); default 3")
    parser.add_argument("--quick", action="store_true", help="smoke run: repeats=1, " + ",".join(QUICK_STRATEGIES))
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per worker (default 600)")
    parser.add_argument("--profile", nargs=2, metavar=("KEY", "STRATEGY"), help="profile one iteration")
    parser.add_argument("--worker", nargs=2, metavar=("KEY", "STRATEGY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker[0], args.worker[1], args.repeats)), flush=True)
        return
    if args.profile:
        profile(*args.profile)
        return
    keys = [k for k in args.keys.split(",") if k]
    strategies = args.strategies.split(",") if args.strategies else list(QUICK_STRATEGIES if args.quick else STRATEGIES)
    bad = [k for k in keys if k not in KEYS] + [
        s for s in strategies if s not in STRATEGIES and not (s.startswith("chunked") and s[7:].isdigit())
    ]
    if bad:
        parser.error(f"unknown keys or strategies: {bad}")
    report = benchmark(keys, strategies, 1 if args.quick else args.repeats, args.timeout)
    print(json.dumps(report, indent=2) if args.json else table(report))


if __name__ == "__main__":
    main()
