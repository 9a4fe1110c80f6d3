"""The api process: ``create_app(deps)`` builds the Litestar application.

The lifespan owns the clients: it opens the asyncio Redis client (``deps.redis_factory``),
the PostgreSQL connection pool of the candles and the rule, alert and profile stores
(``deps.rule_store`` ... factories, PostgreSQL repositories by default) at start-up and
closes them at shutdown; handlers get them as the ``ctx`` dependency (``ApiContext``, made
only here). Routes: ``/api/v1`` (``routes.py`` and the modules it gathers), the operations
surface (``ops.py``), OpenAPI at ``/schema``, the dashboard at ``/`` (``dashboard.py``).
Every error is problem+json (``problems.py``); every matched request is counted and timed
(``timing.py``). ``live_factory``/``history_factory`` replace the Redis reader and the
PostgreSQL pool (the demo's in-memory store).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import cast

import anyio.from_thread
import anyio.to_thread
import redis.asyncio as aioredis
from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.types import ControllerRouterHandler

from tradepulse import __version__
from tradepulse.adapters.postgres_profiles import ProfileRepository
from tradepulse.adapters.postgres_rules import AlertRepository, RuleRepository
from tradepulse.api.auth import JwtVerifier, keys_from_settings
from tradepulse.api.context import ApiContext
from tradepulse.api.dashboard import dashboard_routers
from tradepulse.api.live_ws import Notices, live_ws_handler
from tradepulse.api.ops import ops_router
from tradepulse.api.problems import AUTH_ENV, EXCEPTION_HANDLERS
from tradepulse.api.reader import HistoryPool, LiveReader
from tradepulse.api.routes import api_router, reject_unknown_params
from tradepulse.api.sources import CandleSource, LiveSource
from tradepulse.api.stores import AlertStore, OnRuleChange, ProfileStore, RuleStore
from tradepulse.api.timing import request_metrics
from tradepulse.config import Settings

log = logging.getLogger(__name__)

RULES_UPDATED = "rules.updated"
_PG_CONNECT_TIMEOUT_S = 3


def postgres_rules(deps: ApiDeps, on_change: OnRuleChange) -> RuleStore:
    windows = [spec.name for spec in deps.settings.windows]
    return RuleRepository(deps.pg_dsn, windows=windows, on_change=on_change,
                          connect_timeout_s=_PG_CONNECT_TIMEOUT_S)  # fmt: skip


def postgres_alerts(deps: ApiDeps) -> AlertStore:
    return AlertRepository(deps.pg_dsn, connect_timeout_s=_PG_CONNECT_TIMEOUT_S)


def postgres_profiles(deps: ApiDeps) -> ProfileStore:
    return ProfileRepository(deps.pg_dsn, connect_timeout_s=_PG_CONNECT_TIMEOUT_S)


@dataclass(frozen=True)
class ApiDeps:
    """What the app needs: settings (windows, Redis prefix, JWT keys), a factory of the
    asyncio Redis client (called once, by the lifespan), the PostgreSQL DSN, and a factory
    per store (``api/stores.py``; replace them to run the API on other stores). The rule
    store's factory also gets the callback that announces a changed rule to the workers.

    ``live_factory`` / ``history_factory`` replace the Redis reader / the PostgreSQL pool
    (the demo's in-memory store); ``notices`` (with ``owner_of``, who owns a rule) adds the
    demo's ``/ws`` fed by the in-memory store."""

    settings: Settings
    redis_factory: Callable[[], aioredis.Redis]
    pg_dsn: str
    rule_store: Callable[[ApiDeps, OnRuleChange], RuleStore] = postgres_rules
    alert_store: Callable[[ApiDeps], AlertStore] = postgres_alerts
    profile_store: Callable[[ApiDeps], ProfileStore] = postgres_profiles
    live_factory: Callable[[], LiveSource] | None = None
    history_factory: Callable[[], CandleSource] | None = None
    notices: Notices | None = None
    owner_of: Callable[[str], str | None] = lambda _rule_id: None

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiDeps:
        factory = partial(aioredis.Redis.from_url, settings.redis_url,
                          socket_connect_timeout=2, socket_timeout=5)  # fmt: skip
        return cls(settings, factory, settings.pg_dsn)


class RuleChangePublisher:
    """Publishes a changed rule's id on ``{prefix}rules.updated`` with the app's asyncio
    client; called by a store from a worker thread of the event loop (anyio)."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._client = client
        self.channel = f"{prefix}{RULES_UPDATED}"

    def __call__(self, rule_id: str) -> None:
        anyio.from_thread.run(self._publish, rule_id)

    async def _publish(self, rule_id: str) -> None:
        await self._client.publish(self.channel, rule_id)


def _context(state: State) -> ApiContext:
    return cast(ApiContext, state.ctx)


def _build_context(deps: ApiDeps, client: aioredis.Redis) -> ApiContext:
    settings = deps.settings
    keys = keys_from_settings(settings.jwt_secret, settings.jwt_public_key)
    publish = RuleChangePublisher(client, settings.redis_prefix)
    if not keys.configured:
        log.warning("authentication is not configured: rules, alerts and the profile "
                    "answer 503 until %s is set", AUTH_ENV)  # fmt: skip
    live: LiveSource = (LiveReader(client, settings.redis_prefix) if deps.live_factory is None
                        else deps.live_factory())  # fmt: skip
    history: CandleSource = (HistoryPool(deps.pg_dsn) if deps.history_factory is None
                             else deps.history_factory())  # fmt: skip
    return ApiContext(
        settings, live, history, JwtVerifier(keys), deps.rule_store(deps, publish),
        deps.alert_store(deps), deps.profile_store(deps),
    )  # fmt: skip


async def _close(ctx: ApiContext) -> None:
    for close in (ctx.history.close, ctx.rules.close, ctx.alerts.close, ctx.profiles.close):
        await anyio.to_thread.run_sync(close)


_OPENAPI = OpenAPIConfig(
    title="tradepulse",
    version=__version__,
    components=Components(security_schemes={
        "bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT",
                                 description="`tradepulse auth token --user U`"),
    }),
)  # fmt: skip


def create_app(deps: ApiDeps) -> Litestar:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        client = deps.redis_factory()
        ctx = _build_context(deps, client)
        app.state.ctx = ctx
        try:
            yield
        finally:
            await _close(ctx)
            await client.aclose()

    handlers: list[ControllerRouterHandler] = [api_router, ops_router]
    if deps.notices is not None:
        handlers.append(live_ws_handler(deps.notices, deps.owner_of))
    return Litestar(
        route_handlers=[*handlers, *dashboard_routers()],
        dependencies={"ctx": Provide(_context, sync_to_thread=False)},
        before_request=reject_unknown_params,
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[request_metrics],
        lifespan=[lifespan],
        openapi_config=_OPENAPI,
    )
