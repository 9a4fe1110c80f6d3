"""The api process: ``create_app(deps)`` builds the Litestar application.

The lifespan owns the clients: it opens the asyncio Redis client (``deps.redis_factory``),
the PostgreSQL connection pool of the candles and the rule, alert and profile stores
(``deps.rule_store`` ... factories, PostgreSQL repositories by default) at start-up and
closes them at shutdown; handlers get them as the ``ctx`` dependency (``ApiContext``, made
only here). Routes: ``/api/v1`` (``routes.py`` and the modules it gathers), the operations
surface (``ops.py``), OpenAPI at ``/schema``, ``/ws`` (``ws.py``), the dashboard at ``/``
(``dashboard.py``). The lifespan also runs the WebSocket ``Gateway`` (``ws_hub.py``;
``app.state.gateway``) over a ``Feed`` (``feeds.py``: Redis by default); it applies the
users' alert preferences read from the profile store (``preferences.py``). Every error is
problem+json (``problems.py``); every matched request is counted and timed (``timing.py``).
``live_factory``/``history_factory``/``feed_factory``/``owners_factory`` replace the Redis
and PostgreSQL sources (the demo's in-memory store).
"""

from __future__ import annotations

import asyncio
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
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.types import ControllerRouterHandler

from tradepulse import __version__
from tradepulse.adapters.postgres_profiles import ProfileRepository
from tradepulse.adapters.postgres_rules import AlertRepository, RuleRepository
from tradepulse.api.auth import JwtVerifier, keys_from_settings
from tradepulse.api.context import ApiContext
from tradepulse.api.dashboard import dashboard_routers
from tradepulse.api.feeds import Feed, RedisFeed, RuleOwners
from tradepulse.api.ops import ops_router
from tradepulse.api.owners import postgres_rule_owners
from tradepulse.api.preferences import PreferenceCache, profile_lookup
from tradepulse.api.problems import AUTH_ENV, EXCEPTION_HANDLERS
from tradepulse.api.ranking import Rankings
from tradepulse.api.reader import HistoryPool, LiveReader
from tradepulse.api.routes import api_router, reject_unknown_params
from tradepulse.api.sources import CandleSource, LiveSource
from tradepulse.api.stores import AlertStore, OnRuleChange, ProfileStore, RuleStore
from tradepulse.api.timing import request_metrics
from tradepulse.api.ws import ws_endpoint
from tradepulse.api.ws_hub import Gateway
from tradepulse.config import Settings

log = logging.getLogger(__name__)

RULES_UPDATED = "rules.updated"
_PG_CONNECT_TIMEOUT_S = 3
#: How long the lifespan waits for the gateway's loops to end (their Redis reads block 1 s).
GATEWAY_STOP_S = 2.0


def postgres_rules(deps: ApiDeps, on_change: OnRuleChange) -> RuleStore:
    windows = [spec.name for spec in deps.settings.windows]
    return RuleRepository(deps.pg_dsn, windows=windows, on_change=on_change,
                          connect_timeout_s=_PG_CONNECT_TIMEOUT_S)  # fmt: skip


def postgres_alerts(deps: ApiDeps) -> AlertStore:
    return AlertRepository(deps.pg_dsn, connect_timeout_s=_PG_CONNECT_TIMEOUT_S)


def postgres_profiles(deps: ApiDeps) -> ProfileStore:
    return ProfileRepository(deps.pg_dsn, connect_timeout_s=_PG_CONNECT_TIMEOUT_S)


def redis_feed(deps: ApiDeps, client: aioredis.Redis) -> Feed:
    return RedisFeed(client, deps.settings.redis_prefix)


def postgres_owners(deps: ApiDeps) -> tuple[RuleOwners, Callable[[], None]]:
    """The gateway's rule owners (a cache over PostgreSQL) and how to close them."""
    owners, repo = postgres_rule_owners(deps.pg_dsn)
    return owners, repo.close


@dataclass(frozen=True)
class ApiDeps:
    """What the app needs: settings (windows, Redis prefix, JWT keys), a factory of the
    asyncio Redis client (called once, by the lifespan), the PostgreSQL DSN, and a factory
    per store (``api/stores.py``; replace them to run the API on other stores). The rule
    store's factory also gets the callback that announces a changed rule to the workers.

    ``live_factory`` / ``history_factory`` replace the Redis reader / the PostgreSQL pool
    (the demo's in-memory store);
    ``feed_factory``/``owners_factory`` replace the gateway's Redis feed and PostgreSQL owner
    lookup (the demo's in-memory store)."""

    settings: Settings
    redis_factory: Callable[[], aioredis.Redis]
    pg_dsn: str
    rule_store: Callable[[ApiDeps, OnRuleChange], RuleStore] = postgres_rules
    alert_store: Callable[[ApiDeps], AlertStore] = postgres_alerts
    profile_store: Callable[[ApiDeps], ProfileStore] = postgres_profiles
    live_factory: Callable[[], LiveSource] | None = None
    history_factory: Callable[[], CandleSource] | None = None
    feed_factory: Callable[[ApiDeps, aioredis.Redis], Feed] = redis_feed
    owners_factory: Callable[[ApiDeps], tuple[RuleOwners, Callable[[], None]]] = postgres_owners

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
    profiles = deps.profile_store(deps)
    return ApiContext(
        settings, live, history, JwtVerifier(keys), deps.rule_store(deps, publish),
        deps.alert_store(deps), profiles, Rankings(live, settings.api_cache_ttl_ms),
        PreferenceCache(profile_lookup(profiles), settings.ws_prefs_ttl_ms / 1000),
    )  # fmt: skip


async def _close(ctx: ApiContext) -> None:
    for close in (ctx.history.close, ctx.rules.close, ctx.alerts.close, ctx.profiles.close):
        await anyio.to_thread.run_sync(close)


_SWAGGER = "/vendor/swagger-ui"  # swagger-ui-dist from npm, served by ``dashboard.py``

_OPENAPI = OpenAPIConfig(
    title="tradepulse",
    version=__version__,
    # the interactive page at /schema (and /schema/swagger) loads its viewer from this
    # server, never from a CDN, so it works offline like the dashboard
    render_plugins=[SwaggerRenderPlugin(
        js_url=f"{_SWAGGER}/swagger-ui-bundle.js", css_url=f"{_SWAGGER}/swagger-ui.css",
        standalone_preset_js_url=f"{_SWAGGER}/swagger-ui-standalone-preset.js",
        path=["/", "/swagger"], favicon="",
    )],
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
        owners, close_owners = deps.owners_factory(deps)
        gateway = Gateway(deps.settings, ctx.live, deps.feed_factory(deps, client), owners,
                          rankings=ctx.rankings, preferences=ctx.preferences)  # fmt: skip
        app.state.gateway = gateway
        gateway_task = asyncio.create_task(gateway.run())
        try:
            yield
        finally:
            gateway.shutdown()
            gateway_task.cancel()
            await asyncio.wait([gateway_task], timeout=GATEWAY_STOP_S)
            await _close(ctx)
            await client.aclose()
            if not gateway_task.done():  # its blocked reads fail now that the client closed
                await asyncio.wait([gateway_task], timeout=GATEWAY_STOP_S)
            await anyio.to_thread.run_sync(close_owners)

    handlers: list[ControllerRouterHandler] = [api_router, ops_router, ws_endpoint]
    return Litestar(
        route_handlers=[*handlers, *dashboard_routers()],
        dependencies={"ctx": Provide(_context, sync_to_thread=False)},
        before_request=reject_unknown_params,
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[request_metrics],
        lifespan=[lifespan],
        openapi_config=_OPENAPI,
    )
