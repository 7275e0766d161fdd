"""The validation curve of a run against wall-clock time: a markdown table and a plot.

    python benchmarks/learning_curve.py RUN [--out curve.png] [--iterations 60000]

Validation rows come from ``RUN/metrics.jsonl``; their wall-clock times from the TensorBoard events in ``RUN/tb``
(extra ``tb``), measured from the first event. ``--iterations`` projects the time of a run of that length at the
run's measured seconds per meta-iteration (validation included).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--out", type=Path, help="PNG of the curve (extra plots)")
    parser.add_argument("--iterations", type=int, help="project the wall time of this many meta-iterations")
    args = parser.parse_args()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rows = [json.loads(line) for line in (args.run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    val = [r for r in rows if r["split"] == "val"]
    metric = next(k for k in val[0] if k not in ("split", "step", "ci95"))
    events = EventAccumulator(str(args.run / "tb"))
    events.Reload()
    start = min(e.wall_time for tag in events.Tags()["scalars"] for e in events.Scalars(tag))
    start = min(start, events.FirstEventTimestamp())
    when = {e.step: e.wall_time - start for e in events.Scalars(f"val/{metric}")}
    print(f"| meta-iteration | wall time (min) | validation {metric} (± 95% CI) |")
    print("|---|---|---|")
    for r in val:
        print(f"| {r['step']:,} | {when[r['step']] / 60:.1f} | {100 * r[metric]:.2f} ± {100 * r['ci95']:.2f} |")
    last = val[-1]
    per_step = when[last["step"]] / last["step"]
    print(f"\n{per_step:.3f} s per meta-iteration, validation included")
    if args.iterations:
        print(f"{args.iterations:,} meta-iterations at that rate: {args.iterations * per_step / 3600:.1f} h")
    if args.out:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6, 4))
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        minutes = [when[r["step"]] / 60 for r in val]
        ax.errorbar(minutes, [100 * r[metric] for r in val], yerr=[100 * r["ci95"] for r in val], marker="o")
        ax.set(xlabel="wall time (minutes)", ylabel=f"validation {metric} (%)", title=args.run.name)
        top = ax.secondary_xaxis("top", functions=(lambda m: m * 60 / per_step, lambda s: s * per_step / 60))
        top.set_xlabel("meta-iteration")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(args.out, dpi=100)
        print(f"plot written to {args.out}")


if __name__ == "__main__":
    main()
