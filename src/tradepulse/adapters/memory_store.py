"""The embedded store of ``tradepulse demo``: what a worker writes to Redis and what the
persisters write to PostgreSQL, kept in this process's memory.

One ``MemoryStore`` plays three parts, with the method names and return types of the real
adapters so that the same service and API code runs on it:

* the worker's store (``Pipeline``'s ``LiveStore`` port, as ``RedisStore``): ``write``
  takes the same ``TokenUpdate`` batches. It keeps each token's window statistics,
  retained trades (as the ``trades`` list: each update's ``SyncView`` applied),
  ``last_update``, forming bar and indicators, the ``tokens:active`` index, and appends
  final bars to the 1-minute history (an upsert on ``(token, open_ms)``, as ``bars_1m``)
  and alerts to the alert store. Nothing survives the process, so ``load_many`` finds no
  token to restore;
* the source of the API's live reader: ``live_tokens``, ``live_token`` and
  ``retained_trades`` return what ``LiveReader`` decodes from Redis
  (``api/memory_reader.py`` wraps them in the ``LiveReader`` methods ``ping``,
  ``summaries``, ``detail``, ``recent_trades``);
* the API's history (``HistoryPool``): ``candles``, ``check``, ``close``.

Expiry follows the Redis key TTLs, measured on the injected wall clock against the time of
the write: a token's statistics after ``ttl_ms`` (the longest window), its indicators after
10 minutes; the forming bar is replaced (or removed) by every write, as the ``livebar`` key.

Writers and readers may run on different threads: every access holds one lock. Listeners
(``subscribe``) are called on the writer's thread, after the lock is released, with a
``Notice`` per token written and per alert (what Redis publishes on its channels).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Literal

import msgspec

from tradepulse.adapters.memory_rules import MemoryAlertStore
from tradepulse.adapters.postgres import TIMEFRAMES_MS, Candle, bucket_range
from tradepulse.adapters.redis_store import Restored, TokenUpdate
from tradepulse.core.alerts import Alert
from tradepulse.core.bars import Bar
from tradepulse.core.trade import Trade
from tradepulse.core.types import MS_PER_DAY, TokenId, TsMs
from tradepulse.core.windows import SyncView, WindowSpec, WindowStats

log = logging.getLogger(__name__)

INDICATORS_TTL_MS = 600_000  # as the ``ind:{addr}`` key
DEFAULT_HISTORY_MS = MS_PER_DAY  # 1-minute bars kept per token


class Notice(msgspec.Struct, frozen=True):
    """A change: ``token`` (a token was written) or ``alert`` (``alert`` is set)."""

    kind: Literal["token", "alert"]
    token: TokenId
    alert: Alert | None = None


Listener = Callable[[Notice], None]


class LiveToken(msgspec.Struct, frozen=True):
    """One token's live keys as a reader sees them; ``indicators`` null once expired."""

    token: TokenId
    newest_ms: TsMs
    last_update: str
    stats: dict[str, WindowStats]
    forming: Bar | None
    indicators: dict[str, float | None] | None


class _Token(msgspec.Struct):
    """What Redis holds of one token (its keys), with the wall time of its last write."""

    stats: dict[str, WindowStats]
    newest_ms: TsMs
    written_ms: TsMs
    last_update: str
    forming: Bar | None = None
    indicators: dict[str, float | None] | None = None
    indicators_ms: TsMs = 0
    trades: list[Trade] = msgspec.field(default_factory=list)  # the retained trades
    base: int = 0  # sequence number of ``trades[0]``


def _synced(trades: list[Trade], base: int, view: SyncView) -> int:
    """Apply ``view`` to ``trades`` (sequence number of the head: ``base``) in place, as
    the Redis script does; returns the new base (``view.head``). The memory never loses
    trades, so it always holds ``[head, replace_from)``."""
    if view.replace_from == view.head:
        trades.clear()
        base = view.head
    del trades[max(0, view.replace_from - base) :]
    trades.extend(view.trades)
    del trades[: max(0, view.head - base)]
    return view.head


def _rfc3339(ts_ms: TsMs) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


class MemoryStore:
    """Live state, bar history and alerts in memory (see the module docstring).

    ``now_ms`` is the wall clock that expiry is measured on; ``ttl_ms`` the lifetime of a
    token not written (the longest window); ``history_ms`` how far back final bars are
    kept (older ones are dropped when a newer bar of the token arrives)."""

    def __init__(
        self,
        now_ms: Callable[[], TsMs],
        *,
        ttl_ms: int = 3_600_000,
        history_ms: int = DEFAULT_HISTORY_MS,
        alerts: MemoryAlertStore | None = None,
    ) -> None:
        self._now_ms = now_ms
        self._ttl_ms = ttl_ms
        self._history_ms = history_ms
        self._lock = threading.Lock()
        self._tokens: dict[TokenId, _Token] = {}
        self._bars: dict[TokenId, dict[TsMs, Bar]] = {}
        self._watermarks: dict[int, TsMs] = {}
        self._listeners: list[Listener] = []
        self.alerts = alerts if alerts is not None else MemoryAlertStore()
        #: As ``RedisStore.group_watermarks``: one process is the whole group.
        self.group_watermarks: dict[int, TsMs] = {}

    # --- notifications -----------------------------------------------------------------

    def subscribe(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    # --- the worker's side (RedisStore's methods used by Pipeline) ---------------------

    def write(
        self, updates: Iterable[TokenUpdate], watermarks: dict[int, TsMs] | None = None
    ) -> list[TokenId]:
        """Apply every update (never a gap: the memory holds every trade list it was
        given, so the returned list of tokens to rewrite in full is always empty)."""
        notices: list[Notice] = []
        with self._lock:
            for update in updates:
                self._apply(update)
                notices.append(Notice("token", update.token))
                notices += [Notice("alert", a.token, a) for a in update.alerts]
            if watermarks:
                self._watermarks.update(watermarks)
                self.group_watermarks = dict(self._watermarks)
            listeners = list(self._listeners)
        self.alerts.store([n.alert for n in notices if n.alert is not None])
        for notice in notices:
            for listener in listeners:
                _notify(listener, notice)
        return []

    def _apply(self, update: TokenUpdate) -> None:
        old = self._tokens.get(update.token)
        stats = {**old.stats, **update.stats} if old is not None else dict(update.stats)
        entry = _Token(stats, update.newest_ms, update.written_ms, _rfc3339(update.written_ms),
                       update.forming)  # fmt: skip
        if old is not None:
            entry.trades, entry.base = old.trades, old.base
        entry.base = _synced(entry.trades, entry.base, update.view)
        if update.indicators is not None:
            entry.indicators, entry.indicators_ms = dict(update.indicators), update.written_ms
        elif old is not None:
            entry.indicators, entry.indicators_ms = old.indicators, old.indicators_ms
        self._tokens[update.token] = entry
        if update.finals:
            self._add_bars(update.token, update.finals)

    def _add_bars(self, token: TokenId, finals: Sequence[Bar]) -> None:
        """Upsert on ``(token, open_ms)``, the higher revision winning (as ``bars_1m``)."""
        bars = self._bars.setdefault(token, {})
        for bar in finals:
            known = bars.get(bar.open_ms)
            if known is None or bar.revision >= known.revision:
                bars[bar.open_ms] = bar
        oldest_ms = max(bars) - self._history_ms
        for open_ms in [t for t in bars if t < oldest_ms]:
            del bars[open_ms]

    def read_watermarks(self) -> dict[int, TsMs]:
        with self._lock:
            return dict(self._watermarks)

    def partition_tokens(self, partitions: Sequence[int]) -> dict[TokenId, int]:
        """No token is left by an earlier process: always empty."""
        return {}

    def load_many(
        self, tokens: Sequence[TokenId], specs: tuple[WindowSpec, ...]
    ) -> dict[TokenId, Restored]:
        """Nothing survives the process: no token to restore."""
        return {}

    # --- what the API's live reader reads ---------------------------------------------

    def live_tokens(self) -> list[LiveToken]:
        """Every token not expired, in token order."""
        now = self._now_ms()
        with self._lock:
            expired = [t for t, e in self._tokens.items() if now - e.written_ms >= self._ttl_ms]
            for token in expired:
                del self._tokens[token]
            return [self._view(t, e, now) for t, e in sorted(self._tokens.items())]

    def live_token(self, token: TokenId) -> LiveToken | None:
        """One token, ``None`` when unknown or expired."""
        now = self._now_ms()
        with self._lock:
            entry = self._tokens.get(token)
            if entry is None or now - entry.written_ms >= self._ttl_ms:
                return None
            return self._view(token, entry, now)

    def retained_trades(self, tokens: Sequence[TokenId]) -> list[tuple[TokenId, TsMs, list[Trade]]]:
        """``(token, updated_ms, trades)`` of each of ``tokens`` not expired that has
        trades: its retained trades (oldest first, a copy) and the newest ``updated_ms``
        of its statistics (the evaluation time of the last write)."""
        now = self._now_ms()
        out = []
        with self._lock:
            for token in tokens:
                entry = self._tokens.get(token)
                if entry is None or now - entry.written_ms >= self._ttl_ms or not entry.trades:
                    continue
                t_ms = max(s.updated_ms for s in entry.stats.values())
                out.append((token, t_ms, list(entry.trades)))
        return out

    @staticmethod
    def _view(token: TokenId, entry: _Token, now_ms: TsMs) -> LiveToken:
        fresh = now_ms - entry.indicators_ms < INDICATORS_TTL_MS
        indicators = dict(entry.indicators) if entry.indicators is not None and fresh else None
        return LiveToken(token, entry.newest_ms, entry.last_update, dict(entry.stats),
                         entry.forming, indicators)  # fmt: skip

    # --- the API's history (HistoryPool's methods) -------------------------------------

    def candles(self, token: TokenId, tf: str, from_ms: TsMs, to_ms: TsMs) -> list[Candle]:
        """As ``BarRepository.candles``: candles of ``tf`` whose bucket overlaps
        ``[from_ms, to_ms)``, oldest first, buckets without a bar absent. ``ValueError``
        for an unknown ``tf``."""
        if tf not in TIMEFRAMES_MS:
            raise ValueError(f"unknown timeframe {tf!r}: accepts {', '.join(TIMEFRAMES_MS)}")
        if to_ms <= from_ms:
            return []
        tf_ms = TIMEFRAMES_MS[tf]
        lo_ms, hi_ms = bucket_range(tf_ms, from_ms, to_ms)
        with self._lock:
            known = self._bars.get(token, {})
            bars = [known[t] for t in sorted(known) if lo_ms <= t < hi_ms]
        buckets: dict[TsMs, list[Bar]] = {}
        for bar in bars:
            buckets.setdefault(bar.open_ms - bar.open_ms % tf_ms, []).append(bar)
        return [_candle(token, open_ms, group) for open_ms, group in buckets.items()]

    def check(self) -> None:
        """The history is always available."""

    def close(self) -> None:
        """Nothing to release."""


def _candle(token: TokenId, open_ms: TsMs, bars: list[Bar]) -> Candle:
    """The bars of one bucket (oldest first) as one candle (as the ``_CANDLES`` query)."""
    volume = sum(b.volume for b in bars)
    volume_usd = sum(b.volume_usd for b in bars)
    return Candle(
        token, open_ms, bars[0].open, max(b.high for b in bars), min(b.low for b in bars),
        bars[-1].close, volume, volume_usd, sum(b.buy_volume_usd for b in bars),
        sum(b.sell_volume_usd for b in bars), sum(b.trades for b in bars),
        volume_usd / volume if volume else None, len(bars),
    )  # fmt: skip


def _notify(listener: Listener, notice: Notice) -> None:
    try:
        listener(notice)
    except Exception:  # a listener's failure must not fail the worker's write
        log.warning("memory store listener failed kind=%s token=%s", notice.kind,
                    notice.token, exc_info=True)  # fmt: skip
