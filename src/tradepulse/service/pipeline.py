"""One batch of the worker: decode, apply, write, and only then say what may be committed.

The order is the reliability contract (at-least-once consumption + idempotent state =
exactly-once results)::

    messages ──decode──┬── bad ──> dead-letter topic ─┐
                       └── good ─> engine (windows)   ├─> flush DLQ, write Redis (acked)
                                                      └─> return the offsets to commit

``process`` returns the next offset of every partition it read only after the dead-letter
producer was flushed and Redis acknowledged every token's write. The caller commits those
offsets; if the process dies before that, the batch is read again and, being idempotent
(duplicates are ignored, Redis is rewritten to the same state), changes nothing twice.
"""

from __future__ import annotations

import heapq
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol

import msgspec

from tradepulse import tracing
from tradepulse.adapters.kafka import ConsumedMessage, MessageBatch
from tradepulse.adapters.redis_store import Restored, TokenUpdate
from tradepulse.adapters.wire import decode_many
from tradepulse.core.bars import DEFAULT_GRACE_MS, MINUTE_MS, Bar
from tradepulse.core.clock import NEVER
from tradepulse.core.errors import BrokerError, InvalidTradeError, StoreUnavailableError
from tradepulse.core.market import Market, batch_columns
from tradepulse.core.rules import Rule
from tradepulse.core.tokenbars import TokenBars, TokenBarsSnapshot
from tradepulse.core.types import TokenId, TsMs
from tradepulse.core.windows import TokenWindows, WindowSpec
from tradepulse.service.scanning import Scans

log = logging.getLogger(__name__)


class Clock(Protocol):
    def now_ms(self) -> TsMs: ...

    def observe(self, partition: int, ts_ms: TsMs) -> None: ...

    def observe_all(self, partitions: Sequence[int], times_ms: Sequence[TsMs]) -> list[TsMs]:
        """``observe`` each trade time in order; ``now_ms()`` right after each one."""
        ...

    @property
    def partitions(self) -> dict[int, TsMs]:
        """Newest trade time per partition read (empty for the wall clock)."""
        ...

    def merge(self, known: dict[int, TsMs]) -> None:
        """The group's newest trade time per partition (other processes' partitions)."""
        ...

    def assign(self, partitions: tuple[int, ...], topic: tuple[int, ...] | None = None) -> None:
        """The partitions this process reads from now on (``topic``: all of the topic's,
        when known)."""
        ...


class LiveStore(Protocol):
    """Where the live state is mirrored: ``RedisStore``, or ``MemoryStore`` in the demo."""

    @property
    def group_watermarks(self) -> dict[int, TsMs]: ...

    def write(
        self, updates: Iterable[TokenUpdate], watermarks: dict[int, TsMs] | None = None
    ) -> list[TokenId]:
        """Store every update (taken from ``updates`` as the store goes: a generator's
        updates are built while the first ones are sent); the tokens whose trades list had
        a gap (nothing of theirs was written: send them again in full)."""
        ...

    def read_watermarks(self) -> dict[int, TsMs]: ...

    def partition_tokens(self, partitions: Sequence[int]) -> dict[TokenId, int]: ...

    def load_many(
        self, tokens: Sequence[TokenId], specs: tuple[WindowSpec, ...]
    ) -> dict[TokenId, Restored]: ...


class DeadLetters(Protocol):
    def send(self, msg: ConsumedMessage, reason: str, detail: str, at_ms: int) -> None: ...

    def flush(self, timeout_s: float = ...) -> int: ...


class AppliedBatch(msgspec.Struct, frozen=True):
    """A batch applied in memory, not yet mirrored in Redis."""

    tokens: set[TokenId]
    next_offsets: dict[int, int]
    wall_ms: TsMs


class Pipeline:
    """Applies batches of consumed messages to a market mirrored in Redis."""

    def __init__(
        self,
        market: Market,
        clock: Clock,
        store: LiveStore,
        dead_letters: DeadLetters,
        *,
        wall_ms: Callable[[], TsMs],
        max_future_skew_ms: int = 5_000,
        bar_grace_ms: int = DEFAULT_GRACE_MS,
        bars_enabled: bool = True,
        bars_from_ms: TsMs = NEVER,
    ) -> None:
        self.market = market
        #: Final bars of minutes before this are not emitted (still recorded as emitted):
        #: a rebuild's first minutes were read in part.
        self.bars_from_ms = bars_from_ms
        self.bars: dict[TokenId, TokenBars] = {}  # 1-minute bars and indicators per token
        self.bar_grace_ms = bar_grace_ms
        self.bars_enabled = bars_enabled
        self.clock = clock
        self.store = store
        self.dead_letters = dead_letters
        self.wall_ms = wall_ms
        self.max_future_skew_ms = max_future_skew_ms
        self.rejected: Counter[str] = Counter()
        self._partition_of: dict[TokenId, int] = {}
        self._written_ms: dict[TokenId, TsMs] = {}  # wall time of each token's last write
        self._assigned: tuple[int, ...] = ()
        self._revoked: set[int] = set()  # revoked, not assigned again: another process's
        self._watermarks_restored = True
        self._dead_lettered: set[tuple[int, int]] = set()  # this batch's, across retries
        self._reported: Counter[str] = Counter()
        self._round_ms: TsMs | None = None  # wall time the current sweep round began
        self.scans: Scans | None = None  # rule scans, once rules are set

    def set_rules(self, rules: list[Rule], interval_ms: int = 1_000) -> None:
        """The enabled rules to scan (replacing the previous set; state is kept per rule)."""
        if self.scans is None:
            self.scans = Scans(rules, interval_ms)
        else:
            self.scans.set_rules(rules)

    def scan(self) -> int | None:
        """Scan when the clock reached the next multiple of the scan interval; the alerts
        are written with their tokens (atomically with the scanner state). Returns the
        alerts stored (``None``: no scan was due). Raises ``StoreUnavailableError``;
        calling again retries the same alerts."""
        scans = self.scans
        if scans is None:
            return None
        at_ms = scans.due(self.clock.now_ms())
        if at_ms is None:
            return None
        with tracing.span("scan") as span:
            with tracing.span("scan.evaluate"):
                trace_id = tracing.trace_id(span)  # None while tracing is off
                by_token = scans.evaluate(at_ms, self.market.tokens, self.bars, trace_id)
            if by_token:
                self._write(set(by_token), self.wall_ms(), decorate=scans.decorate)
            stored = scans.stored()
            if span.is_recording():
                span.set_attribute("tradepulse.scan_ms", at_ms)
                span.set_attribute("tradepulse.tokens", len(self.market.tokens))
                span.set_attribute("tradepulse.rules", len(scans.scanner.rules))
                span.set_attribute("tradepulse.alerts", stored)
        return stored

    def process(self, messages: Sequence[ConsumedMessage]) -> dict[int, int]:
        """``apply`` then ``write``: the next offset per partition, safe to commit."""
        batch = self.apply(messages)
        self.write(batch)
        return batch.next_offsets

    def apply(self, messages: Sequence[ConsumedMessage]) -> AppliedBatch:
        """Decode, dead-letter the bad messages (flushed), apply the good ones in memory.

        May raise ``StoreUnavailableError`` (restoring a token from Redis): calling it again
        with the same messages is safe (applied trades are then duplicates, and messages
        already dead-lettered are not sent twice).

        The batch is handled column-wise (``MessageBatch``); the result is that of applying
        its messages one at a time: each trade's floor is the clock right after observing
        it, and each token's bars receive the trades its windows applied, in order."""
        if not self._watermarks_restored:
            self._restore_watermarks()
        now = self.wall_ms()
        batch = MessageBatch.of(messages)
        if self._revoked and not self._revoked.isdisjoint(batch.partitions):
            # fetched before a revocation: the new owner reads them again
            batch = MessageBatch.of([m for m in batch if m.partition not in self._revoked])
        with tracing.span("batch.decode") as span:
            trades, rejected = decode_many(batch.values, now, self.max_future_skew_ms)
            partitions = batch.partitions
            if rejected:
                self._dead_letter(batch, rejected, now)
                bad = {i for i, _ in rejected}
                partitions = [p for i, p in enumerate(partitions) if i not in bad]
            if span.is_recording():
                span.set_attribute("tradepulse.rejected", len(rejected))
        with tracing.span("batch.apply"):
            times, touched, new = batch_columns(trades, partitions, self.market.tokens)
            self._restore_new(new)
            floors = self.clock.observe_all(partitions, times)
            applied = self.market.add_all(trades, floors)
            if self.bars_enabled:
                bars = self.bars
                for token, token_trades in applied.items():
                    (bars.get(token) or self._new_bars(token)).add_many(token_trades)
            if self.dead_letters.flush():
                raise BrokerError("dead-letter messages were not acknowledged")
        return AppliedBatch(touched, batch.next_offsets(), now)

    def _dead_letter(
        self, batch: MessageBatch, rejected: list[tuple[int, InvalidTradeError]], now: TsMs
    ) -> None:
        """Send the rejected messages (``(index in batch, error)``) to the dead-letter
        topic, each once across retries of the batch."""
        partitions, offsets = batch.partitions, batch.offsets
        for i, exc in rejected:
            if (partitions[i], offsets[i]) not in self._dead_lettered:
                self.rejected[exc.reason] += 1
                self.dead_letters.send(batch[i], exc.reason, exc.detail, now)
                self._dead_lettered.add((partitions[i], offsets[i]))

    def write(self, batch: AppliedBatch) -> None:
        """Mirror the batch's tokens in Redis. Raises ``StoreUnavailableError`` when Redis
        fails; calling it again is safe (what was not acknowledged is sent again)."""
        read = self.clock.partitions
        if self._revoked:  # their new owner records how far they were read
            read = {p: t for p, t in read.items() if p not in self._revoked}
        self._write(batch.tokens, batch.wall_ms, read)
        self._dead_lettered.clear()
        self.clock.merge(self.store.group_watermarks)

    def take_outcomes(self) -> Counter[str]:
        """Trades ``applied``, ``duplicates``, ``late`` and rejections per reason since the
        previous call (the increments of the cumulative counters)."""
        market = self.market
        now = Counter(self.rejected)
        now.update(applied=market.applied, duplicates=market.duplicates, late=market.late)
        delta = Counter(
            {k: v - self._reported[k] for k, v in now.items() if v != self._reported[k]}
        )
        self._reported = now
        return delta

    def assign(self, partitions: list[int], topic_partitions: list[int] | None = None) -> None:
        """The partitions this process reads now; ``topic_partitions``: every partition of
        the topic (when known, a partition that no process has read yet holds the event
        clock, see ``EventClock``). Before the next batch the clock takes them over with the
        newest trade times their last reader stored (so a restart or a rebalance continues
        the watermark instead of starting it again)."""
        self._assigned = tuple(partitions)
        self._revoked.difference_update(partitions)
        topic = tuple(topic_partitions) if topic_partitions is not None else None
        self.clock.assign(self._assigned, topic)
        self._watermarks_restored = False

    def _restore_watermarks(self) -> None:
        stored = self.store.read_watermarks()  # may raise StoreUnavailableError: retried
        for partition in self._assigned:
            if partition in stored:
                self.clock.observe(partition, stored[partition])
        self.clock.merge(stored)
        self._watermarks_restored = True

    def sweep(
        self, stale_after_ms: int, *, limit: int | None = None, new_round: bool = True
    ) -> int:
        """Maintenance: advance every token of the assigned partitions not written by this
        process for ``stale_after_ms`` (wall time) to the clock and rewrite it, so idle
        tokens' windows decay. Tokens of those partitions that this process has not seen
        (written before a restart or a rebalance) are restored from Redis first. The clock
        first takes in how far the other processes of the group have read. Returns the
        tokens rewritten.

        With ``limit``, only that many, the longest unwritten first, so that a sweep of
        thousands of tokens can be done a part at a time between batches: each call with
        ``new_round=False`` continues the round the last ``new_round`` call began (the
        tokens stale then and not written since; no restore), and a call that rewrites
        fewer than ``limit`` ends it."""
        with tracing.span("sweep"):
            return self._sweep(stale_after_ms, limit, new_round)

    def _sweep(self, stale_after_ms: int, limit: int | None, new_round: bool) -> int:
        if not self._watermarks_restored:
            self._restore_watermarks()
        self.clock.merge(self.store.read_watermarks())
        now = self.wall_ms()
        if new_round or self._round_ms is None:
            self._round_ms = now
            owned = self.store.partition_tokens(self._assigned)
            unseen = {t: p for t, p in owned.items() if t not in self.market.tokens}
            if unseen:
                self._adopt(self.store.load_many(list(unseen), self.market.specs))
                self._partition_of.update(unseen)
        began, written = self._round_ms, self._written_ms
        stale = [t for t in self.market.tokens
                 if (w := written.get(t, NEVER)) <= now - stale_after_ms
                 and (new_round or w < began)]  # fmt: skip
        if limit is not None and len(stale) > limit:
            stale = heapq.nsmallest(limit, stale, key=lambda t: written.get(t, NEVER))
        if stale:
            self._write(set(stale), now)
        return len(stale)

    def forget(self, partitions: list[int]) -> None:
        """Drop the tokens of partitions this process no longer reads (revoked): their new
        owner continues from Redis, and so would this process if they came back. Until
        they are assigned again, neither a sweep nor a message of theirs fetched before the
        revocation brings their tokens back here (this process would then write them from
        an old copy, over their new owner's writes)."""
        gone = set(partitions)
        self._assigned = tuple(p for p in self._assigned if p not in gone)
        self._revoked.update(gone)
        for token in [t for t, p in self._partition_of.items() if p in gone]:
            self.market.tokens.pop(token, None)
            self.bars.pop(token, None)
            if self.scans is not None:
                self.scans.forget(token)
            self._written_ms.pop(token, None)
            del self._partition_of[token]

    @property
    def bar_horizon_ms(self) -> int:
        """How far back a late trade still corrects a bar: the longest window (whose
        trades are retained, so bars can be rebuilt after a restart), at least a minute
        plus the grace."""
        return max(self.market.specs[-1].duration_ms, MINUTE_MS + self.bar_grace_ms)

    def _new_bars(self, token: TokenId) -> TokenBars:
        tb = self.bars[token] = TokenBars.new(token, grace_ms=self.bar_grace_ms,
                                               horizon_ms=self.bar_horizon_ms)  # fmt: skip
        return tb

    def _adopt(self, restored: dict[TokenId, Restored]) -> None:
        """Take over tokens read back from Redis: windows, and bars rebuilt from the
        retained trades (with their stored state when bars were already emitted; without
        one, none was, and every final minute is still to be emitted)."""
        horizon_ms = self.bar_horizon_ms
        for token, r in restored.items():
            self.market.tokens[token] = r.windows
            if self.scans is not None:
                self.scans.restore(token, r.scan)
            if not self.bars_enabled:
                continue
            trades = r.windows.retained_trades()
            if r.bars_state is not None:
                self.bars[token] = TokenBars.restore(r.bars_state, trades, r.windows.t_ms,
                                                     grace_ms=self.bar_grace_ms,
                                                     horizon_ms=horizon_ms)  # fmt: skip
            else:
                tb = self._new_bars(token)
                for trade in trades:
                    tb.add(trade)

    def _restore_new(self, new: dict[TokenId, int]) -> None:
        """Tokens seen for the first time since start or assignment (``new``: each with its
        partition) continue from their Redis mirrors (the state another process, or this
        one before a restart, left), all read in one go before the batch is applied."""
        if not new:
            return
        self._adopt(self.store.load_many(list(new), self.market.specs))
        self._partition_of.update(new)

    def _write(
        self,
        tokens: set[TokenId],
        now_ms: TsMs,
        watermarks: dict[int, TsMs] | None = None,
        decorate: Callable[[TokenUpdate], TokenUpdate] | None = None,
    ) -> None:
        """Every token's write, one pipeline (a ``redis.write`` span)."""
        with tracing.span("redis.write") as span:
            updates = self._write_tokens(tokens, now_ms, watermarks, decorate)
            if span.is_recording():
                span.set_attribute("tradepulse.tokens", len(updates))
                span.set_attribute("tradepulse.alerts", sum(len(u.alerts) for u in updates))

    def _write_tokens(
        self,
        tokens: set[TokenId],
        now_ms: TsMs,
        watermarks: dict[int, TsMs] | None,
        decorate: Callable[[TokenUpdate], TokenUpdate] | None,
    ) -> list[TokenUpdate]:
        """The write of ``_write``; returns what was written."""
        floor = self.clock.now_ms()
        windows = {t: self.market.tokens[t] for t in tokens if t in self.market.tokens}
        updates: list[TokenUpdate] = []
        seen = {p: t for p, t in (watermarks or {}).items() if t != NEVER}
        built = self._updates(windows, floor, now_ms, decorate, updates)
        gaps = set(self.store.write(built, seen))
        if len(updates) != len(windows):
            raise AssertionError("the store did not take every update")
        if gaps:
            log.warning("redis lost trades of %s tokens: writing them in full", len(gaps))
            full = [self._full(u, windows[u.token]) for u in updates if u.token in gaps]
            if self.store.write(full):
                raise StoreUnavailableError("Redis refused a full write of a token")
        for token, tw in windows.items():
            tw.mark_synced()
            self._written_ms[token] = now_ms
            tb = self.bars.get(token)
            if tb is not None:
                tb.confirm()
        return updates

    def _updates(
        self,
        windows: dict[TokenId, TokenWindows],
        floor: TsMs,
        now_ms: TsMs,
        decorate: Callable[[TokenUpdate], TokenUpdate] | None,
        out: list[TokenUpdate],
    ) -> Iterator[TokenUpdate]:
        """Each token's update (``_update``, then ``decorate``), built when the store takes
        it (so the store sends the first ones while the rest are built), also appended to
        ``out``."""
        for token, tw in windows.items():
            update = self._update(token, tw, floor, now_ms)
            if decorate is not None:
                update = decorate(update)
            out.append(update)
            yield update

    def _full(self, update: TokenUpdate, tw: TokenWindows) -> TokenUpdate:
        """``update`` for a token Redis lost (restarted empty): the whole trades list, and
        the indicators and bar state even when no bar is emitted now."""
        full = msgspec.structs.replace(update, view=tw.sync_view(full=True))
        tb = self.bars.get(update.token)
        if tb is None or full.bars_state is not None or tb.indicators.last_open_ms is None:
            return full  # nothing emitted yet: nothing to restore
        values = {"bar_open_ms": tb.indicators.last_open_ms, **tb.indicators.values()}
        return msgspec.structs.replace(full, indicators=values, bars_state=tb.snapshot())

    def _update(self, token: TokenId, tw: TokenWindows, floor: TsMs, now_ms: TsMs) -> TokenUpdate:
        """The write of one token: windows at ``max(floor, newest)``, its trades-list
        changes, and its bars at the same ``T`` (final ones, forming one, indicators)."""
        stats = tw.stats(floor)
        finals: list[Bar] = []
        forming: Bar | None = None
        values: dict[str, float | None] | None = None
        state: TokenBarsSnapshot | None = None
        tb = self.bars.get(token)
        if tb is not None:
            finals = tb.advance(tw.t_ms)
            forming = tb.forming(tw.t_ms)
            if finals:
                values = {"bar_open_ms": tb.indicators.last_open_ms, **tb.indicators.values()}
                if self.bars_from_ms != NEVER:
                    finals = [bar for bar in finals if bar.open_ms >= self.bars_from_ms]
                state = tb.snapshot()
        return TokenUpdate(token, tw.sync_view(), stats, tw.newest_ms, now_ms,
                           self._partition_of.get(token, -1), finals, forming, values,
                           state)  # fmt: skip
