"""``POST /api/v1/rules/dry-run`` against the real Redis: the retained trades are written by
the workers' path (``TokenWindows`` + ``RedisStore.write``, in two batches as a worker
writes them), and the alerts answered are compared with a brute-force scan computed by
plain loops over the trades written."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from litestar.testing import TestClient

from tests.support.api import api_client, api_settings, bearer
from tradepulse.adapters.redis_store import RedisStore, TokenUpdate
from tradepulse.core.trade import Trade
from tradepulse.core.windows import TokenWindows, parse_windows

SPECS = parse_windows("1min,5min,15min")
T_MS = 1_750_000_004_321  # the workers' last evaluation time ("now")
MID_MS = T_MS - 300_000  # the first of the two writes
TOKENS = {"ALPHA": 0.5, "BRAVO": 0.2, "CHARLIE": 0.05}  # trades per second
URL = "/api/v1/rules/dry-run"
ALICE = bearer("alice")


def make_trades(token: str, rate_per_s: float, seed: int) -> list[Trade]:
    """Trades in ``[T - 14 min, T]``, in time order (some at equal times)."""
    rnd = random.Random(seed)
    times = sorted(rnd.randrange(T_MS - 840_000, T_MS + 1) for _ in range(int(840 * rate_per_s)))
    return [Trade(token, f"w{rnd.randrange(5)}", rnd.random() < 0.6, 0.1, 100.0,
                  1.0 + rnd.random(), 100.0, ts, f"{token}-{i}", 0)
            for i, ts in enumerate(times)]  # fmt: skip


def write(client: redis.Redis, prefix: str) -> dict[str, list[Trade]]:
    """Every token written at ``MID_MS`` (its trades by then), then at ``T_MS``."""
    store = RedisStore(client, prefix=prefix, ttl_s=900)
    written = {t: make_trades(t, rate, i) for i, (t, rate) in enumerate(TOKENS.items())}
    windows = {t: TokenWindows(SPECS) for t in written}
    for since_ms, at_ms in ((0, MID_MS), (MID_MS, T_MS)):
        updates = []
        for token, tw in windows.items():
            for trade in written[token]:
                if since_ms < trade.ts_ms <= at_ms:
                    tw.add(trade, at_ms)
            stats = tw.stats(at_ms)
            updates.append(TokenUpdate(token, tw.sync_view(), stats, tw.newest_ms, at_ms))
        assert store.write(updates) == []
        for tw in windows.values():
            tw.mark_synced()
    return written


def brute_force(trades: dict[str, list[Trade]], *, k: int, cooldown_ms: int, edge: bool,
                from_ms: int, every_ms: int) -> list[tuple[str, int, int]]:  # fmt: skip
    """``(token, triggered_ms, 1min trade count)`` of ``window.1min.trade_count >= k`` at
    every multiple of ``every_ms`` in ``[from_ms, T]``: a token is scanned once it has a
    trade; level rules fire when the count holds and the last firing is ``cooldown_ms``
    old; edge rules also need the previous scan of the token not to hold (none: no)."""
    fired: list[tuple[str, int, int]] = []
    last_fire: dict[str, int] = {}
    previous: dict[str, bool] = {}
    first = -(-from_ms // every_ms) * every_ms
    for m in range(first, T_MS + 1, every_ms):
        for token in sorted(trades):
            if not any(t.ts_ms <= m for t in trades[token]):
                continue
            count = sum(1 for t in trades[token] if m - 60_000 < t.ts_ms <= m)
            holds = count >= k
            was = previous.get(token)
            previous[token] = holds
            if not holds or (edge and was is not False):
                continue
            if token in last_fire and m < last_fire[token] + cooldown_ms:
                continue
            last_fire[token] = m
            fired.append((token, m, count))
    return fired


def definition(k: int, cooldown_s: int, trigger: str = "level", **extra: Any) -> dict[str, Any]:
    return {"name": "busy", "cooldown": cooldown_s, "trigger": trigger,
            "conditions": {"all": [{"metric": "window.1min.trade_count", "op": ">=",
                                    "value": k}]}, **extra}  # fmt: skip


@pytest.fixture
def written(redis_client: redis.Redis, redis_prefix: str) -> dict[str, list[Trade]]:
    return write(redis_client, redis_prefix)


@pytest.fixture
def api(redis_prefix: str) -> Iterator[TestClient]:  # type: ignore[type-arg]
    settings = api_settings(redis_prefix, "postgresql://postgres@127.0.0.1:5432/test",
                            windows=SPECS)  # fmt: skip
    with api_client(settings) as client:
        yield client


def dry_run(api: TestClient, body: dict[str, Any]) -> dict[str, Any]:  # type: ignore[type-arg]
    response = api.post(URL, json=body, headers=ALICE)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def triples(answer: dict[str, Any]) -> list[tuple[str, int, int]]:
    return [(a["token"], a["triggered_ms"], a["values"]["window.1min.trade_count"])
            for a in answer["alerts"]]  # fmt: skip


@pytest.mark.parametrize(
    ("k", "cooldown_s", "trigger", "every"),
    [(20, 60, "level", "10s"), (8, 30, "level", "5s"), (20, 0, "edge", "10s"),
     (3, 120, "level", "1s")],
)  # fmt: skip
def test_dry_run_alerts_match_a_brute_force_scan_of_the_written_trades(
    api: TestClient,  # type: ignore[type-arg]
    written: dict[str, list[Trade]],
    k: int,
    cooldown_s: int,
    trigger: str,
    every: str,
) -> None:
    body = {"rule": definition(k, cooldown_s, trigger), "tokens": sorted(TOKENS),
            "since": "10min", "scan_interval": every}  # fmt: skip
    answer = dry_run(api, body)
    every_ms = int(every[:-1]) * 1000
    expected = brute_force(written, k=k, cooldown_ms=cooldown_s * 1000, edge=trigger == "edge",
                           from_ms=T_MS - 600_000, every_ms=every_ms)  # fmt: skip
    assert expected  # the case fires at all
    assert triples(answer) == expected
    assert answer["counts"] == {t: sum(1 for e in expected if e[0] == t)
                                for t in {e[0] for e in expected}}  # fmt: skip
    first = -(-(T_MS - 600_000) // every_ms) * every_ms
    assert answer["scans"] == len(range(first, T_MS + 1, every_ms))
    assert (answer["from_ms"], answer["to_ms"]) == (T_MS - 600_000, T_MS)
    assert answer["tokens"] == len(TOKENS)
    assert answer["truncated"] is False


def test_dry_run_without_tokens_runs_over_the_most_active_ones(
    api: TestClient,  # type: ignore[type-arg]
    written: dict[str, list[Trade]],
) -> None:
    answer = dry_run(api, {"rule": definition(20, 60), "scan_interval": "10s"})
    expected = brute_force(written, k=20, cooldown_ms=60_000, edge=False,
                           from_ms=T_MS - 900_000, every_ms=10_000)  # fmt: skip
    assert answer["tokens"] == len(TOKENS)
    assert triples(answer) == expected


def test_dry_run_of_a_rule_with_symbols_reads_only_those_tokens(
    api: TestClient,  # type: ignore[type-arg]
    written: dict[str, list[Trade]],
) -> None:
    body = {"rule": definition(3, 60, symbols=["BRAVO"]), "scan_interval": "10s"}
    answer = dry_run(api, body)
    expected = brute_force({"BRAVO": written["BRAVO"]}, k=3, cooldown_ms=60_000, edge=False,
                           from_ms=T_MS - 900_000, every_ms=10_000)  # fmt: skip
    assert answer["tokens"] == 1
    assert expected and triples(answer) == expected


def test_dry_run_beyond_the_alert_cap_lists_500_and_counts_them_all(
    api: TestClient,  # type: ignore[type-arg]
    written: dict[str, list[Trade]],
) -> None:
    body = {"rule": definition(1, 0), "since": "10min", "scan_interval": "1s"}
    answer = dry_run(api, body)
    expected = brute_force(written, k=1, cooldown_ms=0, edge=False, from_ms=T_MS - 600_000,
                           every_ms=1_000)  # fmt: skip
    assert len(expected) > 500
    assert answer["truncated"] is True
    assert triples(answer) == expected[:500]
    assert sum(answer["counts"].values()) == len(expected)
    assert any("500" in note for note in answer["notes"])


def test_dry_run_of_an_indicator_rule_says_indicators_stay_cold(
    api: TestClient,  # type: ignore[type-arg]
    written: dict[str, list[Trade]],
) -> None:
    rule = {"name": "rsi", "cooldown": 60,
            "conditions": {"all": [{"metric": "ind.ema_50", "op": ">", "value": 0}]}}  # fmt: skip
    answer = dry_run(api, {"rule": rule, "scan_interval": "10s"})
    assert answer["alerts"] == []  # 50 bars cannot be built from 15 minutes of trades
    assert answer["scans"] == len(range(T_MS - 900_000 + 5_679, T_MS + 1, 10_000))  # :10 s
    assert any(note.startswith("ind.*") for note in answer["notes"])


def test_dry_run_of_unknown_tokens_scans_nothing(
    api: TestClient,  # type: ignore[type-arg]
    written: dict[str, list[Trade]],
) -> None:
    answer = dry_run(api, {"rule": definition(1, 0), "tokens": ["NOPE"]})
    assert (answer["alerts"], answer["scans"], answer["tokens"]) == ([], 0, 0)


@pytest.mark.parametrize(
    ("body", "name"),
    [
        ({"rule": definition(1, 0), "since": "16min"}, "$.since"),
        ({"rule": definition(1, 0), "since": "soon"}, "$.since"),
        ({"rule": definition(1, 0), "scan_interval": "500ms"}, "$.scan_interval"),
        ({"rule": definition(1, 0), "since": "1min", "scan_interval": "2min"},
         "$.scan_interval"),
        ({"rule": definition(1, 0), "tokens": [f"T{i}" for i in range(51)]}, "$.tokens"),
        ({"rule": definition(1, 0), "tokens": []}, "$.tokens"),
        ({"rule": definition(1, 0), "colour": "red"}, "$"),
        ({"rule": [1]}, "$.rule"),
        ({"tokens": ["ALPHA"]}, "$"),
    ],
)  # fmt: skip
def test_dry_run_bad_body_is_422_naming_the_field(
    api: TestClient,  # type: ignore[type-arg]
    body: dict[str, Any],
    name: str,
) -> None:
    response = api.post(URL, json=body, headers=ALICE)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert [p["name"] for p in response.json()["invalid_params"]] == [name]


def test_dry_run_of_an_invalid_rule_is_422_with_its_paths_as_post_rules(
    api: TestClient,  # type: ignore[type-arg]
) -> None:
    rule = {"name": "", "cooldown": 1,
            "conditions": {"all": [{"metric": "window.2min.trade_count", "op": "=>",
                                    "value": 1}]}}  # fmt: skip
    response = api.post(URL, json={"rule": rule}, headers=ALICE)
    assert response.status_code == 422
    names = {p["name"] for p in response.json()["invalid_params"]}
    assert names == {"name", "conditions.all[0].metric", "conditions.all[0].op"}


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-token"}, bearer("alice", secret="another-secret-x" * 3)],
)
def test_dry_run_without_a_valid_token_is_401(
    api: TestClient,  # type: ignore[type-arg]
    headers: dict[str, str],
) -> None:
    response = api.post(URL, json={"rule": definition(1, 0)}, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
