"""The held-out-domain protocol's comparison: meta-trained heads, the transfer baseline, nearest class mean
and the heads' ensemble, scored on the same N-way K-shot episodes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from ..algorithms import Algorithm
from ..evaluation import Method, placement
from ..tasks import Task
from ..typing import Params
from ._fewshot import average_probabilities, logistic_head, nearest_mean

EPISODE_BASELINES = ("logistic", "nearest-mean")


def head_method(algorithm: Algorithm, params: Params, steps: int | None = None) -> Method:
    """A meta-trained head as a :data:`~fastadapt.evaluation.Method`: adapt on the support set, return the
    query probabilities ``(n_query, N)``.

    Each episode runs on the parameters' device and floating-point type; the probabilities come back on the CPU
    (in that type), where the baselines' and the ensemble's are.
    """
    params = {k: v.detach() for k, v in params.items()}
    device, dtype = placement(params)

    def run(task: Task) -> Tensor:
        task = task.to(device, dtype)
        state = algorithm.adapt(params, task.support_x, task.support_y, steps=steps)
        with torch.no_grad():
            return torch.softmax(algorithm.predict(params, state, task.query_x), dim=-1).cpu()

    return run


def _baseline(name: str, c: float) -> Method:
    def run(task: Task) -> Tensor:
        sx, sy, qx = (t.detach().cpu().numpy() for t in (task.support_x, task.support_y, task.query_x))
        probabilities = logistic_head(sx, sy, qx, c=c) if name == "logistic" else nearest_mean(sx, sy, qx)
        return torch.from_numpy(probabilities)

    return run


def episode_methods(
    heads: Mapping[str, Method], baselines: Sequence[str] = EPISODE_BASELINES, ensemble: bool = True, c: float = 10.0
) -> dict[str, Method]:
    """The methods of one comparison: the given heads, the baselines (a logistic head with inverse L2
    strength ``c`` fitted on each support set; nearest class mean of the frozen embeddings) and, with two or
    more heads, ``ensemble``: the mean of the heads' probabilities."""
    unknown = sorted(set(baselines) - set(EPISODE_BASELINES))
    if unknown:
        raise ValueError(f"unknown baselines {unknown}; choose from {EPISODE_BASELINES}")
    methods: dict[str, Method] = dict(heads)
    for name in baselines:
        methods[name] = _baseline(name, c)
    members = list(heads.values())
    if ensemble and len(members) >= 2:

        def average(task: Task) -> Tensor:
            return torch.from_numpy(average_probabilities([m(task).detach().cpu().double().numpy() for m in members]))

        methods["ensemble"] = average
    return methods
