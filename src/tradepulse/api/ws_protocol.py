"""The JSON messages of ``/ws``: client frames parsed into commands, server messages
encoded once (the same text goes to every recipient).

Client → server (one JSON object per text frame)::

    {"op": "subscribe", "channel": "alerts", "tokens": [...]?, "rules": [...]?}
    {"op": "subscribe", "channel": "token:<addr>"}
    {"op": "subscribe", "channel": "tokens:top", "sort": "-window.5min.total_volume", "limit": 20}
    {"op": "unsubscribe", "channel": "<channel>"}
    {"op": "resume", "last_alert_id": "<stream id>"}
    {"op": "ping"}    {"op": "pong"} (answer to a heartbeat: nothing is sent back)

A frame that cannot be obeyed raises ``WsError(code, message)``; the message names the
field at fault. Codes: ``too_large``, ``not_text``, ``bad_json``, ``not_object``,
``unknown_op``, ``unknown_channel``, ``bad_field``, ``bad_sort``, ``bad_id``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from tradepulse.api.feeds import StreamId, parse_stream_id
from tradepulse.api.problems import ProblemError
from tradepulse.api.query import DEFAULT_SORT, MAX_LIMIT, SortKey, parse_sort
from tradepulse.core.windows import WindowSpec

ALERTS = "alerts"
TOP = "tokens:top"
TOKEN_PREFIX = "token:"
MAX_TOKEN_CHARS = 128
MAX_FILTER_ITEMS = 1_000
DEFAULT_TOP_LIMIT = 20


class WsError(Exception):
    """A client frame refused: ``code`` is short and stable, ``message`` names the field."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class SubscribeAlerts(msgspec.Struct, frozen=True):
    tokens: frozenset[str] | None = None  # None: every token
    rules: frozenset[str] | None = None  # None: every rule


class SubscribeToken(msgspec.Struct, frozen=True):
    token: str

    @property
    def channel(self) -> str:
        return TOKEN_PREFIX + self.token


class SubscribeTop(msgspec.Struct, frozen=True):
    sort: SortKey
    limit: int


class Unsubscribe(msgspec.Struct, frozen=True):
    channel: str


class Resume(msgspec.Struct, frozen=True):
    last_alert_id: StreamId


class Ping(msgspec.Struct, frozen=True):
    pass


class Pong(msgspec.Struct, frozen=True):
    pass


Command = SubscribeAlerts | SubscribeToken | SubscribeTop | Unsubscribe | Resume | Ping | Pong
_OPS = ("subscribe", "unsubscribe", "resume", "ping", "pong")
_decoder = msgspec.json.Decoder()


def parse_frame(
    frame: str | bytes | None, windows: tuple[WindowSpec, ...], max_bytes: int
) -> Command:
    """The command of one client frame, or ``WsError``."""
    if frame is None:
        raise WsError("not_text", "frames must be text: one JSON object each")
    size = len(frame.encode() if isinstance(frame, str) else frame)
    if size > max_bytes:
        raise WsError("too_large", f"the frame has {size} bytes; the limit is {max_bytes}")
    try:
        body = _decoder.decode(frame)
    except msgspec.DecodeError:
        raise WsError("bad_json", "the frame is not JSON") from None
    if not isinstance(body, dict):
        raise WsError("not_object", "the frame must be a JSON object with an 'op' field")
    return _command(body, windows)


def _command(body: dict[str, Any], windows: tuple[WindowSpec, ...]) -> Command:
    op = body.get("op")
    if op not in _OPS:
        raise WsError("unknown_op", f"'op': {op!r} is not one of {', '.join(_OPS)}")
    if op == "ping":
        return Ping()
    if op == "pong":
        return Pong()
    if op == "resume":
        return _resume(body)
    channel = _channel(body)
    if op == "unsubscribe":
        return Unsubscribe(channel)
    if channel == ALERTS:
        return SubscribeAlerts(_names(body, "tokens"), _names(body, "rules"))
    if channel == TOP:
        return SubscribeTop(_sort(body, windows), _limit(body))
    return SubscribeToken(channel.removeprefix(TOKEN_PREFIX))


def _channel(body: dict[str, Any]) -> str:
    channel = body.get("channel")
    if not isinstance(channel, str):
        raise WsError("unknown_channel", "'channel' must be alerts, tokens:top or token:<addr>")
    if channel in (ALERTS, TOP):
        return channel
    token = channel.removeprefix(TOKEN_PREFIX)
    if channel.startswith(TOKEN_PREFIX) and 1 <= len(token) <= MAX_TOKEN_CHARS:
        return channel
    raise WsError("unknown_channel", f"'channel': {channel[:140]!r} is not alerts, tokens:top "
                  f"or token:<addr> (addr 1..{MAX_TOKEN_CHARS} characters)")  # fmt: skip


def _names(body: dict[str, Any], field: str) -> frozenset[str] | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise WsError("bad_field", f"'{field}' must be a list of non-empty strings")
    if len(value) > MAX_FILTER_ITEMS:
        raise WsError("bad_field", f"'{field}' has {len(value)} items; at most {MAX_FILTER_ITEMS}")
    return frozenset(value)


def _sort(body: dict[str, Any], windows: tuple[WindowSpec, ...]) -> SortKey:
    text = body.get("sort", DEFAULT_SORT)
    if not isinstance(text, str):
        raise WsError("bad_sort", "'sort' must be a string such as -window.5min.total_volume")
    try:
        return parse_sort(text, windows)
    except ProblemError as exc:
        reason = exc.detail.partition(": ")[2] or exc.detail
        raise WsError("bad_sort", f"'sort': {reason}") from None


def _limit(body: dict[str, Any]) -> int:
    limit = body.get("limit", DEFAULT_TOP_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise WsError("bad_field", f"'limit' must be a whole number 1..{MAX_LIMIT}")
    return limit


def _resume(body: dict[str, Any]) -> Resume:
    text = body.get("last_alert_id")
    parsed = parse_stream_id(text) if isinstance(text, str) else None
    if parsed is None:
        raise WsError("bad_id", "'last_alert_id' must be a stream id such as 1700000000000-0")
    return Resume(parsed)


_encoder = msgspec.json.Encoder()


def encode(message: dict[str, Any]) -> str:
    """One server message as the text of a frame."""
    return _encoder.encode(message).decode()


def error(code: str, message: str) -> str:
    return encode({"type": "error", "code": code, "message": message})


def alert_message(entry_id: StreamId, raw_alert: bytes) -> str:
    """The ``alert`` message; the alert's JSON is embedded as stored (not re-encoded)."""
    return encode({"type": "alert", "channel": ALERTS, "id": str(entry_id),
                   "data": msgspec.Raw(raw_alert)})  # fmt: skip
