"""Optional features and the extras that install them: ``pip install 'fastadapt[EXTRA]'``.

A feature asked for by name (``plot_curves``, ``fastadapt tune``, an image folder) calls :func:`require` and
fails with the extra to install. A by-product of a default run (TensorBoard events, ``curves.png``) calls
:func:`optional` and is skipped, with one note on stderr, when its package is missing.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

_NOTED: set[str] = set()
#: Distribution names that differ from the module's.
_DISTRIBUTIONS = {"PIL": "Pillow"}


class MissingExtraError(ImportError):
    """An optional feature's package is not installed; the message names the extra that installs it."""


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Imports ``module`` (a top-level package, e.g. ``"matplotlib"``) for ``feature``.

    Raises:
        MissingExtraError: ``module`` cannot be imported; the message says ``pip install 'fastadapt[extra]'``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtraError(f"{feature} {_hint(module, extra)}", name=module) from error


def optional(module: str, extra: str, feature: str) -> ModuleType | None:
    """``module``, or ``None`` after saying once per process on stderr that ``feature`` is skipped."""
    try:
        return require(module, extra, feature)
    except MissingExtraError:
        if feature not in _NOTED:
            _NOTED.add(feature)
            print(f"note: {feature} skipped; it {_hint(module, extra)}", file=sys.stderr)
        return None


def _hint(module: str, extra: str) -> str:
    return f"needs {_DISTRIBUTIONS.get(module, module)}: pip install 'fastadapt[{extra}]'"
