"""The users' alert preferences in the WebSocket gateway without a network: the preference
cache (reads, saves in this process, failures, forgetting) and a session's decisions (muted
channel, muted rule, ``min_interval_s`` in the order alerts are sent)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

from tradepulse import metrics
from tradepulse.api.auth import Principal
from tradepulse.api.feeds import AlertEntry, StreamId
from tradepulse.api.preferences import EVERY_ALERT, AlertFilter, PreferenceCache
from tradepulse.api.ws_protocol import SubscribeAlerts
from tradepulse.api.ws_session import Session
from tradepulse.config import Settings
from tradepulse.core.alerts import Alert
from tradepulse.core.profiles import AlertPreferences

MUTE_R1 = AlertPreferences(muted_rules=("r1",))
MUTE_WS = AlertPreferences(muted_channels=("websocket",))


class Store:
    """A lookup that records what it was asked and answers from ``prefs``."""

    def __init__(self, prefs: dict[str, AlertPreferences]) -> None:
        self.prefs = prefs
        self.asked: list[list[str]] = []
        self.fail = False

    def __call__(self, users: Sequence[str]) -> dict[str, AlertPreferences]:
        self.asked.append(list(users))
        if self.fail:
            raise OSError("store down")
        return {u: self.prefs[u] for u in users if u in self.prefs}


def test_cache_reads_a_user_once_and_a_user_without_a_profile_gets_every_alert() -> None:
    store = Store({"alice": MUTE_R1})
    cache = PreferenceCache(store, ttl_s=1)

    async def scenario() -> None:
        await asyncio.gather(*(cache.ensure("alice") for _ in range(5)), cache.ensure("bob"))
        await cache.ensure("alice")

    asyncio.run(scenario())
    assert sorted(store.asked) == [["alice"], ["bob"]]
    assert cache.of("alice") == AlertFilter(frozenset(), frozenset({"r1"}), 0)
    assert cache.of("bob") == EVERY_ALERT
    assert cache.of("carol") == EVERY_ALERT


def test_cache_refresh_reads_the_users_again_and_forgets_the_others() -> None:
    store = Store({"alice": MUTE_R1, "bob": MUTE_WS})
    cache = PreferenceCache(store, ttl_s=1)

    async def scenario() -> None:
        await cache.ensure("alice")
        await cache.ensure("bob")
        store.prefs["alice"] = AlertPreferences(min_interval_s=5)
        await cache.refresh(lambda: ["alice"])

    asyncio.run(scenario())
    assert store.asked[-1] == ["alice"]
    assert cache.of("alice").min_interval_ms == 5_000
    assert cache.of("bob") == EVERY_ALERT  # forgotten: read again when they subscribe


def test_a_save_in_this_process_applies_at_once_and_a_read_started_before_it_keeps_it() -> None:
    release = threading.Event()
    old = {"alice": MUTE_R1}

    def slow(users: Sequence[str]) -> dict[str, AlertPreferences]:
        release.wait(5)
        return {u: old[u] for u in users if u in old}

    cache = PreferenceCache(slow, ttl_s=1)

    async def scenario() -> None:
        read = asyncio.create_task(cache.refresh(lambda: ["alice"]))
        await asyncio.sleep(0.05)  # the read has the old profile in hand
        cache.put("alice", AlertPreferences())
        assert cache.of("alice") == EVERY_ALERT
        release.set()
        await read

    asyncio.run(scenario())
    assert cache.of("alice") == EVERY_ALERT


def test_a_failed_read_keeps_the_last_known_and_the_next_refresh_recovers() -> None:
    store = Store({"alice": MUTE_R1})
    cache = PreferenceCache(store, ttl_s=1)

    async def scenario() -> None:
        await cache.ensure("alice")
        store.fail = True
        store.prefs["alice"] = AlertPreferences()
        await cache.refresh(lambda: ["alice"])
        assert cache.of("alice").muted_rules == {"r1"}  # last known
        await cache.ensure("bob")  # never read: every alert, no second try per subscribe
        await cache.ensure("bob")
        assert cache.of("bob") == EVERY_ALERT
        store.fail = False
        store.prefs["bob"] = MUTE_WS
        await cache.refresh(lambda: ["alice", "bob"])

    asyncio.run(scenario())
    assert store.asked.count(["bob"]) == 1
    assert cache.of("alice") == EVERY_ALERT
    assert cache.of("bob").muted_channels == {"websocket"}


# -- a session's decisions -----------------------------------------------------------------


def entry(n: int, rule: str = "r1", token: str = "A", t_ms: int = 0) -> AlertEntry:
    alert = Alert(f"id{n}", rule, "name", 1, token, 1_750_000_000_000 + t_ms, {}, {}, 0, "")
    return AlertEntry(StreamId(1_750_000_000_000, n), alert, b"{}")


def session(prefs: AlertPreferences, client: str = "websocket") -> Session:
    filters = {"alice": AlertFilter.of(prefs)}
    s = Session(Principal("alice"), "alice", Settings(), client=client,  # type: ignore[arg-type]
                preferences=lambda user: filters.get(user, EVERY_ALERT))  # fmt: skip
    s.alerts = SubscribeAlerts()
    return s


def sent(s: Session) -> list[str]:
    out = []
    while len(s.outbox):
        out.append(asyncio.run(s.outbox.get())[0])
    return out


def withheld(reason: str) -> float:
    return float(metrics.WS_ALERTS_WITHHELD.labels(reason)._value.get())


def test_session_withholds_muted_rules_and_muted_channels_and_counts_them() -> None:
    before = withheld("muted_rule"), withheld("muted_channel")
    muted_rule = session(MUTE_R1)
    assert not muted_rule.wants(entry(1, "r1"), "alice")
    assert muted_rule.wants(entry(2, "r2"), "alice")
    assert not session(MUTE_WS).wants(entry(3, "r2"), "alice")
    assert session(MUTE_WS, client="dashboard").wants(entry(4, "r2"), "alice")
    assert not session(AlertPreferences(muted_channels=("dashboard",)), "dashboard").wants(
        entry(5, "r2"), "alice")  # fmt: skip
    assert (withheld("muted_rule"), withheld("muted_channel")) == (before[0] + 1, before[1] + 2)


def test_session_min_interval_follows_trigger_times_in_the_order_alerts_are_sent() -> None:
    s = session(AlertPreferences(min_interval_s=60))
    s.pending = []  # a resume: live alerts wait while the replay runs
    s.offer_alert(entry(4, token="A", t_ms=70_000), "live-4")
    s.offer_alert(entry(5, token="A", t_ms=80_000), "live-5")
    for e, text in ((entry(1, token="A"), "r-1"), (entry(2, token="A", t_ms=30_000), "r-2"),
                    (entry(3, token="B", t_ms=30_000), "r-3"),
                    (entry(4, token="A", t_ms=70_000), "r-4")):  # fmt: skip
        s.deliver(e, text)
    s.end_replay()
    # r-2: 30 s after r-1; entry 4 replayed then offered live (sent once); live-5: 10 s
    assert sent(s) == ["r-1", "r-3", "r-4"]
