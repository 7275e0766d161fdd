"""The recommender evaluation of a trained run: the run's model beside the baselines, in every state."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..algorithms import Algorithm
from ..typing import Params
from ._evaluate import STATES, evaluate_recommenders
from ._methods import Adapted, MatrixFactorisation, Popularity, Recommender, fine_tuned, no_adaptation, pretrain
from ._setup import RecsysData

HEADLINE = ("mae", "ndcg@3", "top_precision@20", "top_recall@20", "top_f1@20")


@dataclass(frozen=True)
class RecsysReport:
    """Every metric of every method in every state (see :func:`evaluate_recommenders`)."""

    name: str
    states: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"run": self.name, **self.settings, "states": self.states}

    def describe(self, metrics: tuple[str, ...] = HEADLINE) -> str:
        """A plain-text table: one line per (state, method), the headline metrics as mean ± CI."""
        lines = [f"{'state':15s} {'method':12s} " + " ".join(f"{m:>17s}" for m in metrics)]
        for state, entry in self.states.items():
            for method, values in entry["methods"].items():
                cells = []
                for m in metrics:
                    v = values[m]
                    cells.append(f"{'—':>17s}" if v["mean"] is None else f"{v['mean']:9.4f} ± {v['ci95']:.4f}")
                lines.append(f"{state:15s} {method:12s} " + " ".join(cells))
            for metric, comparisons in entry.get("paired", {}).items():
                for other, c in comparisons.items():
                    if c is not None:
                        lines.append(
                            f"{state:15s} {metric} {self.name} - {other}: {c['difference']:+.4f} "
                            f"[{c['ci_low']:+.4f}, {c['ci_high']:+.4f}], p = {c['p_value']:.4f}"
                        )
        return "\n".join(lines)


def recommenders(
    name: str,
    model: nn.Module,
    algorithm: Algorithm,
    params: Params,
    recsys: RecsysData,
    steps: int | None,
    config: Any,
) -> list[Recommender]:
    """The run's model (adapted with ``steps`` inner steps, and without adaptation) and, if
    ``config.baselines``, the global model, its per-user fine-tuning, matrix factorisation, popularity."""
    steps = steps if steps is not None else getattr(algorithm, "inner_steps", None)
    methods: list[Recommender] = [
        Adapted(f"{name}", algorithm, params, recsys.data, steps),
        Adapted(f"{name}-0", algorithm, params, recsys.data, 0),
    ]
    if config.baselines:
        train = recsys.split.tasks["train"]
        base = copy.deepcopy(model)
        pretrained = pretrain(base, recsys.data, train, epochs=config.pretrain_epochs, seed=config.seed)
        methods += [
            no_adaptation(base, pretrained, recsys.data),
            fine_tuned(base, pretrained, recsys.data, lr=config.finetune_lr, steps=config.finetune_steps),
            MatrixFactorisation.fit(recsys.data, train, seed=config.seed),
            Popularity.fit(recsys.data, train),
        ]
    return methods


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
) -> RecsysReport:
    """Scores a trained MeLU-style run and the baselines on the four cold-start states (``config`` is the
    run's :class:`~fastadapt.recsys.RecsysConfig`). ``support_cap`` keeps the first that many support
    ratings of every evaluated user (the split's order: nested caps); the baselines still train on all of
    the training state."""
    params = {k: v.detach() for k, v in params.items()}
    methods = recommenders(name, model, algorithm, params, recsys, steps, config)
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
    states = evaluate_recommenders(
        recsys.data,
        split,
        methods,
        states=[s for s in STATES if recsys.split.tasks.get(s)],
        negatives=config.negatives,
        seed=seed,
        max_users=config.eval_users,
        progress=progress,
    )
    settings = {"source": config.source, "negatives": config.negatives, "seed": seed, "steps": steps}
    settings["support_cap"] = support_cap if support_cap is not None else config.support_cap
    return RecsysReport(name, states, settings)
