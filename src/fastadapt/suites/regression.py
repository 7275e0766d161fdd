"""The regression suite: task families drawn from a seed (MAML's sinusoids, lines); the splits differ by seed."""

from __future__ import annotations

from ..tasks import LinearTasks, SinusoidTasks, TaskSource
from ..training import Config, ConfigError, Suite, SuiteParts, build_model

FAMILIES: dict[str, type[SinusoidTasks] | type[LinearTasks]] = {"sinusoid": SinusoidTasks, "linear": LinearTasks}


def build(config: Config) -> SuiteParts:
    if config.model.name == "conv4":
        raise ConfigError(
            f"model.name=conv4 needs image data, but data.dataset={config.data.dataset!r}; use model.name=mlp"
        )
    family = FAMILIES[config.data.dataset]
    source: TaskSource = family(shots=config.task.shots, queries=config.task.queries)
    model = build_model(config.model, (1,), 1)
    return SuiteParts({"train": source, "val": source, "test": source}, model, loss="mse")


SUITE = Suite(
    "regression",
    tuple(FAMILIES),
    build,
    description="regression task families: sinusoids (MAML, arXiv:1703.03400) and lines",
)
