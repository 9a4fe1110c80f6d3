"""The worker's rule scans: every ``interval_ms`` of the clock, the enabled rules over every
token this process holds; alerts leave with the token's atomic write.

Timeline (event or wall clock ``T``; ``interval_ms`` = 1 s)::

    T: ──┬─────────┬─────────┬──>   a scan at each multiple M the clock reaches
         M         M+1s      M+2s   (several passed in one batch: one scan, at the last)

Exactly once: a token's alerts are written in the same Lua script as its scanner state
(cooldowns, last firing, edge and crossing samples) and the time of the scan
(``ScanRecord``). A worker restarted from Redis therefore knows what it already sent: it
does not scan a token again at or before its stored scan time, and cooldowns continue. The
alert id is derived from (rule, version, token, time): a repeated write is recognisable.
A write that fails is retried with the same alerts (they are kept until acknowledged).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping

import msgspec
import numpy as np

from tradepulse.adapters.redis_store import TokenUpdate
from tradepulse.core.alerts import Alert
from tradepulse.core.clock import NEVER
from tradepulse.core.rules import Rule
from tradepulse.core.scanner import Scanner, ScanRecord, TokenState
from tradepulse.core.tokenbars import TokenBars
from tradepulse.core.types import TokenId, TsMs
from tradepulse.core.windows import TokenWindows
from tradepulse.service.dryrun import metric_columns

log = logging.getLogger(__name__)


class Scans:
    """Scan schedule, scanner and the alerts not yet stored."""

    def __init__(self, rules: list[Rule], interval_ms: int = 1_000) -> None:
        self.scanner = Scanner(rules)
        self.interval_ms = interval_ms
        self.last_ms: TsMs = NEVER
        self.alerts_sent = 0
        self._scanned: dict[TokenId, TsMs] = {}  # per token: last scan stored (restores)
        self._unwritten: tuple[TsMs, dict[TokenId, list[Alert]]] | None = None

    def set_rules(self, rules: list[Rule]) -> None:
        self.scanner.update_rules(rules)

    def restore(self, token: TokenId, record: ScanRecord | None) -> None:
        if record is not None:
            self.scanner.restore_token(token, record.state)
            self._scanned[token] = record.scanned_ms

    def forget(self, token: TokenId) -> None:
        self.scanner.forget(token)
        self._scanned.pop(token, None)

    def due(self, now_ms: TsMs) -> TsMs | None:
        """The scan time when the clock reached a new multiple of the interval (or a scan
        still has to be stored), else ``None``."""
        if self._unwritten is not None:
            return self._unwritten[0]
        if now_ms == NEVER or not self.scanner.rules:
            return None
        at = now_ms - now_ms % self.interval_ms
        return at if at > self.last_ms else None

    def evaluate(
        self, at_ms: TsMs, windows: Mapping[TokenId, TokenWindows],
        bars: Mapping[TokenId, TokenBars], trace_id: str | None = None,
    ) -> dict[TokenId, list[Alert]]:  # fmt: skip
        """The alerts of the scan at ``at_ms`` per token (kept until ``stored``). With a
        ``trace_id`` (tracing on: the scan span's) every alert carries it instead of the
        one derived from the alert's identity (the alert id does not change)."""
        if self._unwritten is not None:
            return self._unwritten[1]
        tokens = [t for t in windows if self._scanned.get(t, NEVER) < at_ms]
        columns = metric_columns(tokens, windows, bars, at_ms, self.scanner.input_metrics)
        newest = np.array([windows[t].newest_ms for t in tokens], dtype=np.int64)
        by_token: dict[TokenId, list[Alert]] = defaultdict(list)
        for alert in self.scanner.scan(at_ms, tokens, columns, newest):
            if trace_id is not None:
                alert = msgspec.structs.replace(alert, trace_id=trace_id)  # noqa: PLW2901
            by_token[alert.token].append(alert)
        self._unwritten = (at_ms, dict(by_token))
        return self._unwritten[1]

    def decorate(self, update: TokenUpdate) -> TokenUpdate:
        """``update`` with the token's pending alerts and its scanner state."""
        if self._unwritten is None:
            return update
        at_ms, by_token = self._unwritten
        alerts = by_token.get(update.token)
        if alerts is None:
            return update
        state: TokenState = self.scanner.token_state(update.token)
        return msgspec.structs.replace(update, alerts=alerts, scan=ScanRecord(at_ms, state))

    def stored(self) -> int:
        """The pending scan's alerts were written: returns how many."""
        if self._unwritten is None:
            return 0
        at_ms, by_token = self._unwritten
        self._unwritten = None
        self.last_ms = at_ms
        for token in by_token:
            self._scanned[token] = at_ms
        count = sum(len(a) for a in by_token.values())
        self.alerts_sent += count
        return count
