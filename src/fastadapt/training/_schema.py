"""A JSON Schema of the config files, from the config dataclasses and the range rules (``fastadapt config schema``):
editors that read JSON Schema (VS Code's YAML extension, PyCharm) then complete keys and flag wrong types and
out-of-range values as the file is typed. The loader remains the judge: cross-field checks are not in the schema."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal

from ._config import CORE_SECTIONS, REQUIRED_SECTIONS, Config, _section_types
from ._validate import RULES

_SCALARS = {int: "integer", float: "number", bool: "boolean", str: "string"}


def _type_schema(kind: Any) -> dict[str, Any]:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [_type_schema(option) for option in typing.get_args(kind)]}
    if origin is Literal:
        return {"enum": list(typing.get_args(kind))}
    if origin is tuple:
        return {"type": "array", "items": _type_schema(typing.get_args(kind)[0])}
    if kind is type(None):
        return {"type": "null"}
    if dataclasses.is_dataclass(kind):
        return _section_schema(kind, "")
    if kind in _SCALARS:
        return {"type": _SCALARS[kind]}
    return {}  # a type JSON cannot describe: anything (the loader checks it)


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, tuple | list) else value


def _section_schema(cls: Any, section: str) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    properties: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        schema = _type_schema(hints[f.name])
        if f.default is not dataclasses.MISSING:
            schema["default"] = _plain(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            schema["default"] = _plain(f.default_factory())
        rule = RULES.get(f"{section}.{f.name}")
        schema |= getattr(rule, "schema", {})
        properties[f.name] = schema
    out: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": properties}
    if cls.__doc__ and not cls.__doc__.startswith(cls.__name__ + "("):  # not the dataclass's generated one
        out["description"] = " ".join(cls.__doc__.split())
    return out


def config_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a config file: the core sections and every registered suite's."""
    hints = typing.get_type_hints(Config)
    properties: dict[str, Any] = {"name": {"type": "string", "description": "the run's name (runs/NAME-TIME)"}}
    for section in CORE_SECTIONS:
        properties[section] = _section_schema(hints[section], section)
    for section, cls in sorted(_section_types().items()):
        properties[section] = _section_schema(cls, section) | {"description": f"the {section} task suite's section"}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "fastadapt config",
        "type": "object",
        "additionalProperties": False,
        "required": list(REQUIRED_SECTIONS),
        "properties": properties,
    }
