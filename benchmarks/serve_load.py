"""A bounded load on `fastadapt serve` over loopback: concurrent clients sending a mix of adapt and predict
requests, with cache hits and misses, for a fixed time.

    python benchmarks/serve_load.py [--seconds 60] [--clients 32] [--run RUN_DIR] [--json]

Without ``--run`` it first trains a small digits ProtoNet (Conv4, 100 iterations) into a temporary folder.
The server is a separate process (``fastadapt serve RUN --port P --max-concurrency 2``). Each client loops: with
probability ``--adapt-share`` it adapts to one of ``--supports`` distinct support sets (3-way 1-shot digits from
the run's test split; a set already adapted is a cache hit), otherwise it predicts 15 query digits with one of
the sets it has adapted to. It prints requests per second, the p50 / p95 / p99 latency of each kind, the error
count (any answer but 200, or a failed connection: it must be 0) and the cache's hits and misses from /metrics.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _train(folder: Path) -> Path:
    run = folder / "digits"
    settings = ["training.iterations=100", "training.val_every=0", "training.checkpoint_every=100"]
    command = [sys.executable, "-m", "fastadapt", "train", "digits_protonet", *settings, "--run-dir", str(run)]
    subprocess.run([*command, "--no-progress"], check=True, capture_output=True)
    return run


def _tasks(run: Path, count: int) -> list[dict[str, Any]]:
    import torch

    from fastadapt.training import load_run

    experiment, _, _ = load_run(run)
    source = experiment.sources[experiment.config.evaluation.split]
    out = []
    for seed in range(count):
        task = source.sample(torch.Generator().manual_seed(seed))
        support = [
            {"input": x.tolist(), "label": f"c{int(y)}"} for x, y in zip(task.support_x, task.support_y, strict=True)
        ]
        out.append({"support": support, "queries": [x.tolist() for x in task.query_x]})
    return out


async def _client(
    http: Any, name: str, tasks: list[dict[str, Any]], until: float, share: float, rng: random.Random, log: list[Any]
) -> None:
    adapted: list[str] = []
    while time.monotonic() < until:
        adapt = not adapted or rng.random() < share
        began = time.perf_counter()
        try:
            if adapt:
                task = rng.choice(tasks)
                response = await http.post("/v1/adapt", json={"model": name, "support": task["support"]})
                if response.status_code == 200:
                    adapted.append(response.json()["adapted_id"])
            else:
                queries = rng.choice(tasks)["queries"]
                body = {"adapted_id": rng.choice(adapted), "inputs": queries, "top_k": 1}
                response = await http.post("/v1/predict", json=body)
            status = response.status_code
        except Exception as error:  # a refused or broken connection counts as an error
            status = f"{type(error).__name__}"
        log.append(("adapt" if adapt else "predict", time.perf_counter() - began, status))


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    array = np.asarray(values) * 1000
    return {f"p{q}_ms": float(np.percentile(array, q)) for q in (50, 95, 99)}


async def _load(url: str, name: str, tasks: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    log: list[tuple[str, float, Any]] = []
    limits = httpx.Limits(max_connections=args.clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        start = time.monotonic()
        until = start + args.seconds
        await asyncio.gather(
            *(_client(http, name, tasks, until, args.adapt_share, random.Random(i), log) for i in range(args.clients))
        )
        elapsed = time.monotonic() - start
        metrics = (await http.get("/metrics")).text
    cache = {e: float(v) for e, v in re.findall(r'fastadapt_cache_total\{event="(\w+)"\} ([0-9.e+]+)', metrics)}
    out: dict[str, Any] = {
        "seconds": elapsed,
        "clients": args.clients,
        "requests": len(log),
        "requests_per_s": len(log) / elapsed,
        "errors": sum(1 for _, _, status in log if status != 200),
        "error_kinds": sorted({str(s) for _, _, s in log if s != 200}),
        "cache": cache,
    }
    for kind in ("adapt", "predict"):
        latencies = [t for k, t, s in log if k == kind and s == 200]
        out[kind] = {"requests": sum(1 for k, _, _ in log if k == kind), **_percentiles(latencies)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--supports", type=int, default=200, help="distinct support sets the clients draw from")
    parser.add_argument("--adapt-share", type=float, default=0.2)
    parser.add_argument("--run", type=Path, help="a trained classification run (default: train a digits ProtoNet)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        run = args.run or _train(Path(folder))
        tasks = _tasks(run, args.supports)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = os.environ | {"FASTADAPT_THREADS": "1"}
        server = subprocess.Popen(
            [sys.executable, "-m", "fastadapt", "serve", str(run), "--name", "digits", "--port", str(port)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            for _ in range(600):
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        break
                except OSError:
                    if server.poll() is not None:
                        raise SystemExit(
                            f"the server stopped: {server.stderr.read() if server.stderr else ''}"
                        ) from None
                    time.sleep(0.1)
            result = asyncio.run(_load(url, "digits", tasks, args))
        finally:
            server.terminate()
            server.wait(timeout=30)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['requests']} requests in {result['seconds']:.1f} s from {result['clients']} clients: "
          f"{result['requests_per_s']:.1f} requests/s, {result['errors']} errors {result['error_kinds']}")  # fmt: skip
    for kind in ("adapt", "predict"):
        r = result[kind]
        print(f"  {kind:8s} {r['requests']:6d} requests, p50 {r.get('p50_ms', 0):.1f} ms, "
              f"p95 {r.get('p95_ms', 0):.1f} ms, p99 {r.get('p99_ms', 0):.1f} ms")  # fmt: skip
    print(f"  cache: {result['cache']}")
    if result["errors"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
