"""Continual per-user adaptation: adapted states that follow a user's examples as they arrive."""

from __future__ import annotations

from ._continual import ContinualReport as ContinualReport
from ._continual import ContinualUser as ContinualUser
from ._continual import continual_users as continual_users
from ._continual import prequential as prequential
