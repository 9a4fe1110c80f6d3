"""The compiled wire conversion and trade rows (``adapters/_wire.pyx``) against the Python
code: for any mix of wire messages (usual trades, sides in other cases, epoch seconds,
RFC 3339 times, future times, overflowing volumes, negative or huge times, malformed and
invalid values) ``decode_many`` gives the same trades, field for field and type for type,
and the same rejections (index, field, rule, detail) with the kernel as with the Python
loop alone; the rows of a token's Redis list are those of the Python comprehension, also
for a subclass of ``Trade``."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tradepulse.adapters.redis_store as store_mod
import tradepulse.adapters.wire as wire_mod
from tradepulse.adapters.wire import decode_many
from tradepulse.core.trade import Trade

NOW_MS = 1_760_000_000_000

needs_kernel = pytest.mark.skipif(
    wire_mod._compiled_convert is None,
    reason="the compiled wire module is not built here (no C compiler at install): the "
    "Python conversion runs, which tests/unit/test_wire.py checks",
)

side_st = st.sampled_from(["buy", "sell", "BUY", "Sell", "b", "", "buyer", 1])
time_st = st.one_of(
    st.integers(NOW_MS - 10**9, NOW_MS + 10**6),  # milliseconds, some in the future
    st.integers(0, 10**11 - 1),  # epoch seconds
    st.sampled_from([-1, 10**11, 2**63, 2**64 + 5, 10**30]),
    st.floats(0, 2e12, allow_nan=False),
    st.sampled_from(["2025-10-09T08:53:20Z", "2025-10-09T08:53:20.123+02:00", "2025-10-09"]),
)
amount_st = st.one_of(
    st.floats(0, 1e12, allow_nan=False),
    st.sampled_from([1e300, 1.7e308, 5e-324, 0.0, 1, -1.0]),
)


@st.composite
def message(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 15)) == 0:
        return draw(st.sampled_from([b"", b"{", b"[]", b'{"token": 1}', b"null", b"\xff"]))
    fields: dict[str, Any] = {
        "token": draw(st.sampled_from(["TOK1", "TOK2", "t" * 5])),
        "wallet": draw(st.sampled_from(["w1", "w2", ""])),
        "sell_buy": draw(side_st),
        "native_amount": draw(amount_st),
        "token_amount": draw(amount_st),
        "price_usd": draw(amount_st),
        "trans_time": draw(time_st),
        "tx_hash": draw(st.sampled_from(["h1", "h2", "h3"])),
    }
    if draw(st.booleans()):
        fields["event_index"] = draw(st.integers(-1, 5))
    if draw(st.integers(0, 10)) == 0:
        del fields[draw(st.sampled_from(sorted(fields)))]
    return json.dumps(fields).encode()


def fingerprint(trade: Trade) -> list[tuple[type, object]]:
    return [(type(getattr(trade, f)), getattr(trade, f)) for f in trade.__struct_fields__]


def python_only(values: list[bytes]) -> tuple[list[Trade], list[tuple[int, Any]]]:
    compiled = wire_mod._compiled_convert
    wire_mod._compiled_convert = None
    try:
        return decode_many(values, NOW_MS)
    finally:
        wire_mod._compiled_convert = compiled


@needs_kernel
@settings(max_examples=300, deadline=None)
@given(st.lists(message(), max_size=40))
def test_decode_many_compiled_equals_python(values: list[bytes]) -> None:
    trades, rejected = decode_many(values, NOW_MS)
    want_trades, want_rejected = python_only(values)
    assert [fingerprint(t) for t in trades] == [fingerprint(t) for t in want_trades]
    assert [(i, e.field, e.rule, e.detail) for i, e in rejected] == [
        (i, e.field, e.rule, e.detail) for i, e in want_rejected
    ]
    assert len(trades) + len(rejected) == len(values)


@needs_kernel
def test_usual_trades_take_the_compiled_path_and_are_interned() -> None:
    """A usual trade is converted by the kernel (``slow`` is never called for it), its
    token and wallet are the interned strings, and a trade in epoch seconds is scaled."""
    base = {"token": "TOKX", "wallet": "WAL", "native_amount": 1.0, "token_amount": 2.0,
            "price_usd": 0.5, "tx_hash": "h"}  # fmt: skip
    values = [
        json.dumps({**base, "sell_buy": "buy", "trans_time": NOW_MS - 5}).encode(),
        json.dumps({**base, "sell_buy": "sell", "trans_time": 1_700_000_000}).encode(),
    ]
    wires = [wire_mod._decoder.decode(v) for v in values]
    slow_calls: list[object] = []
    trades: list[Trade] = []
    assert wire_mod._compiled_convert is not None
    wire_mod._compiled_convert(wires, NOW_MS + 1000, trades, slow_calls.append)
    assert slow_calls == []
    assert [(t.is_buy, t.ts_ms, t.volume_usd) for t in trades] == [
        (True, NOW_MS - 5, 1.0),
        (False, 1_700_000_000_000, 1.0),
    ]
    made = "".join(["TO", "KX"])  # a string equal to the token, not the same object
    assert trades[0].token is sys.intern(made)
    assert trades[0].wallet is trades[1].wallet


class SubTrade(Trade):
    pass


@needs_kernel
@given(st.lists(st.tuples(st.integers(0, 10**13), st.booleans(), st.floats(allow_nan=False),
                          st.booleans()), max_size=20))  # fmt: skip
def test_line_rows_equal_the_comprehension(rows: list[tuple[int, bool, float, bool]]) -> None:
    trades = [(SubTrade if sub else Trade)("T", f"w{i}", buy, x, 2.0, x, 2.0 * x, ts, f"h{i}", i)
              for i, (ts, buy, x, sub) in enumerate(rows)]  # fmt: skip
    assert store_mod._line_rows is not store_mod._line_rows_py
    got = store_mod._line_rows(trades)
    want = store_mod._line_rows_py(trades)
    assert [[(type(v), v) for v in row] for row in got] == [
        [(type(v), v) for v in row] for row in want
    ]
