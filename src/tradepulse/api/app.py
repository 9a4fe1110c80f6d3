"""The api process: ``create_app(deps)`` builds the Litestar application.

The lifespan owns the clients: it opens the asyncio Redis client (``deps.redis_factory``)
and the PostgreSQL connection pool at start-up and closes both at shutdown; handlers get
them as the ``ctx`` dependency (``ApiContext``). Routes: ``/api/v1`` (``routes.py``), the
operations surface (``ops.py``), OpenAPI at ``/schema``, the dashboard at ``/``
(``dashboard.py``). Every error is problem+json
(``problems.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import cast

import anyio.to_thread
import redis.asyncio as aioredis
from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.types import ControllerRouterHandler

from tradepulse import __version__
from tradepulse.api.auth import JwtVerifier, keys_from_settings
from tradepulse.api.context import ApiContext
from tradepulse.api.dashboard import dashboard_routers
from tradepulse.api.live_ws import Notices, live_ws_handler
from tradepulse.api.ops import ops_router
from tradepulse.api.problems import EXCEPTION_HANDLERS
from tradepulse.api.reader import HistoryPool, LiveReader
from tradepulse.api.routes import api_router, reject_unknown_params
from tradepulse.api.sources import CandleSource, LiveSource
from tradepulse.config import Settings


@dataclass(frozen=True)
class ApiDeps:
    """What the app needs: settings (windows, Redis prefix), a factory of the asyncio
    Redis client (called once, by the lifespan) and the PostgreSQL DSN of the candles.

    ``live_factory`` / ``history_factory`` replace the Redis reader / the PostgreSQL pool
    (the demo's in-memory store); ``notices`` (with ``owner_of``, who owns a rule) adds the
    demo's ``/ws`` fed by the in-memory store."""

    settings: Settings
    redis_factory: Callable[[], aioredis.Redis]
    pg_dsn: str
    live_factory: Callable[[], LiveSource] | None = None
    history_factory: Callable[[], CandleSource] | None = None
    notices: Notices | None = None
    owner_of: Callable[[str], str | None] = lambda _rule_id: None

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiDeps:
        factory = partial(aioredis.Redis.from_url, settings.redis_url,
                          socket_connect_timeout=2, socket_timeout=5)  # fmt: skip
        return cls(settings, factory, settings.pg_dsn)


def _context(state: State) -> ApiContext:
    return cast(ApiContext, state.ctx)


def _open_live(deps: ApiDeps) -> tuple[LiveSource, aioredis.Redis | None]:
    """The live source and the Redis client it uses (``None``: not Redis)."""
    if deps.live_factory is not None:
        return deps.live_factory(), None
    client = deps.redis_factory()
    return LiveReader(client, deps.settings.redis_prefix), client


def create_app(deps: ApiDeps) -> Litestar:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        live, client = _open_live(deps)
        history: CandleSource = (HistoryPool(deps.pg_dsn) if deps.history_factory is None
                                 else deps.history_factory())  # fmt: skip
        keys = keys_from_settings(deps.settings.jwt_secret, deps.settings.jwt_public_key)
        app.state.ctx = ApiContext(deps.settings, live, history, JwtVerifier(keys))
        try:
            yield
        finally:
            if client is not None:
                await client.aclose()
            await anyio.to_thread.run_sync(history.close)

    handlers: list[ControllerRouterHandler] = [api_router, ops_router]
    if deps.notices is not None:
        handlers.append(live_ws_handler(deps.notices, deps.owner_of))
    return Litestar(
        route_handlers=[*handlers, *dashboard_routers()],
        dependencies={"ctx": Provide(_context, sync_to_thread=False)},
        before_request=reject_unknown_params,
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        openapi_config=OpenAPIConfig(title="tradepulse", version=__version__),
    )
