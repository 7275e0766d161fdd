"""Search spaces: YAML over any config key.

algorithm.inner_lr: {type: float, low: 0.01, high: 1.0, log: true}
algorithm.inner_steps: {type: int, low: 1, high: 5}
training.meta_batch_size: {type: categorical, choices: [4, 8, 16]}
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..training import Config, ConfigError, config_from_dict

KINDS = ("float", "int", "categorical")


@dataclass(frozen=True)
class Dimension:
    """One searched config key."""

    key: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        """The trial's value for this key (Optuna's ``suggest_*``; the parameter name is the config key)."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            step = int(self.step) if self.step is not None else 1
            return trial.suggest_int(self.key, int(self.low or 0), int(self.high or 0), step=step, log=self.log)
        return trial.suggest_float(self.key, float(self.low or 0), float(self.high or 0), step=self.step, log=self.log)


def _dimension(key: str, spec: Any) -> Dimension:
    where = f"search space key {key!r}"
    if not isinstance(spec, dict) or "type" not in spec:
        raise ConfigError(
            f"{where}: give a mapping with 'type' ({', '.join(KINDS)}), "
            "e.g. {type: float, low: 0.01, high: 1, log: true}"
        )
    kind = spec["type"]
    if kind not in KINDS:
        raise ConfigError(f"{where}: unknown type {kind!r}; use one of {KINDS}")
    unknown = sorted(set(spec) - {"type", "low", "high", "log", "step", "choices"})
    if unknown:
        raise ConfigError(f"{where}: unknown fields {unknown}; use low, high, log, step (float, int) or choices")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: a categorical dimension needs a non-empty list 'choices'")
        return Dimension(key, kind, choices=tuple(choices))
    if "low" not in spec or "high" not in spec:
        raise ConfigError(f"{where}: a {kind} dimension needs 'low' and 'high'")
    low, high, log = spec["low"], spec["high"], bool(spec.get("log", False))
    if not low < high:
        raise ConfigError(f"{where}: low ({low}) must be below high ({high})")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log scale needs low > 0, got {low}")
    return Dimension(key, kind, float(low), float(high), log, spec.get("step"))


def shipped_spaces() -> dict[str, Path]:
    """The search spaces shipped with fastadapt (``spaces/*.yaml``), by name."""
    folder = Path(str(resources.files("fastadapt").joinpath("spaces")))
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def resolve_space(name_or_path: str | Path) -> Path:
    """A search space file, or the path of a shipped space given by name (``maml_digits``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = shipped_spaces()
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    raise ConfigError(
        f"search space {name_or_path} is neither a file nor a shipped space; shipped: {', '.join(shipped)}"
    )


def load_space(path: str | Path, config: Config) -> list[Dimension]:
    """Reads and checks a search space against ``config``: every key must be a config key, and every value
    the space can take must be accepted by the config (its lowest, highest or every choice is tried)."""
    path = resolve_space(path)
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"search space {path} must map config keys (section.key) to dimensions")
    space = [_dimension(str(k), v) for k, v in raw.items()]
    for dim in space:
        values = dim.choices if dim.kind == "categorical" else (dim.low, dim.high)
        for value in values:
            if dim.kind == "int":
                value = int(value)  # type: ignore[arg-type]
            try:
                apply(config, {dim.key: value})
            except ConfigError as error:
                raise ConfigError(f"search space {path}: {error}") from None
    return space


def apply(config: Config, params: dict[str, Any]) -> Config:
    """``config`` with a trial's parameters set (validated like command-line overrides)."""
    values = config.to_dict()
    for key, value in params.items():
        section, _, name = key.partition(".")
        if section not in values or not isinstance(values[section], dict) or name not in values[section]:
            raise ConfigError(f"unknown config key {key!r}; search over section.key names of the config")
        values[section][name] = value
    return config_from_dict(values)
