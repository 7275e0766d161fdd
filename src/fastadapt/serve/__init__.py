"""``fastadapt serve``: adapt a trained run to a few labelled examples over HTTP, and predict (extra ``serve``)."""

from __future__ import annotations

from .._extras import require

require("fastapi", "serve", "fastadapt serve")

from ._app import Limits as Limits  # noqa: E402
from ._app import create_app as create_app  # noqa: E402
from ._cache import AdaptedCache as AdaptedCache  # noqa: E402
from ._models import Adapted as Adapted  # noqa: E402
from ._models import InputError as InputError  # noqa: E402
from ._models import ServedModel as ServedModel  # noqa: E402
from ._serve import is_loopback as is_loopback  # noqa: E402
from ._serve import read_api_keys as read_api_keys  # noqa: E402
