"""Building the API for tests: settings against the real Redis and PostgreSQL, bearer
headers signed with a test secret, and the rule/alert data the tests share."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from litestar.testing import TestClient

from tradepulse.adapters.redis_store import RedisStore, TokenUpdate
from tradepulse.api.app import ApiDeps, create_app
from tradepulse.api.auth import issue_token
from tradepulse.config import Settings
from tradepulse.core.alerts import Alert
from tradepulse.core.trade import Trade
from tradepulse.core.windows import TokenWindows, parse_windows

REDIS_URL = os.environ.get("TRADEPULSE_REDIS_URL", "redis://127.0.0.1:6379/0")
SECRET = "tradepulse-test-secret-of-enough-bytes"
WINDOWS = parse_windows("1min,5min")


def api_settings(prefix: str, pg_dsn: str, **changes: Any) -> Settings:
    fields: dict[str, Any] = {"windows": WINDOWS, "redis_url": REDIS_URL, "redis_prefix": prefix,
                              "pg_dsn": pg_dsn, "jwt_secret": SECRET}  # fmt: skip
    return Settings(**(fields | changes))


@contextmanager
def api_client(settings: Settings) -> Iterator[TestClient]:  # type: ignore[type-arg]
    with TestClient(create_app(ApiDeps.from_settings(settings))) as client:
        yield client


def bearer(user: str, *, admin: bool = False, secret: str = SECRET) -> dict[str, str]:
    """Valid for a day: modules make their headers at collection, long before they run."""
    token = issue_token(secret, "HS256", user, admin=admin, ttl_s=86_400, now_s=int(time.time()))
    return {"Authorization": f"Bearer {token}"}


def rule(name: str, value: float = 20, **extra: Any) -> dict[str, Any]:
    """A valid rule definition over the test windows."""
    return {"name": name, "cooldown": 60,
            "conditions": [{"metric": "window.5min.buy_count", "op": ">", "value": value}],
            **extra}  # fmt: skip


def alert(rule_id: str, token: str, triggered_ms: int, n: int = 0) -> Alert:
    return Alert(f"alert-{rule_id[:8]}-{token}-{triggered_ms}-{n}", rule_id, "r", 1, token,
                 triggered_ms, {"window.5min.buy_count": 21 + n},
                 {"5min": (triggered_ms - 300_000, triggered_ms)}, 5, f"trace-{n}")  # fmt: skip


def write_tokens(client: redis.Redis, prefix: str, newest_ms: dict[str, int]) -> None:
    """One trade per token at its ``newest_ms``, written by the workers' path (``RedisStore``),
    so ``tokens:active`` scores them by that time."""
    store = RedisStore(client, prefix=prefix)
    updates = []
    for token, ts_ms in newest_ms.items():
        windows = TokenWindows(WINDOWS)
        windows.add(Trade(token, "w", True, 1.0, 10.0, 0.5, 5.0, ts_ms, "tx", 0), ts_ms)
        updates.append(TokenUpdate(token, windows.sync_view(), windows.stats(ts_ms),
                                   windows.newest_ms, ts_ms))  # fmt: skip
    assert store.write(updates) == []
