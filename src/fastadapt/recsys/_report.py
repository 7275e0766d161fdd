"""The recommender evaluation of a trained run: the run's model beside the baselines, in every state.

The baselines are tuned on the validation users (their query MAE after adapting on their support ratings), over
small grids, and the best of them on those users is the reference every method is compared with, user by user,
in every reported state. The reported states never choose anything.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from .._extras import optional
from ..algorithms import Algorithm
from ..evaluation._ranking import mae
from ..typing import Params
from ._coldstart import UserTask
from ._evaluate import CURVE_CAPS, CURVE_METRICS, STATES, evaluate_recommenders, support_curves
from ._methods import (
    Adapted,
    Biases,
    MatrixFactorisation,
    Popularity,
    Recommender,
    fine_tuned,
    no_adaptation,
    pretrain,
)
from ._setup import RecsysData

HEADLINE = ("mae", "rmse", "ndcg@3", "top_precision@20", "top_f1@20")

#: The baselines' grids, searched on the validation users (``recsys.tune_baselines``).
GRIDS: dict[str, dict[str, tuple[Any, ...]]] = {
    "fine-tune": {"lr": (0.001, 0.005, 0.02, 0.05), "steps": (1, 5, 20)},
    "mf": {"dim": (8, 16, 32), "reg": (2.0, 5.0, 15.0), "fold_reg": (1.0, 3.0, 10.0, 30.0)},
    "bias": {"item_reg": (1.0, 5.0, 25.0), "user_reg": (1.0, 3.0, 10.0, 30.0)},
    "popularity": {"shrinkage": (1.0, 5.0, 25.0)},
}


#: The support sizes a baseline's validation MAE averages over (:func:`validation_mae`).
TUNING_CAPS: tuple[int | None, ...] = (*CURVE_CAPS, None)


@dataclass(frozen=True)
class RecsysReport:
    """Every metric of every method in every state (see :func:`evaluate_recommenders`), the support-size curves
    (:func:`support_curves`) and how the baselines were tuned."""

    name: str
    states: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)
    curves: dict[str, Any] = field(default_factory=dict)
    tuning: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"run": self.name, **self.settings, "tuning": self.tuning, "states": self.states, "curves": self.curves}

    def describe(self, metrics: tuple[str, ...] = HEADLINE) -> str:
        """Plain-text tables: per (state, method) the headline metrics as mean ± CI, the paired differences with the
        reference (the best baseline on the validation users), and the support-size curves' MAE."""
        lines = [f"{'state':15s} {'method':12s} " + " ".join(f"{m:>17s}" for m in metrics)]
        for state, entry in self.states.items():
            for method, values in entry["methods"].items():
                cells = []
                for m in metrics:
                    v = values[m]
                    cells.append(f"{'—':>17s}" if v["mean"] is None else f"{v['mean']:9.4f} ± {v['ci95']:.4f}")
                lines.append(f"{state:15s} {method:12s} " + " ".join(cells))
            lines += _paired_lines(state, entry, ("mae", "ndcg@3"))
        for state, entry in self.curves.items():
            caps = list(entry["caps"])
            lines.append(f"\nMAE by support size, {state} ({entry['users']} users with >= {max(map(int, caps))})")
            lines.append(f"{'method':12s} " + " ".join(f"{c:>17}" for c in caps))
            names = list(entry["caps"][caps[0]]["methods"])
            for method in names:
                cells = []
                for c in caps:
                    v = entry["caps"][c]["methods"][method]["mae"]
                    cells.append(f"{v['mean']:9.4f} ± {v['ci95']:.4f}")
                lines.append(f"{method:12s} " + " ".join(cells))
            for c in caps:
                lines += _paired_lines(f"{state} @{c}", entry["caps"][c], ("mae",), only=names[0])
        return "\n".join(lines)


def _paired_lines(label: str, entry: dict[str, Any], metrics: tuple[str, ...], only: str | None = None) -> list[str]:
    lines = []
    reference = entry.get("reference")
    for metric in metrics:
        for other, c in entry.get("paired", {}).get(metric, {}).items():
            if c is not None and only in (None, other):
                lines.append(
                    f"{label:15s} {metric} {other} - {reference}: {c['difference']:+.4f} "
                    f"[{c['ci_low']:+.4f}, {c['ci_high']:+.4f}], paired t p = {c['t_p_value']:.4f}"
                )
    return lines


def validation_mae(method: Recommender, tasks: list[UserTask], caps: Iterable[int | None] = TUNING_CAPS) -> float:
    """The query MAE after the method saw each task's first ``cap`` support ratings, averaged over ``tasks`` and
    then over ``caps`` (``None``: all support ratings): one setting has to serve users with few ratings and many."""
    errors = []
    for cap in caps:
        for t in tasks:
            predicted, _ = method.score(t.user, t.support_items[:cap], t.support_ratings[:cap], t.query_items)
            errors.append(mae(predicted, t.query_ratings))
    return float(np.mean(errors))


def tune(
    grid: dict[str, tuple[Any, ...]], build: Callable[..., Recommender], val: list[UserTask]
) -> tuple[Recommender, dict[str, Any]]:
    """The method of ``build(**settings)`` with the lowest :func:`validation_mae` over the grid's settings, and
    ``{"chosen": settings, "val_mae": its value, "grid": [every settings with its val_mae]}``."""
    tried: list[tuple[float, dict[str, Any], Recommender]] = []
    for values in itertools.product(*grid.values()):
        settings = dict(zip(grid, values, strict=True))
        method = build(**settings)
        tried.append((validation_mae(method, val), settings, method))
    best = min(tried, key=lambda row: row[0])
    record = {"chosen": best[1], "val_mae": best[0], "grid": [s | {"val_mae": v} for v, s, _ in tried]}
    return best[2], record


def baselines(model: nn.Module, recsys: RecsysData, config: Any) -> tuple[list[Recommender], dict[str, Any]]:
    """The global model (epochs chosen on the validation users), its fine-tuning, MF, the bias model and
    popularity, each tuned on the validation users over :data:`GRIDS` (with ``config.tune_baselines``; else the
    config's settings), and the record of the tuning per method."""
    data, train, val = recsys.data, recsys.split.tasks["train"], recsys.split.tasks.get("val", [])
    tuned = bool(config.tune_baselines and val)
    base = copy.deepcopy(model)
    history: list[float] = []
    pretrained = pretrain(
        base,
        data,
        train,
        epochs=config.pretrain_epochs,
        seed=config.seed,
        val_tasks=val if tuned else None,
        history=history,
    )
    methods: list[Recommender] = [no_adaptation(base, pretrained, data)]
    record: dict[str, Any] = {"global": {"val_mse_per_epoch": history}}
    if tuned:
        record["global"]["chosen"] = {"epochs": int(np.argmin(history)) + 1}
    factors: dict[tuple[int, float], MatrixFactorisation] = {}

    def mf(dim: int, reg: float, fold_reg: float) -> MatrixFactorisation:
        if (dim, reg) not in factors:  # one fit per (dim, reg); the fold-in penalty is only at scoring
            factors[dim, reg] = MatrixFactorisation.fit(data, train, dim=dim, reg=reg, seed=config.seed)
        return dataclasses.replace(factors[dim, reg], reg=fold_reg)

    builders: dict[str, Callable[..., Recommender]] = {
        "fine-tune": lambda lr, steps: fine_tuned(base, pretrained, data, lr=lr, steps=steps),
        "mf": mf,
        "bias": lambda item_reg, user_reg: Biases.fit(data, train, item_reg=item_reg, user_reg=user_reg),
        "popularity": lambda shrinkage: Popularity.fit(data, train, shrinkage=shrinkage),
    }
    defaults = {
        "fine-tune": {"lr": config.finetune_lr, "steps": config.finetune_steps},
        "mf": {"dim": 16, "reg": 5.0, "fold_reg": 5.0},
        "bias": {"item_reg": 5.0, "user_reg": 5.0},
        "popularity": {"shrinkage": 5.0},
    }
    for name, build in builders.items():
        if tuned:
            method, record[name] = tune(GRIDS[name], build, val)
        else:
            method = build(**defaults[name])
            record[name] = {"chosen": defaults[name]}
        methods.append(method)
    if val:
        for method in methods:
            entry = record.setdefault(method.name, {})
            if "val_mae" not in entry:  # the grids' winners have theirs
                entry["val_mae"] = validation_mae(method, val)
    return methods, record


def recommenders(
    name: str,
    model: nn.Module,
    algorithm: Algorithm,
    params: Params,
    recsys: RecsysData,
    steps: int | None,
    config: Any,
) -> tuple[list[Recommender], dict[str, Any]]:
    """The run's model (adapted with ``steps`` inner steps, and without adaptation) and, if
    ``config.baselines``, the tuned baselines of :func:`baselines`, with the tuning record."""
    steps = steps if steps is not None else getattr(algorithm, "inner_steps", None)
    methods: list[Recommender] = [
        Adapted(f"{name}", algorithm, params, recsys.data, steps),
        Adapted(f"{name}-0", algorithm, params, recsys.data, 0),
    ]
    record: dict[str, Any] = {}
    if config.baselines:
        extra, record = baselines(model, recsys, config)
        methods += extra
    return methods, record


def best_baseline(record: dict[str, Any], names: Iterable[str]) -> str | None:
    """The baseline with the lowest MAE on the validation users (``None`` without validation users)."""
    scored = [(record[n]["val_mae"], n) for n in names if "val_mae" in record.get(n, {})]
    return min(scored)[1] if scored else None


def evaluate_recommender_run(
    name: str,
    model: nn.Module,
    algorithm: Algorithm,
    params: Params,
    recsys: RecsysData,
    config: Any,
    steps: int | None = None,
    seed: int = 1234,
    progress: bool = False,
    support_cap: int | None = None,
    curves: bool = True,
) -> RecsysReport:
    """Scores a trained run (``model``: the network the global and fine-tune baselines train) and the baselines
    on the four cold-start states (``config`` is the run's :class:`~fastadapt.recsys.RecsysConfig`), every method
    compared user by user with the best baseline on the validation users, and (``curves``) the support-size
    curves. ``support_cap`` keeps the first that many support ratings of every evaluated user (the split's order:
    nested caps; no curves then); the baselines still train on all of the training state."""
    params = {k: v.detach() for k, v in params.items()}
    methods, tuning = recommenders(name, model, algorithm, params, recsys, steps, config)
    reference = best_baseline(tuning, [m.name for m in methods[2:]]) or methods[0].name
    split = recsys.split
    if support_cap is not None:
        n = support_cap
        capped = {
            state: [
                dataclasses.replace(t, support_items=t.support_items[:n], support_ratings=t.support_ratings[:n])
                for t in tasks
            ]
            for state, tasks in split.tasks.items()
        }
        split = dataclasses.replace(split, tasks=capped)
    reported = [s for s in STATES if recsys.split.tasks.get(s)]
    states = evaluate_recommenders(
        recsys.data,
        split,
        methods,
        states=reported,
        negatives=config.negatives,
        seed=seed,
        max_users=config.eval_users,
        progress=progress,
        reference=reference,
    )
    curve = {}
    if curves and support_cap is None:
        curve = support_curves(
            recsys.split, methods, states=reported, reference=reference, seed=seed, progress=progress
        )
    settings = {"source": config.source, "negatives": config.negatives, "seed": seed, "steps": steps}
    settings["support_cap"] = support_cap if support_cap is not None else config.support_cap
    settings["reference"] = reference
    return RecsysReport(name, states, settings, curve, tuning)


def plot_support_curves(curves: dict[str, Any], path: Path) -> Path | None:
    """MAE, RMSE and nDCG@3 against the number of support ratings, one row per state and one line per method
    (mean ± 95% CI), to ``path``; ``None`` (with one note on stderr) without matplotlib (extra ``plots``)."""
    if not curves or optional("matplotlib", "plots", path.name) is None:
        return None
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 3.2 * len(curves)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(curves), len(CURVE_METRICS), squeeze=False)
    colours = matplotlib.colormaps["tab20"]
    for row, (state, entry) in zip(axes, curves.items(), strict=True):
        caps = list(entry["caps"])
        sizes = [int(c) for c in caps]
        for ax, metric in zip(row, CURVE_METRICS, strict=True):
            for index, method in enumerate(entry["caps"][caps[0]]["methods"]):
                values = [entry["caps"][c]["methods"][method][metric] for c in caps]
                means, errors = [v["mean"] for v in values], [v["ci95"] for v in values]
                style = {"color": colours(index % 20), "linestyle": "--" if method.endswith("-0") else "-"}
                ax.errorbar(sizes, means, yerr=errors, label=method, capsize=2, **style)
            ax.set(xscale="log", xticks=sizes, xticklabels=[str(s) for s in sizes], xlabel="support ratings")
            ax.set(ylabel=metric, title=f"{state} ({entry['users']} users)")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path
