"""Query parameters of the REST API: parsed into typed values, or ``ProblemError`` 400 naming
the parameter and what it accepts.

* ``sort``: ``[-]window.<window>.<stat>`` (``-``: descending), a ``WindowStats`` field of a
  configured window.
* ``where`` (repeatable): ``window.<window>.<stat><op><number>``, op one of
  ``>= <= == != > <``; all must hold; a null statistic never matches. ``q``: a
  case-insensitive substring of the token address.
* ``cursor``: opaque to clients; URL-safe base64 of JSON ``{"offset", "sort", "where"}``
  (a cursor is refused with other sort or filters). It is
  offset based: a page boundary may shift when tokens enter or leave ``tokens:active``
  between two requests (a token may then be seen twice or skipped), never an error.
* ``from`` / ``to``: epoch milliseconds (digits) or RFC 3339 with an offset (``Z`` too).
"""

from __future__ import annotations

import base64
import binascii
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

import msgspec

from tradepulse.adapters.postgres import TIMEFRAMES_MS
from tradepulse.api.problems import bad_param
from tradepulse.core.types import TsMs
from tradepulse.core.windows import WindowSpec, WindowStats

DEFAULT_SORT = "-window.5min.total_volume"
MAX_LIMIT = 500
MAX_CANDLES = 10_000
MAX_TIME_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
STATS = frozenset(WindowStats.__struct_fields__)


class SortKey(msgspec.Struct, frozen=True):
    window: str
    stat: str
    descending: bool

    def __str__(self) -> str:
        return f"{'-' if self.descending else ''}window.{self.window}.{self.stat}"


class Cursor(msgspec.Struct, frozen=True):
    offset: int
    sort: str
    where: str = ""  # the list's filters (``Filters.__str__``): a page of another list is refused


_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
    ">": operator.gt, "<": operator.lt,
}  # fmt: skip
_WHERE_RE = re.compile(r"^window\.([^.<>=!]+)\.([a-z_]+)(>=|<=|==|!=|>|<)(.+)$")
MAX_FILTERS = 10


class Filter(msgspec.Struct, frozen=True):
    """``window.<window>.<stat> <op> <number>``: a token whose statistic is null (or whose
    window is missing) does not match."""

    window: str
    stat: str
    op: str
    value: float

    def __str__(self) -> str:
        return f"window.{self.window}.{self.stat}{self.op}{self.value!r}"

    def matches(self, windows: Mapping[str, object]) -> bool:
        stats = windows.get(self.window)
        value = getattr(stats, self.stat, None) if stats is not None else None
        return value is not None and _OPS[self.op](value, self.value)


def parse_filters(texts: Sequence[str], windows: tuple[WindowSpec, ...]) -> tuple[Filter, ...]:
    """Every ``where`` parameter as a ``Filter`` (all must hold); 400 naming ``where``."""
    if len(texts) > MAX_FILTERS:
        raise bad_param("where", f"at most {MAX_FILTERS} filters")
    return tuple(_filter(text, [spec.name for spec in windows]) for text in texts)


def _filter(text: str, names: list[str]) -> Filter:
    match = _WHERE_RE.match(text.replace(" ", ""))
    if match is None:
        raise bad_param("where", f"{text!r} is not window.<window>.<stat><op><number> "
                                 "with op one of >= <= == != > <")  # fmt: skip
    window, stat, op, number = match.groups()
    if window not in names:
        raise bad_param("where", f"unknown window {window!r}: accepts {', '.join(names)}")
    if stat not in STATS:
        raise bad_param("where", f"unknown statistic {stat!r}: accepts {', '.join(sorted(STATS))}")
    try:
        value = float(number)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise bad_param("where", f"{number!r} is not a finite number")
    return Filter(window, stat, op, value)


def filters_text(filters: Sequence[Filter], q: str | None) -> str:
    """What a cursor remembers of a list's filters."""
    return "&".join([*(str(f) for f in filters), *([f"q={q}"] if q else [])])


_cursor_decoder = msgspec.json.Decoder(Cursor)


def parse_sort(text: str, windows: tuple[WindowSpec, ...]) -> SortKey:
    names = [spec.name for spec in windows]
    descending = text.startswith("-")
    parts = text.removeprefix("-").split(".")
    if len(parts) != 3 or parts[0] != "window":
        raise bad_param("sort", f"{text!r} is not [-]window.<window>.<stat>")
    if parts[1] not in names:
        raise bad_param("sort", f"unknown window {parts[1]!r}: accepts {', '.join(names)}")
    if parts[2] not in STATS:
        accepts = ", ".join(sorted(STATS))
        raise bad_param("sort", f"unknown statistic {parts[2]!r}: accepts {accepts}")
    return SortKey(parts[1], parts[2], descending)


def encode_cursor(cursor: Cursor) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(cursor)).decode().rstrip("=")


def decode_cursor(text: str, sort: SortKey, where: str = "") -> Cursor:
    """The cursor of a previous page; it must have been made for the same ``sort`` and
    filters (``where``)."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        cursor = _cursor_decoder.decode(raw)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise bad_param("cursor", "not a cursor returned by this API") from None
    if cursor.offset < 0:
        raise bad_param("cursor", "not a cursor returned by this API")
    if cursor.sort != str(sort):
        raise bad_param("cursor", f"made for sort={cursor.sort!r}, not {str(sort)!r}")
    if cursor.where != where:
        raise bad_param("cursor", "made for other filters (where, q) than these")
    return cursor


def parse_time_ms(param: str, text: str) -> TsMs:
    """Epoch ms (digits) or an RFC 3339 time with an offset, from 1970 to ``MAX_TIME_MS``."""
    ms = _time_ms(param, text)
    if not 0 <= ms <= MAX_TIME_MS:
        raise bad_param(param, f"{text!r} is out of range (1970 to 9999)")
    return ms


def _time_ms(param: str, text: str) -> TsMs:
    if text.isascii() and text.isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise bad_param(param, f"{text!r} is neither epoch ms nor RFC 3339") from None
    if parsed.tzinfo is None:
        raise bad_param(param, f"{text!r} has no UTC offset (e.g. add Z)")
    try:
        return int(parsed.timestamp() * 1000)
    except (ValueError, OverflowError):
        raise bad_param(param, f"{text!r} is out of range") from None


def parse_range(
    tf: str, from_text: str | None, to_text: str | None, now_ms: TsMs
) -> tuple[TsMs, TsMs]:
    """``[from_ms, to_ms)`` of a candles request: default the last 24 hours up to now,
    at most ``MAX_CANDLES`` candles long."""
    if tf not in TIMEFRAMES_MS:
        raise bad_param("tf", f"unknown timeframe {tf!r}: accepts {', '.join(TIMEFRAMES_MS)}")
    to_ms = parse_time_ms("to", to_text) if to_text is not None else now_ms
    from_ms = parse_time_ms("from", from_text) if from_text is not None else to_ms - 86_400_000
    if from_ms >= to_ms:
        raise bad_param("from", f"must be before to ({from_ms} >= {to_ms})")
    if (to_ms - from_ms) // TIMEFRAMES_MS[tf] > MAX_CANDLES:
        raise bad_param("from", f"range holds more than {MAX_CANDLES} candles of {tf}")
    return from_ms, to_ms
