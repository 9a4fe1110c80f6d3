"""One WebSocket connection's state: who it is, what it subscribed to, its send queue, its
inbound budget, and the position of its alert delivery.

Alerts without duplicates or gaps across a ``resume``: ``cursor`` is the id of the newest
alert sent (None: none yet). While a replay runs, ``pending`` collects the live alerts the
gateway offers; when the replay reached the end of the stream, ``pending`` entries newer
than ``cursor`` are sent and live delivery goes on. Every entry is either in the replay's
read (it existed when the read reached the end) or offered live afterwards (the gateway
reads the stream in order), and ``cursor`` removes what is both.

The user's alert preferences (``preferences.py``) are asked for each alert: nothing at all
when the connection's ``client`` (``websocket``, or ``dashboard`` for the dashboard's
connection) is a muted channel, nothing of a muted rule (both when an alert is offered or
replayed), and at most one alert per rule and token per ``min_interval_s``, decided in the
order alerts are sent (``deliver``, after ``cursor``: the same alerts are thinned the same
way live and after a resume). The interval is kept per connection: connections of one user
with the same filters get the same alerts; a new connection starts afresh.

Close codes (sent with a reason; the metric label in brackets)::

    1000 normal            4008 slow client (send queue full) [slow_client]
    1001 server stopping   4009 too many connections for this user [too_many]
    4401 unauthorized [auth]    4029 rate limited [rate_limited]
    4408 no traffic for two heartbeat intervals [dead_peer]
    4400 bad request: an unknown ``client`` in the query [bad_request]
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from tradepulse import metrics
from tradepulse.api.auth import Principal
from tradepulse.api.feeds import AlertEntry, StreamId
from tradepulse.api.preferences import EVERY_ALERT, AlertFilter
from tradepulse.api.ws_flow import Outbox, TokenBucket
from tradepulse.api.ws_protocol import SubscribeAlerts, SubscribeTop, error
from tradepulse.config import Settings
from tradepulse.core.profiles import AlertThrottle, Channel

CLOSE_BAD_REQUEST = 4400
CLOSE_SLOW = 4008
CLOSE_TOO_MANY = 4009
CLOSE_RATE = 4029
CLOSE_UNAUTHORIZED = 4401
CLOSE_DEAD_PEER = 4408
CLOSE_GOING_AWAY = 1001
_WITHHELD = {reason: metrics.WS_ALERTS_WITHHELD.labels(reason)
             for reason in ("muted_channel", "muted_rule", "min_interval")}  # fmt: skip


def _every_alert(_user: str) -> AlertFilter:
    return EVERY_ALERT


class Session:
    def __init__(
        self, principal: Principal | None, key: str, settings: Settings,
        clock: Callable[[], float] = time.monotonic, *, client: Channel = "websocket",
        preferences: Callable[[str], AlertFilter] | None = None,
    ) -> None:  # fmt: skip
        self.principal = principal
        self.key = key  # what the per-user connection limit counts
        self.client = client  # the delivery channel of the user's alert preferences
        self._preferences = preferences or _every_alert  # a user's alert preferences now
        self._throttle = AlertThrottle()
        self.outbox = Outbox(settings.ws_send_queue)
        self.bucket = TokenBucket(settings.ws_rate, settings.ws_burst, clock)
        self.alerts: SubscribeAlerts | None = None
        self.tokens: set[str] = set()
        self.top: SubscribeTop | None = None
        self.cursor: StreamId | None = None
        self.pending: list[tuple[AlertEntry, str]] | None = None
        self.last_seen = clock()
        self.close_code: int | None = None
        self.close_reason = ""
        self.closed = asyncio.Event()

    def close(self, code: int, reason: str, label: str) -> None:
        """Ask the connection to close (the first call wins)."""
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
            metrics.WS_DISCONNECTS.labels(label).inc()
            self.closed.set()

    def send(self, text: str, label: str, born_s: float | None = None) -> None:
        """Queue a message; a full queue closes the connection as a slow client."""
        if self.close_code is None and not self.outbox.put(text, label, born_s):
            self.close(CLOSE_SLOW, "slow client: send queue full", "slow_client")

    def send_error(self, code: str, message: str) -> None:
        self.send(error(code, message), "control")

    def wants(self, entry: AlertEntry, owner: str | None) -> bool:
        """Whether this connection receives ``entry`` (its owner, None when unknown): its
        user may see it, it subscribed to it, and neither the channel nor the rule is muted
        (``min_interval_s`` is applied by ``deliver``)."""
        sub, who = self.alerts, self.principal
        if sub is None or who is None or not (who.admin or who.user == owner):
            return False
        if sub.tokens is not None and entry.alert.token not in sub.tokens:
            return False
        if sub.rules is not None and entry.alert.rule_id not in sub.rules:
            return False
        prefs = self._preferences(who.user)
        if self.client in prefs.muted_channels:
            _WITHHELD["muted_channel"].inc()
            return False
        if entry.alert.rule_id in prefs.muted_rules:
            _WITHHELD["muted_rule"].inc()
            return False
        return True

    def offer_alert(self, entry: AlertEntry, text: str) -> None:
        """A live alert this connection wants (see the module docstring)."""
        if self.pending is not None:
            self.pending.append((entry, text))
            if len(self.pending) > self.outbox.limit:
                self.close(CLOSE_SLOW, "slow client: too many alerts during resume", "slow_client")
            return
        self.deliver(entry, text)

    def deliver(self, entry: AlertEntry, text: str) -> None:
        """Send ``entry`` (``text``: its message) unless sent already or within the user's
        ``min_interval_s`` of the last one of its rule and token."""
        if self.cursor is not None and entry.id <= self.cursor:
            return
        self.cursor = entry.id
        alert, who = entry.alert, self.principal
        interval_ms = 0 if who is None else self._preferences(who.user).min_interval_ms
        if not self._throttle.admit(alert.rule_id, alert.token, alert.triggered_ms, interval_ms):
            _WITHHELD["min_interval"].inc()
            return
        self.send(text, "alerts", entry.id.ms / 1000)

    def end_replay(self) -> None:
        """Send what arrived live during the replay and return to live delivery."""
        pending, self.pending = self.pending or [], None
        for entry, text in pending:
            self.deliver(entry, text)
