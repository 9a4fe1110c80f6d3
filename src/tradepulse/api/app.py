"""The api process: ``create_app(deps)`` builds the Litestar application.

The lifespan owns the clients: it opens the asyncio Redis client (``deps.redis_factory``)
and the PostgreSQL connection pool at start-up and closes both at shutdown; handlers get
them as the ``ctx`` dependency (``ApiContext``). The lifespan also runs the WebSocket
``Gateway`` (``ws_hub.py``; ``app.state.gateway``) over a ``RedisFeed``. Routes: ``/api/v1``
(``routes.py``), ``/ws`` (``ws.py``), the operations surface (``ops.py``), OpenAPI at
``/schema``. Every error is problem+json
(``problems.py``).
"""

from __future__ import annotations

import asyncio
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

from tradepulse import __version__
from tradepulse.api.auth import JwtVerifier, keys_from_settings
from tradepulse.api.context import ApiContext
from tradepulse.api.feeds import RedisFeed
from tradepulse.api.ops import ops_router
from tradepulse.api.owners import postgres_rule_owners
from tradepulse.api.problems import EXCEPTION_HANDLERS
from tradepulse.api.reader import HistoryPool, LiveReader
from tradepulse.api.routes import api_router, reject_unknown_params
from tradepulse.api.ws import ws_endpoint
from tradepulse.api.ws_hub import Gateway
from tradepulse.config import Settings

#: How long the lifespan waits for the gateway's loops to end (their Redis reads block 1 s).
GATEWAY_STOP_S = 2.0


@dataclass(frozen=True)
class ApiDeps:
    """What the app needs: settings (windows, Redis prefix), a factory of the asyncio
    Redis client (called once, by the lifespan) and the PostgreSQL DSN of the candles."""

    settings: Settings
    redis_factory: Callable[[], aioredis.Redis]
    pg_dsn: str

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiDeps:
        factory = partial(aioredis.Redis.from_url, settings.redis_url,
                          socket_connect_timeout=2, socket_timeout=5)  # fmt: skip
        return cls(settings, factory, settings.pg_dsn)


def _context(state: State) -> ApiContext:
    return cast(ApiContext, state.ctx)


def create_app(deps: ApiDeps) -> Litestar:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        client = deps.redis_factory()
        history = HistoryPool(deps.pg_dsn)
        live = LiveReader(client, deps.settings.redis_prefix)
        keys = keys_from_settings(deps.settings.jwt_secret, deps.settings.jwt_public_key)
        app.state.ctx = ApiContext(deps.settings, live, history, JwtVerifier(keys))
        owners, owners_repo = postgres_rule_owners(deps.pg_dsn)
        gateway = Gateway(deps.settings, live, RedisFeed(client, deps.settings.redis_prefix),
                          owners)  # fmt: skip
        app.state.gateway = gateway
        gateway_task = asyncio.create_task(gateway.run())
        try:
            yield
        finally:
            gateway.shutdown()
            gateway_task.cancel()
            await asyncio.wait([gateway_task], timeout=GATEWAY_STOP_S)
            await client.aclose()
            if not gateway_task.done():  # its blocked reads fail now that the client closed
                await asyncio.wait([gateway_task], timeout=GATEWAY_STOP_S)
            await anyio.to_thread.run_sync(history.close)
            await anyio.to_thread.run_sync(owners_repo.close)

    return Litestar(
        route_handlers=[api_router, ops_router, ws_endpoint],
        dependencies={"ctx": Provide(_context, sync_to_thread=False)},
        before_request=reject_unknown_params,
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        openapi_config=OpenAPIConfig(title="tradepulse", version=__version__),
    )
