"""The columnar replay writes what the object replay writes, byte for byte.

Random JSON Lines files mix tokens read in time order (the columnar fast path) with tokens
read out of order, resends of earlier trades (duplicates, or late once the original has
left the longest window), late trades, equal times, prices and amounts over many orders of
magnitude, and rejected, blank and unusual-but-valid lines (RFC 3339 and float times, an
upper-case side) that send a chunk down the line-by-line decoder. Both replays run on the
same bytes, with and without a snapshot period; their snapshot bytes, rejections (line
number, reason, detail) and summaries must be equal.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradepulse.core.errors import InvalidTradeError
from tradepulse.core.market import Market
from tradepulse.core.windows import parse_windows
from tradepulse.service.columnar import replay_columnar
from tradepulse.service.replay import ReplaySummary, replay

SPECS = parse_windows("1s,5s,30s")
BASE_MS = 1_700_000_000_000
NOW_MS = BASE_MS + 10_000_000
ODD_LINES = [
    "",
    "{oops",
    '{"token": "T1", "price_usd": -1}',
    "[1, 2]",
    '{"token":"T0","wallet":"w","sell_buy":"hold","native_amount":1,"token_amount":1,'
    '"price_usd":1,"trans_time":1700000000000,"tx_hash":"z"}',
    '{"token":"T0","wallet":"w","sell_buy":"buy","native_amount":1,"token_amount":1,'
    '"price_usd":1,"trans_time":1700000000000,"tx_hash":"y"} {"token":"T0"}',
]
magnitudes = st.sampled_from([1e-9, 1e-3, 0.5, 1.0, 3.0, 1e3, 1e9])


@dataclass(frozen=True)
class Row:
    token: int
    dt_ms: int  # how far the file's clock advances before this line
    back_ms: int  # how far the trade is behind the file's clock
    price: float
    amount: float
    native: float
    buy: bool
    wallet: int
    tx: int  # a small pool: repeats are resends
    event_index: int
    form: str  # how the line is written
    odd: int | None  # a rejected or blank line after this one


row_st = st.builds(
    Row,
    token=st.integers(0, 4),
    dt_ms=st.sampled_from([0, 0, 1, 7, 250, 999, 1_000, 4_000, 29_999, 31_000]),
    back_ms=st.one_of(st.just(0), st.just(0), st.just(0), st.integers(0, 40_000)),
    price=st.one_of(magnitudes, st.floats(1e-6, 1e6, allow_nan=False)),
    amount=magnitudes,
    native=st.sampled_from([0.0, 1e-6, 1.0, 1e6]),
    buy=st.booleans(),
    wallet=st.integers(0, 6),
    tx=st.integers(0, 400),
    event_index=st.sampled_from([0, 0, 0, 1, 2]),
    form=st.sampled_from(["ms"] * 12 + ["seconds", "float", "rfc3339", "upper", "future"]),
    odd=st.one_of(*[st.none()] * 10, st.integers(0, len(ODD_LINES) - 1)),
)


def _time(row: Row, ts_ms: int) -> object:
    if row.form == "seconds":
        return ts_ms // 1000
    if row.form == "float":
        return ts_ms / 1000
    if row.form == "rfc3339":
        seconds, ms = divmod(ts_ms, 1000)
        import datetime as dt

        stamp = dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{stamp}.{ms:03d}Z"
    if row.form == "future":
        return NOW_MS + 60_000
    return ts_ms


def _file(rows: list[Row], in_order: set[int]) -> bytes:
    """JSON Lines of ``rows``; tokens in ``in_order`` never go back in time."""
    clock = BASE_MS
    newest: dict[int, int] = {}
    lines = []
    for row in rows:
        clock += row.dt_ms
        ts_ms = clock - row.back_ms
        if row.token in in_order:
            ts_ms = max(ts_ms, newest.get(row.token, ts_ms))
            newest[row.token] = ts_ms
        side = "buy" if row.buy else "sell"
        lines.append(json.dumps({
            "token": f"T{row.token}", "wallet": f"w{row.wallet}",
            "sell_buy": side.upper() if row.form == "upper" else side,
            "native_amount": row.native, "token_amount": row.amount, "price_usd": row.price,
            "trans_time": _time(row, ts_ms), "tx_hash": f"h{row.tx}",
            "event_index": row.event_index,
        }))  # fmt: skip
        if row.odd is not None:
            lines.append(ODD_LINES[row.odd])
    return ("\n".join(lines) + "\n").encode()


def _run(
    data: bytes, every_ms: int | None, *, columnar: bool
) -> tuple[bytes, list[str], ReplaySummary]:
    out = io.BytesIO()
    rejected: list[str] = []

    def on_reject(line_no: int, exc: InvalidTradeError) -> None:
        rejected.append(f"line {line_no}: rejected ({exc.reason}): {exc.detail}")

    if columnar:
        summary = replay_columnar(io.BytesIO(data), SPECS, out, now_ms=NOW_MS,
                                  snapshot_every_ms=every_ms, on_reject=on_reject)  # fmt: skip
    else:
        summary = replay(io.BytesIO(data), Market(SPECS), out, now_ms=NOW_MS,
                         snapshot_every_ms=every_ms, on_reject=on_reject)  # fmt: skip
    return out.getvalue(), rejected, summary


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.one_of(st.lists(row_st, max_size=8), st.lists(row_st, min_size=40, max_size=300)),
    in_order=st.sets(st.integers(0, 4)),
    every_ms=st.sampled_from([None, None, 1_000, 2_500, 30_000]),
)
def test_columnar_replay_random_file_equals_object_replay(
    rows: list[Row], in_order: set[int], every_ms: int | None
) -> None:
    data = _file(rows, in_order)
    expected = _run(data, every_ms, columnar=False)
    assert _run(data, every_ms, columnar=True) == expected


def test_columnar_replay_mixed_file_exercises_every_outcome() -> None:
    """A fixed file with every outcome the property mixes, so that the property is known
    to cover them: applied, duplicate, late, rejected, snapshot lines."""
    rows = [
        Row(0, 500, 0, 1.0, 1.0, 1.0, True, 0, 1, 0, "ms", None),
        Row(0, 500, 0, 2.0, 1.0, 1.0, False, 1, 1, 0, "ms", 1),  # duplicate; then bad line
        Row(1, 40_000, 0, 3.0, 1.0, 1.0, True, 0, 2, 0, "ms", None),
        Row(0, 0, 39_000, 4.0, 1.0, 1.0, True, 0, 3, 0, "ms", None),  # late
        Row(1, 10, 5, 5.0, 1.0, 1.0, True, 2, 4, 0, "rfc3339", None),  # back in time
    ]
    data = _file(rows, set())
    snapshots, rejected, summary = _run(data, 1_000, columnar=True)
    assert (summary.applied, summary.duplicates, summary.late) == (3, 1, 1)
    assert rejected == ["line 3: rejected ($:malformed_json): JSON is malformed: "
                        "object keys must be strings (byte 1)"]  # fmt: skip
    assert summary.snapshot_lines == len(snapshots.splitlines()) > 3
    assert _run(data, 1_000, columnar=False) == (snapshots, rejected, summary)


# Six trades of one token (a shrunk counterexample of the property above). At the last trade
# the 5 s window holds 915522.1023768446 * 1 and 0.001 * 1e9, whose exact sum lies on a rounding
# midpoint; the 30 s gaps empty the object engine's store (its prefix sums restart there)
# while the columnar prefix runs from the first trade, 8.4e14 in front.
TIE_TRADES = [
    (0, 687167.6479599705, 3.0),
    (140_996, 840361.7553729741, 1e9),
    (181_492, 284916.8987601295, 1.0),
    (181_742, 2.00001, 0.001),
    (250_239, 915522.1023768446, 1.0),
    (251_238, 0.001, 1e9),
]


def test_columnar_replay_sum_on_a_rounding_midpoint_equals_object_replay() -> None:
    data = "".join(
        json.dumps({"token": "T3", "wallet": "w0", "sell_buy": "buy", "native_amount": 0.0,
                    "token_amount": amount, "price_usd": price, "trans_time": BASE_MS + dt,
                    "tx_hash": f"h{i}"}) + "\n"
        for i, (dt, price, amount) in enumerate(TIE_TRADES)
    ).encode()  # fmt: skip
    exact = math.fsum(price * amount for _, price, amount in TIE_TRADES[4:])
    assert exact == 1915522.1023768447
    for every_ms in (None, 1_000, 2_500):
        snapshots, rejected, summary = _run(data, every_ms, columnar=True)
        assert (snapshots, rejected, summary) == _run(data, every_ms, columnar=False)
        final = json.loads(snapshots.splitlines()[-1])
        assert final["final"] and final["windows"]["5s"]["buy_volume"] == exact
