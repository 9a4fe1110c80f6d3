"""A user's profile: what ``GET/PUT /api/v1/user/profile`` read and write.

Every field has a default, so a user who never saved a profile has one (``Profile()``), and
a partial document fills the rest with defaults. Bounds are part of the type (msgspec
``Meta``): decoding a document that breaks one fails with the JSON path of the field
(``$.alert_preferences.min_interval_s``). Unknown fields are refused, so a typo is an error
rather than a silently dropped preference.

``alert_preferences`` are honoured by the deliverers of alerts (the WebSocket gateway, whose
clients are the ``websocket`` or the ``dashboard`` channel): ``muted_channels`` (no alerts on
these), ``muted_rules`` (rule ids), and ``min_interval_s`` (at most one alert per rule and
token in this many seconds, on top of the rule's own cooldown; ``AlertThrottle``).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

CHANNELS = ("websocket", "dashboard")
DISPLAY_NAME_MAX = 100
TOKEN_MAX = 128
WATCHLIST_MAX = 500
MUTED_RULES_MAX = 1_000
MIN_INTERVAL_MAX_S = 86_400

_NO_NUL = "^[^\x00]*$"  # PostgreSQL cannot store NUL characters in text or jsonb

Channel = Literal["websocket", "dashboard"]
TokenRef = Annotated[str, msgspec.Meta(min_length=1, max_length=TOKEN_MAX, pattern=_NO_NUL)]
RuleRef = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=_NO_NUL)]


class AlertPreferences(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How alerts reach the user (see the module docstring)."""

    muted_channels: Annotated[tuple[Channel, ...], msgspec.Meta(max_length=len(CHANNELS))] = ()
    muted_rules: Annotated[tuple[RuleRef, ...], msgspec.Meta(max_length=MUTED_RULES_MAX)] = ()
    min_interval_s: Annotated[int, msgspec.Meta(ge=0, le=MIN_INTERVAL_MAX_S)] = 0

    def __post_init__(self) -> None:
        _unique("muted_channels", self.muted_channels)
        _unique("muted_rules", self.muted_rules)


class Profile(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a user sets; the default is the profile of a user who never saved one."""

    display_name: Annotated[str, msgspec.Meta(max_length=DISPLAY_NAME_MAX, pattern=_NO_NUL)] = ""
    watchlist: Annotated[tuple[TokenRef, ...], msgspec.Meta(max_length=WATCHLIST_MAX)] = ()
    alert_preferences: AlertPreferences = msgspec.field(default_factory=AlertPreferences)

    def __post_init__(self) -> None:
        _unique("watchlist", self.watchlist)


class StoredProfile(msgspec.Struct, frozen=True):
    """A user's profile; ``updated_ms`` (epoch ms) is null for the default, never saved."""

    user: str
    profile: Profile
    updated_ms: int | None = None


def _unique(field: str, items: tuple[str, ...]) -> None:
    """Refuse a list naming the same item twice (a validation error at decoding)."""
    seen: set[str] = set()
    for item in items:
        if item in seen:
            raise ValueError(f"{field}: {item!r} appears more than once")
        seen.add(item)


class AlertThrottle:
    """``min_interval_s`` for one recipient: at most one alert per ``(rule, token)`` within
    ``interval_ms`` of trigger time.

    Times are the alerts' ``triggered_ms`` (as the rule's cooldown), not the time of
    delivery, so the same sequence of alerts is thinned the same way whenever it is read
    (live, or replayed after a reconnect). ``admit`` is asked in delivery order; an alert
    within ``interval_ms`` of the last admitted one of its pair (before or after it: alerts
    of one pair may arrive out of order after a worker hand-over) is refused. Pairs whose
    last alert is an interval older than the newest seen are forgotten from time to time,
    so memory follows the pairs active within one interval.
    """

    _PRUNE_AT = 1_024

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], int] = {}
        self._newest_ms = 0
        self._prune_at = self._PRUNE_AT

    def __len__(self) -> int:
        return len(self._last)

    def admit(self, rule_id: str, token: str, triggered_ms: int, interval_ms: int) -> bool:
        """Whether this alert may be delivered; an admitted alert starts a new interval."""
        if interval_ms <= 0:
            return True
        key = (rule_id, token)
        last = self._last.get(key)
        if last is not None and abs(triggered_ms - last) < interval_ms:
            return False
        self._last[key] = triggered_ms if last is None else max(last, triggered_ms)
        self._newest_ms = max(self._newest_ms, triggered_ms)
        if len(self._last) >= self._prune_at:
            horizon = self._newest_ms - interval_ms
            self._last = {k: t for k, t in self._last.items() if t > horizon}
            self._prune_at = max(self._PRUNE_AT, 2 * len(self._last))
        return True
