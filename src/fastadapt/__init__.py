"""fastadapt: meta-learning on real data, as pure functions over parameter dicts."""

from __future__ import annotations

__version__ = "0.1.0"
