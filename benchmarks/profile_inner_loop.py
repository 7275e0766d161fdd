"""Where second-order MAML's time goes: torch.profiler per op, split into forward, backward and double backward.

    python benchmarks/profile_inner_loop.py [--steps 1 5] [--tasks 8] [--threads 1] [--channels-last]
                                            [--torch-pool] [--json]

One meta-gradient (loop strategy) of peers.py's cell: Conv4, 5-way 1-shot, 15 queries, inner lr 0.4, on synthetic
inputs, after one warm-up. Each aten op's self time is put in the phase of its nearest autograd node: none
(forward), ``...Backward0`` (backward, including the inner loop's own gradient) or ``...BackwardBackward0``
(double backward: the meta-gradient through the inner gradient). It prints the share of every phase, the top
ops of each, the achieved GFLOP/s of the whole iteration (torch's FlopCounterMode) and, as the limit it is
measured against, the GFLOP/s of Conv4's 64 -> 64 convolution forward + backward alone at the query batch's shape.
``--torch-pool`` profiles Conv4 with torch's own NCHW max-pooling kernel instead of fastadapt's
(``max_pool_2x2``): the profile before that change; the pool timings alone always cover both.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections import defaultdict
from typing import Any

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from fastadapt.algorithms import meta_gradient
from fastadapt.models import max_pool_2x2
from peers import setup, torch_pooling


def phase_of(event: Any) -> str:
    node = event.cpu_parent
    while node is not None:
        if node.name.startswith("autograd::engine::evaluate_function: "):
            return "double backward" if "BackwardBackward" in node.name else "backward"
        node = node.cpu_parent
    return "forward"


def profile_cell(steps: int, tasks: int, channels_last: bool = False) -> dict[str, Any]:
    algo, _, batch = setup("maml_so_1", channels_last=channels_last)
    object.__setattr__(algo, "inner_steps", steps)
    batch = next(batch.chunks(tasks))
    params = {k: v.requires_grad_() for k, v in algo.init_params().items()}
    meta_gradient(algo, params, batch, "loop")  # warm-up
    start = time.perf_counter()
    meta_gradient(algo, params, batch, "loop")
    seconds = time.perf_counter() - start
    with FlopCounterMode(display=False) as counter:
        meta_gradient(algo, params, batch, "loop")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        meta_gradient(algo, params, batch, "loop")
    totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for event in prof.events():
        if event.name.startswith("autograd::"):
            continue
        if event.self_cpu_time_total <= 0:
            continue
        totals[phase_of(event)][event.name] += event.self_cpu_time_total / 1e6
    all_time = sum(sum(ops.values()) for ops in totals.values())
    phases = {
        phase: {
            "seconds": sum(ops.values()),
            "share": sum(ops.values()) / all_time,
            "top": sorted(((name, t / all_time) for name, t in ops.items()), key=lambda kv: -kv[1])[:8],
        }
        for phase, ops in totals.items()
    }
    by_op: dict[str, float] = defaultdict(float)
    for ops in totals.values():
        for name, t in ops.items():
            by_op[name] += t / all_time
    flops = counter.get_total_flops()
    return {
        "steps": steps,
        "tasks": tasks,
        "seconds": seconds,
        "tasks_per_s": tasks / seconds,
        "gflop": flops / 1e9,
        "gflops_per_s": flops / seconds / 1e9,
        "phases": phases,
        "top_ops": sorted(by_op.items(), key=lambda kv: -kv[1])[:12],
    }


def conv_limit(repeats: int = 20) -> float:
    """GFLOP/s of a 64 -> 64 3x3 convolution forward + backward (input and weight gradients) at the query
    batch's second-block shape, (75, 64, 14, 14): the kernel the loop's time should be spent in."""
    x = torch.randn(75, 64, 14, 14, requires_grad=True)
    w = torch.randn(64, 64, 3, 3, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        F.conv2d(x, w, padding=1).sum().backward()
    flops = counter.get_total_flops()
    for _ in range(3):
        F.conv2d(x, w, padding=1).sum().backward()
    start = time.perf_counter()
    for _ in range(repeats):
        F.conv2d(x, w, padding=1).sum().backward()
    return flops * repeats / (time.perf_counter() - start) / 1e9


def pooling(repeats: int = 20) -> list[dict[str, Any]]:
    """Milliseconds of torch's 2x2 max-pooling, forward and forward + backward, in NCHW and channels_last
    memory format at Conv4's query-batch shapes (80 images: 5 support + 75 queries)."""
    rows = []
    for size in (28, 14, 7):
        row: dict[str, Any] = {"shape": [80, 64, size, size]}
        variants = (
            ("nchw", torch.contiguous_format, lambda x: F.max_pool2d(x, 2)),
            ("channels_last", torch.channels_last, lambda x: F.max_pool2d(x, 2)),
            ("fastadapt_nchw", torch.contiguous_format, max_pool_2x2),
        )
        for name, memory_format, pool in variants:
            x = torch.randn(80, 64, size, size).contiguous(memory_format=memory_format).requires_grad_()
            for _ in range(3):
                pool(x).sum().backward()
            start = time.perf_counter()
            for _ in range(repeats):
                pool(x)
            forward_ms = 1000 * (time.perf_counter() - start) / repeats
            start = time.perf_counter()
            for _ in range(repeats):
                pool(x).sum().backward()
            row[name] = {
                "forward_ms": forward_ms,
                "forward_backward_ms": 1000 * (time.perf_counter() - start) / repeats,
            }
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, nargs="*", default=[1, 5])
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--channels-last", action="store_true", help="Conv4 with channels_last=True")
    parser.add_argument("--torch-pool", action="store_true", help="torch's NCHW max-pool kernel in Conv4")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report = {
        "threads": args.threads,
        "channels_last": args.channels_last,
        "torch_pool": args.torch_pool,
        "conv_limit_gflops_per_s": conv_limit(),
        "max_pool": pooling(),
        "cells": [],
    }
    with torch_pooling() if args.torch_pool else contextlib.nullcontext():
        for steps in args.steps:
            report["cells"].append(profile_cell(steps, args.tasks, args.channels_last))
    if args.json:
        print(json.dumps(report))
        return
    print(f"limit: Conv4 64->64 conv forward+backward {report['conv_limit_gflops_per_s']:.1f} GFLOP/s")
    for row in report["max_pool"]:
        a, b, c = row["nchw"], row["channels_last"], row["fastadapt_nchw"]
        print(
            f"max-pool {row['shape']}: NCHW {a['forward_ms']:.2f} / {a['forward_backward_ms']:.2f} ms, channels_last "
            f"{b['forward_ms']:.2f} / {b['forward_backward_ms']:.2f} ms, fastadapt NCHW {c['forward_ms']:.2f} / "
            f"{c['forward_backward_ms']:.2f} ms (forward / forward + backward)"
        )
    for cell in report["cells"]:
        print(
            f"\nsecond-order MAML, {cell['steps']} step(s), {cell['tasks']} tasks: {cell['tasks_per_s']:.2f} tasks/s, "
            f"{cell['gflop']:.1f} GFLOP, {cell['gflops_per_s']:.1f} GFLOP/s "
            f"({cell['gflops_per_s'] / report['conv_limit_gflops_per_s']:.0%} of the limit)"
        )
        for phase, row in sorted(cell["phases"].items(), key=lambda kv: -kv[1]["share"]):
            top = ", ".join(f"{name.removeprefix('aten::')} {share:.0%}" for name, share in row["top"][:6])
            print(f"  {phase:16s} {row['share']:5.0%}  {top}")
        print("  top ops overall: " + ", ".join(f"{n.removeprefix('aten::')} {s:.0%}" for n, s in cell["top_ops"]))


if __name__ == "__main__":
    main()
