"""The REST token endpoints against the real Redis, seeded through the workers' write path
(``TokenWindows`` + ``RedisStore.write``): what the API answers is what was written."""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator

import msgspec
import pytest
import redis
import redis.asyncio as aioredis
from litestar.testing import TestClient

from tradepulse.adapters.redis_store import RedisStore, TokenUpdate
from tradepulse.api.app import ApiDeps, create_app
from tradepulse.api.reader import LiveReader
from tradepulse.config import Settings
from tradepulse.core.bars import Bar
from tradepulse.core.trade import Trade
from tradepulse.core.windows import TokenWindows, WindowStats, parse_windows

SPECS = parse_windows("1min,5min,1hour")
T_MS = 1_750_000_000_000
TOKENS = ("ALPHA", "BRAVO", "CHARLIE", "DELTA", "ECHO", "FOXTROT", "GOLF")
REDIS_URL = os.environ.get("TRADEPULSE_REDIS_URL", "redis://127.0.0.1:6379/0")


def token_trades(token: str, seed: int) -> list[Trade]:
    """Trades over the last ~50 minutes before ``T_MS``; GOLF's all older than 2 minutes
    (so its 1min window is empty and its 1min vwap null)."""
    rnd = random.Random(seed)
    newest = T_MS - (150_000 if token == "GOLF" else rnd.randrange(0, 30_000))
    out = []
    for i in range(rnd.randrange(5, 40)):
        ts = newest - rnd.randrange(0, 3_000_000) if i else newest
        amount, price = rnd.uniform(1, 1e4), rnd.uniform(1e-6, 1e-3)
        out.append(Trade(token, f"w{rnd.randrange(9)}", rnd.random() < 0.5, 0.1, amount, price,
                         amount * price, ts, f"tx{i}", 0))  # fmt: skip
    return sorted(out, key=lambda t: t.ts_ms)


def seed(client: redis.Redis, prefix: str) -> dict[str, dict[str, WindowStats]]:
    """Every token written in one batch; ALPHA also with a forming bar and indicators."""
    store = RedisStore(client, prefix=prefix)
    updates, written = [], {}
    for i, token in enumerate(TOKENS):
        tw = TokenWindows(SPECS)
        for trade in token_trades(token, i):
            tw.add(trade, trade.ts_ms)
        stats = tw.stats(T_MS)
        extra: dict[str, object] = {}
        if token == "ALPHA":
            bar = Bar(
                "ALPHA", T_MS - T_MS % 60_000, 1.0, 2.0, 0.5, 1.5, 10.0, 15.0, 9.0, 6.0, 3, 1.5
            )
            extra = {"forming": bar, "indicators": {"rsi_14": 55.5, "ema_20": None}}
        updates.append(TokenUpdate(token, tw.sync_view(), stats, tw.newest_ms, T_MS, **extra))
        written[token] = stats
    assert store.write(updates) == []
    return written


def settings(prefix: str, redis_url: str = REDIS_URL) -> Settings:
    return Settings(windows=SPECS, redis_url=redis_url, redis_prefix=prefix,
                    pg_dsn="postgresql://postgres@127.0.0.1:5432/test")  # fmt: skip


@pytest.fixture
def written(redis_client: redis.Redis, redis_prefix: str) -> dict[str, dict[str, WindowStats]]:
    return seed(redis_client, redis_prefix)


@pytest.fixture
def api(redis_prefix: str) -> Iterator[TestClient]:  # type: ignore[type-arg]
    with TestClient(create_app(ApiDeps.from_settings(settings(redis_prefix)))) as client:
        yield client


def expected_order(written: dict[str, dict[str, WindowStats]], window: str, stat: str,
                   descending: bool) -> list[str]:  # fmt: skip
    """Tokens by the statistic as written (ties by name), null values last."""
    valued = [(getattr(s[window], stat), t) for t, s in written.items()
              if getattr(s[window], stat) is not None]  # fmt: skip
    valued.sort(key=lambda p: (-p[0] if descending else p[0], p[1]))
    nulls = sorted(t for t, s in written.items() if getattr(s[window], stat) is None)
    return [t for _, t in valued] + nulls


@pytest.mark.parametrize(
    ("sort", "window", "stat", "descending"),
    [
        (None, "5min", "total_volume", True),
        ("window.5min.total_volume", "5min", "total_volume", False),
        ("-window.1hour.trade_count", "1hour", "trade_count", True),
        ("window.1hour.trade_count", "1hour", "trade_count", False),
        ("window.1min.vwap", "1min", "vwap", False),
        ("-window.1min.vwap", "1min", "vwap", True),
    ],
)
def test_token_list_sorted_by_statistic_matches_written_values(
    api: TestClient,  # type: ignore[type-arg]
    written: dict[str, dict[str, WindowStats]],
    sort: str | None,
    window: str,
    stat: str,
    descending: bool,
) -> None:
    params = {"sort": sort} if sort else {}
    page = api.get("/api/v1/tokens", params=params).json()
    assert [item["token"] for item in page["items"]] == expected_order(
        written, window, stat, descending
    )
    assert page["total"] == len(TOKENS)
    assert page["next_cursor"] is None
    for item in page["items"]:
        assert item["windows"] == msgspec.to_builtins(written[item["token"]])


def test_token_list_pages_cover_every_token_exactly_once(
    api: TestClient,  # type: ignore[type-arg]
    written: dict[str, dict[str, WindowStats]],
) -> None:
    seen, cursor = [], None
    while True:
        params = {"sort": "-window.1hour.total_volume", "limit": "3"}
        if cursor:
            params["cursor"] = cursor
        page = api.get("/api/v1/tokens", params=params).json()
        assert len(page["items"]) <= 3
        seen += [item["token"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == expected_order(written, "1hour", "total_volume", True)


def test_token_detail_equals_what_the_store_reads(
    api: TestClient,  # type: ignore[type-arg]
    redis_client: redis.Redis,
    redis_prefix: str,
    written: dict[str, dict[str, WindowStats]],
) -> None:
    store = RedisStore(redis_client, prefix=redis_prefix)
    body = api.get("/api/v1/tokens/ALPHA").json()
    assert body["windows"] == msgspec.to_builtins(store.read_stats("ALPHA"))
    assert body["last_update"] == redis_client.get(store.keys("ALPHA")[3]).decode()
    assert body["last_trade_ms"] == redis_client.zscore(store.active_key, "ALPHA")
    assert body["bar"]["close"] == 1.5
    assert body["indicators"] == {"rsi_14": 55.5, "ema_20": None}
    other = api.get("/api/v1/tokens/BRAVO").json()
    assert (other["bar"], other["indicators"]) == (None, None)


def test_reader_keys_are_the_store_keys(redis_client: redis.Redis, redis_prefix: str) -> None:
    store = RedisStore(redis_client, prefix=redis_prefix)
    reader = LiveReader(aioredis.Redis(), redis_prefix)  # not connected: key names only
    assert reader.active_key() == store.active_key
    assert reader.token_keys("X") == (store.keys("X")[2], store.keys("X")[3],
                                      *store.bar_keys("X")[1:])  # fmt: skip


def test_unknown_token_is_404_problem(api: TestClient) -> None:  # type: ignore[type-arg]
    response = api.get("/api/v1/tokens/NOPE")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "NOPE" in response.json()["detail"]


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("bogus=1", "bogus"),
        ("sort=window.5min.total_volume&extra=2", "extra"),
        ("sort=window.7min.total_volume", "sort"),
        ("sort=window.5min.nonsense", "sort"),
        ("sort=volume", "sort"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=ten", "limit"),
        ("cursor=%%%", "cursor"),
        ("cursor=eyJ4IjoxfQ", "cursor"),
    ],
)
def test_bad_list_parameter_is_400_problem_naming_it(
    api: TestClient,  # type: ignore[type-arg]
    written: dict[str, dict[str, WindowStats]],
    query: str,
    param: str,
) -> None:
    response = api.get(f"/api/v1/tokens?{query}")
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == 400
    assert [p["name"] for p in body["invalid_params"]] == [param]


def test_cursor_of_another_sort_is_400(
    api: TestClient,  # type: ignore[type-arg]
    written: dict[str, dict[str, WindowStats]],
) -> None:
    cursor = api.get("/api/v1/tokens?limit=2").json()["next_cursor"]
    response = api.get("/api/v1/tokens", params={"limit": "2", "cursor": cursor,
                                                 "sort": "window.1min.trade_count"})  # fmt: skip
    assert response.status_code == 400
    assert response.json()["invalid_params"][0]["name"] == "cursor"


def test_redis_down_is_503_problem_and_not_ready() -> None:
    down = settings("x:", redis_url="unix:///nonexistent/tradepulse-test.sock")
    with TestClient(create_app(ApiDeps.from_settings(down))) as client:
        response = client.get("/api/v1/tokens")
        assert response.status_code == 503
        assert response.headers["content-type"].startswith("application/problem+json")
        ready = client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["redis"] is False


@pytest.mark.parametrize(
    ("where", "keep"),
    [
        (["window.5min.trade_count>=3"], lambda s: s["5min"].trade_count >= 3),
        (["window.1hour.total_volume<1000000", "window.1min.trade_count!=0"],
         lambda s: s["1hour"].total_volume < 1_000_000 and s["1min"].trade_count != 0),
        (["window.1min.vwap>0"], lambda s: s["1min"].vwap is not None and s["1min"].vwap > 0),
        (["window.5min.buy_count == 2"], lambda s: s["5min"].buy_count == 2),
    ],
)
def test_token_list_where_filters_keep_exactly_the_matching_tokens(
    api: TestClient,  # type: ignore[type-arg]
    written: dict[str, dict[str, WindowStats]],
    where: list[str],
    keep: Callable[[dict[str, WindowStats]], bool],
) -> None:
    page = api.get("/api/v1/tokens", params={"where": where, "limit": "500"}).json()
    order = expected_order(written, "5min", "total_volume", True)
    expected = [t for t in order if keep(written[t])]
    assert [item["token"] for item in page["items"]] == expected
    assert page["total"] == len(expected)


def test_token_list_q_is_a_case_insensitive_substring_of_the_address(
    api: TestClient,  # type: ignore[type-arg]
    written: dict[str, dict[str, WindowStats]],
) -> None:
    needle = sorted(written)[0][-3:].upper()
    page = api.get("/api/v1/tokens", params={"q": needle}).json()
    expected = [t for t in expected_order(written, "5min", "total_volume", True)
                if needle.lower() in t.lower()]  # fmt: skip
    assert expected and [item["token"] for item in page["items"]] == expected


def test_token_list_filtered_pages_cover_the_matches_once_and_bind_the_cursor(
    api: TestClient,  # type: ignore[type-arg]
    written: dict[str, dict[str, WindowStats]],
) -> None:
    where = "window.1hour.trade_count>=1"
    seen, cursor = [], None
    while True:
        params = {"where": where, "limit": "2", **({"cursor": cursor} if cursor else {})}
        page = api.get("/api/v1/tokens", params=params).json()
        seen += [item["token"] for item in page["items"]]
        if page["next_cursor"] is None:
            break
        cursor = page["next_cursor"]
        other = api.get("/api/v1/tokens", params={"where": "window.1hour.trade_count>=2",
                                                  "cursor": cursor})  # fmt: skip
        assert other.status_code == 400
    assert seen == [t for t in expected_order(written, "5min", "total_volume", True)
                    if written[t]["1hour"].trade_count >= 1]  # fmt: skip


@pytest.mark.parametrize(
    "where",
    ["window.5min.total_volume", "window.2min.trade_count>1", "window.5min.nope>1",
     "window.5min.trade_count>x", "window.5min.trade_count>nan", "price>1"],
)
def test_token_list_bad_where_is_400_naming_where(
    api: TestClient,  # type: ignore[type-arg]
    where: str,
) -> None:
    response = api.get("/api/v1/tokens", params={"where": where})
    assert response.status_code == 400, response.text
    assert [p["name"] for p in response.json()["invalid_params"]] == ["where"]
