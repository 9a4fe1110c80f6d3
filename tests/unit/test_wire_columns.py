"""Wire lines decoded into columns: the same trades and rejections as ``decode_batch``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tradepulse.adapters.wire import decode_batch
from tradepulse.adapters.wire_columns import Codes, PackedStrings, columns_of, decode_columns

NOW_MS = 1_700_000_100_000


def line(**changes: object) -> bytes:
    trade = {"token": "A", "wallet": "w", "sell_buy": "buy", "native_amount": 1.5,
             "token_amount": 2.0, "price_usd": 3.0, "trans_time": 1_700_000_000_000,
             "tx_hash": "h", "event_index": 0}  # fmt: skip
    trade.update(changes)
    return json.dumps(trade).encode() + b"\n"


def as_lists(cols: object) -> dict[str, list[object]]:
    names = ("token", "wallet", "is_buy", "native_amount", "token_amount", "price_usd",
             "volume_usd", "ts_ms", "event_index")  # fmt: skip
    return {n: list(np.asarray(getattr(cols, n)).tolist()) for n in names}


CHUNKS = {
    "plain": [line(), line(token="B", sell_buy="sell", tx_hash="g", trans_time=1_700_000_000)],
    "blank and bad": [line(), b"\n", b"{oops\n", line(price_usd=-1), line(tx_hash="k")],
    "unusual but valid": [
        line(sell_buy="SELL"),
        line(trans_time="2023-11-14T22:13:20.5Z"),
        line(trans_time=1_700_000_000.25),
    ],
    "future and overflow": [
        line(trans_time=NOW_MS + 60_000),
        line(token_amount=1e300, price_usd=1e300),
    ],
    "two on one line": [line().rstrip(b"\n") + b" " + line()],
}


@pytest.mark.parametrize("name", sorted(CHUNKS))
def test_decode_columns_chunk_equals_decode_batch(name: str) -> None:
    lines = CHUNKS[name]
    trades, rejected = decode_batch(lines, 7, NOW_MS, 5_000)
    cols, bad = decode_columns(lines, 7, NOW_MS, 5_000, Codes())
    expected = columns_of(trades, Codes())
    assert as_lists(cols) == as_lists(expected)
    assert [(n, e.reason, e.detail) for n, e in bad] == [(n, e.reason, e.detail)
                                                         for n, e in rejected]  # fmt: skip
    assert [cols.tx_hash[i] for i in range(len(cols))] == [t.tx_hash for t in trades]


def test_decode_columns_codes_shared_across_chunks_number_names_in_order() -> None:
    codes = Codes()
    first, _ = decode_columns([line(token="X"), line(token="Y", wallet="v")], 1, NOW_MS, 5_000,
                              codes)  # fmt: skip
    second, _ = decode_columns([line(token="Y"), line(token="Z")], 3, NOW_MS, 5_000, codes)
    assert first.token.tolist() == [0, 1] and second.token.tolist() == [1, 2]
    assert list(codes.tokens) == ["X", "Y", "Z"] and list(codes.wallets) == ["w", "v"]


def test_packed_strings_item_equals_the_original_string() -> None:
    strings = ["a", "héllo", "", "0x" + "f" * 64, "日本"]
    packed = PackedStrings.pack(strings)
    assert [packed[i] for i in range(len(strings))] == strings
