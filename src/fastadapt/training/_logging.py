"""Run-directory logging: metrics as JSONL, TensorBoard events (extra ``tb``), and a PNG of the learning curves
(extra ``plots``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .._extras import optional, require

METRICS = "metrics.jsonl"


#: The splits of pretraining rows (``pretrain``, ``pretrain_val``): their steps count pretraining batches.
PRETRAIN = "pretrain"


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / METRICS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class RunLogger:
    """Appends metric rows to ``metrics.jsonl`` and mirrors scalars to TensorBoard (``tb/``) when tensorboard
    is installed (``pip install 'fastadapt[tb]'``; without it, one note on stderr and no ``tb/``).

    Args:
        resume_step: when resuming, rows logged after this step (by the interrupted run, past its last
            checkpoint) are dropped so the file tells one consistent history.
        drop: splits whose rows a resumed run drops whatever their step (``early_stop``: the run goes on).
    """

    def __init__(self, run_dir: Path, resume_step: int | None = None, drop: tuple[str, ...] = ()) -> None:
        self.run_dir = run_dir
        self.path = run_dir / METRICS
        if resume_step is None:
            self.path.write_text("")
        else:
            # pretraining rows have their own step axis, all before the first meta-iteration: always kept
            rows = [r for r in read_metrics(run_dir) if r["split"] not in drop]
            kept = [r for r in rows if r["step"] <= resume_step or r["split"].startswith(PRETRAIN)]
            self.path.write_text("".join(json.dumps(row) + "\n" for row in kept))
        self._file = self.path.open("a")
        self._tb: Any = None
        self._tb_pretrain: Any = None
        if optional("tensorboard", "tb", "TensorBoard logging (tb/)") is not None:
            from torch.utils.tensorboard import SummaryWriter

            purge = resume_step + 1 if resume_step is not None else None
            self._tb = SummaryWriter(str(run_dir / "tb"), purge_step=purge)
            if resume_step is None:  # pretraining happens before the first checkpoint: never resumed into
                self._tb_pretrain = SummaryWriter(str(run_dir / "tb" / PRETRAIN))

    def log(self, split: str, step: int, **values: float) -> None:
        self._file.write(json.dumps({"split": split, "step": step, **values}) + "\n")
        self._file.flush()
        writer = self._tb_pretrain if split.startswith(PRETRAIN) else self._tb
        if writer is not None:
            for name, value in values.items():
                writer.add_scalar(f"{split}/{name}", value, step)

    def close(self) -> None:
        self._file.close()
        for writer in (self._tb, self._tb_pretrain):
            if writer is not None:
                writer.close()


def plot_curves(run_dir: Path, metric: str, best_step: int | None = None) -> Path:
    """Draws the training loss and the train / validation ``metric`` against step to ``curves.png``, with
    ``best_step`` (the kept checkpoint) and an early stop marked.

    On a matplotlib ``Figure`` with the Agg canvas: the global backend and figure state are untouched.

    Raises:
        MissingExtraError: matplotlib is not installed (``pip install 'fastadapt[plots]'``).
    """
    require("matplotlib", "plots", "curves.png")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = read_metrics(run_dir)
    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    ax_loss, ax_metric = fig.subplots(1, 2)
    for split, style in (("train", "-"), ("val", "o-")):
        points = [r for r in rows if r["split"] == split]
        if not points:
            continue
        steps = [r["step"] for r in points]
        if "loss" in points[0]:
            ax_loss.plot(steps, [r["loss"] for r in points], style, label=split)
        ax_metric.plot(steps, [r[metric] for r in points], style, label=split)
    if best_step is not None:  # the step of best.safetensors, and where early stopping stopped
        ax_metric.axvline(best_step, color="grey", linestyle=":", label=f"best (step {best_step})")
    for stop in (r for r in rows if r["split"] == "early_stop"):
        ax_metric.axvline(stop["step"], color="red", linestyle="--", label=f"early stop (step {stop['step']})")
    ax_loss.set(xlabel="meta-iteration", ylabel="query loss", title="loss")
    ax_metric.set(xlabel="meta-iteration", ylabel=metric, title=metric)
    for ax in (ax_loss, ax_metric):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # a run with no meta-iterations (pretraining only) has no train rows
            ax.legend()
    fig.tight_layout()
    out = run_dir / "curves.png"
    fig.savefig(out, dpi=100)
    return out


def plot_curves_if_installed(run_dir: Path, metric: str, best_step: int | None = None) -> Path | None:
    """:func:`plot_curves` when matplotlib is installed; otherwise ``None``, with one note on stderr (what a
    training run does at its end, so that the core install trains without the ``plots`` extra)."""
    if optional("matplotlib", "plots", "curves.png") is None:
        return None
    return plot_curves(run_dir, metric, best_step)
