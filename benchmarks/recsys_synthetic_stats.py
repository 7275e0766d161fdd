"""Statistics of the synthetic MovieLens data (or of real data) beside the published ML-100K ones.

    python benchmarks/recsys_synthetic_stats.py                                  # the default 800 x 1000
    python benchmarks/recsys_synthetic_stats.py --users 943 --items 1682 --fmt ml-100k
    python benchmarks/recsys_synthetic_stats.py --source ml-100k --root DIR      # real data, via load_movielens
    python benchmarks/recsys_synthetic_stats.py --json

The synthetic data is written to a temporary folder and read back with ``load_movielens``, as a run with
``recsys.source=synthetic`` does; the time to write it is printed with the table. With ``--split`` the number
of cold-start tasks per state (``cold_start_split`` with its defaults) follows.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from typing import Any

from fastadapt.recsys import (
    cold_start_split,
    describe_statistics,
    load_movielens,
    movielens_statistics,
    write_synthetic_movielens,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", choices=("synthetic", "ml-100k", "ml-1m"), default="synthetic")
    parser.add_argument("--root", help="for a real source: the folder holding <name>/ or <name>.zip")
    parser.add_argument("--fmt", choices=("ml-100k", "ml-1m"), default="ml-1m", help="synthetic: the file format")
    parser.add_argument("--users", type=int, default=800)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", action="store_true", help="also count the cold-start tasks per state")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report: dict[str, Any] = {"source": args.source}
    if args.source == "synthetic":
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            write_synthetic_movielens(folder, args.fmt, n_users=args.users, n_items=args.items, seed=args.seed)
            report["write_s"] = time.perf_counter() - start
            data = load_movielens(args.fmt, root=folder)
        name = f"synthetic {args.users}x{args.items}"
    else:
        data = load_movielens(args.source, root=args.root)
        name = args.source
    report["statistics"] = movielens_statistics(data)
    if args.split:
        report["tasks"] = {state: len(tasks) for state, tasks in cold_start_split(data).tasks.items()}
    if args.json:
        print(json.dumps(report))
        return
    print(describe_statistics(report["statistics"], names=(name, "ML-100K")))
    if "write_s" in report:
        print(f"\nwritten in {report['write_s']:.2f} s ({args.fmt} format, seed {args.seed})")
    if "tasks" in report:
        print("cold-start tasks: " + ", ".join(f"{state} {n}" for state, n in report["tasks"].items()))


if __name__ == "__main__":
    main()
