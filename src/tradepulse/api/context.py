"""What every request handler gets (the ``ctx`` dependency): built and closed by the
lifespan of ``create_app`` (the one place an ``ApiContext`` is made)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Annotated, TypeAlias

from litestar.di import Dependency
from litestar.params import SkipValidationMarker

from tradepulse.api.auth import JwtVerifier
from tradepulse.api.preferences import PreferenceCache
from tradepulse.api.ranking import Rankings
from tradepulse.api.sources import CandleSource, LiveSource
from tradepulse.api.stores import AlertStore, ProfileStore, RuleStore
from tradepulse.config import Settings


@dataclass(frozen=True)
class ApiContext:
    """``live``/``history``: market data; ``rules``/``alerts``/``profiles``: the stores
    (``api/stores.py``), called from worker threads only; ``preferences``: the users' alert
    preferences as the WebSocket gateway applies them (over ``profiles``)."""

    settings: Settings
    live: LiveSource
    history: CandleSource
    auth: JwtVerifier
    rules: RuleStore
    alerts: AlertStore
    profiles: ProfileStore
    rankings: Rankings  # the token list's read cache over ``live``
    preferences: PreferenceCache
    started_s: float = field(default_factory=time.time)


#: How a handler asks for the context: injected by name (``ctx``), not validated.
Ctx: TypeAlias = Annotated[ApiContext, Dependency(kind="named"), SkipValidationMarker()]
