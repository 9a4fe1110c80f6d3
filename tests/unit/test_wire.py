"""The wire format of a trade: what is accepted, and the precise reason for each rejection."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tradepulse.adapters.wire import decode_trade, encode_trade
from tradepulse.core.errors import InvalidTradeError
from tradepulse.core.trade import make_trade

NOW = 1_700_000_000_000
GOOD: dict[str, Any] = {
    "token": "So1anaMint1111pump",
    "wallet": "Wa11et",
    "sell_buy": "buy",
    "native_amount": 0.5,
    "token_amount": 1000.0,
    "price_usd": 0.002,
    "trans_time": NOW - 1_000,
    "tx_hash": "5xYz",
    "event_index": 2,
}


def with_(**changes: Any) -> bytes:
    body = {**GOOD, **changes}
    return json.dumps({k: v for k, v in body.items() if v is not DROP}).encode()


DROP = object()


def test_good_trade_decodes_to_domain_trade() -> None:
    t = decode_trade(with_(), NOW)
    assert (t.token, t.wallet, t.is_buy, t.ts_ms, t.tx_hash, t.event_index) == (
        "So1anaMint1111pump", "Wa11et", True, NOW - 1_000, "5xYz", 2,
    )  # fmt: skip
    assert t.volume_usd == 1000.0 * 0.002


@pytest.mark.parametrize(
    ("trans_time", "ts_ms"),
    [
        (1_699_999_999, 1_699_999_999_000),  # epoch seconds
        (1_699_999_999.5, 1_699_999_999_500),  # fractional seconds
        (1_699_999_999_123, 1_699_999_999_123),  # epoch milliseconds
        ("2023-11-14T22:13:19.123Z", 1_699_999_999_123),
        ("2023-11-15T00:13:19.123+02:00", 1_699_999_999_123),  # offset honoured
        ("2023-11-14T22:13:19.1239Z", 1_699_999_999_123),  # sub-ms floored
    ],
)
def test_trans_time_forms_convert_to_epoch_ms(trans_time: Any, ts_ms: int) -> None:
    assert decode_trade(with_(trans_time=trans_time), NOW).ts_ms == ts_ms


@pytest.mark.parametrize("side", ["buy", "BUY", "Buy", "sell", "SELL", "sElL"])
def test_side_accepted_in_any_case(side: str) -> None:
    assert decode_trade(with_(sell_buy=side), NOW).is_buy is (side.lower() == "buy")


def test_event_index_defaults_to_zero_and_unknown_fields_ignored() -> None:
    t = decode_trade(with_(event_index=DROP, extra_field={"a": 1}), NOW)
    assert t.event_index == 0


def test_native_amount_zero_is_allowed() -> None:
    assert decode_trade(with_(native_amount=0), NOW).native_amount == 0.0


BAD = [
    (b"not json", "$:malformed_json"),
    (b'{"token": "a",', "$:malformed_json"),
    (b"[1, 2]", "$:type"),
    (b'{"token": NaN}', "$:malformed_json"),
    (with_(token=DROP), "token:missing"),
    (with_(wallet=DROP), "wallet:missing"),
    (with_(sell_buy=DROP), "sell_buy:missing"),
    (with_(price_usd=DROP), "price_usd:missing"),
    (with_(trans_time=DROP), "trans_time:missing"),
    (with_(tx_hash=DROP), "tx_hash:missing"),
    (with_(token=""), "token:length"),
    (with_(token="x" * 129), "token:length"),
    (with_(wallet=""), "wallet:length"),
    (with_(token=12), "token:type"),
    (with_(price_usd="0.1"), "price_usd:type"),
    (with_(token_amount=True), "token_amount:type"),
    (with_(price_usd=0), "price_usd:range"),
    (with_(price_usd=-1.5), "price_usd:range"),
    (with_(token_amount=0), "token_amount:range"),
    (with_(native_amount=-0.1), "native_amount:range"),
    (with_(event_index=-1), "event_index:range"),
    (with_(event_index=1.5), "event_index:type"),
    (with_(sell_buy="hold"), "sell_buy:enum"),
    (with_(sell_buy=""), "sell_buy:enum"),
    (with_(trans_time="yesterday"), "trans_time:time_format"),
    (with_(trans_time="2023-11-14T22:13:19"), "trans_time:timezone"),
    (with_(trans_time=-5), "trans_time:range"),
    (with_(trans_time=True), "trans_time:type"),
    (with_(trans_time=NOW + 60_000), "trans_time:future"),
    (with_(trans_time="2099-01-01T00:00:00Z"), "trans_time:future"),
    (
        b'{"token":"a","wallet":"w","sell_buy":"buy","native_amount":1,"token_amount":1e999,'
        b'"price_usd":1,"trans_time":1,"tx_hash":"h"}',
        "token_amount:non_finite",
    ),
    # beyond the magnitudes every statistic can hold (MAX_AMOUNT, MIN_PRICE_USD)
    (with_(token_amount=1e300, price_usd=1e300), "token_amount:range"),
    (with_(token_amount=1.0000000000000002e100), "token_amount:range"),
    (with_(native_amount=1e101), "native_amount:range"),
    (with_(price_usd=1e101), "price_usd:range"),
    (with_(price_usd=9.9e-101), "price_usd:range"),
    (with_(price_usd=5e-324), "price_usd:range"),
]


@pytest.mark.parametrize(("raw", "reason"), BAD, ids=[r for _, r in BAD])
def test_bad_wire_input_rejected_with_field_and_rule(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidTradeError) as info:
        decode_trade(raw, NOW)
    assert info.value.reason == reason
    assert info.value.detail


def test_the_magnitude_limits_are_inclusive() -> None:
    trade = decode_trade(with_(token_amount=1e100, native_amount=1e100, price_usd=1e100), NOW)
    assert (trade.token_amount, trade.native_amount, trade.volume_usd) == (1e100, 1e100, 1e200)
    assert decode_trade(with_(price_usd=1e-100), NOW).price_usd == 1e-100


def test_future_skew_limit_is_inclusive() -> None:
    assert decode_trade(with_(trans_time=NOW + 5_000), NOW).ts_ms == NOW + 5_000
    with pytest.raises(InvalidTradeError):
        decode_trade(with_(trans_time=NOW + 5_001), NOW)


def test_encode_then_decode_round_trips() -> None:
    t = make_trade(token="T", wallet="w", is_buy=False, native_amount=0.1, token_amount=3.0,
                   price_usd=0.7, ts_ms=NOW, tx_hash="h", event_index=4)  # fmt: skip
    assert decode_trade(encode_trade(t), NOW) == t


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("token_amount", float("nan"), "token_amount:non_finite"),
        ("price_usd", float("inf"), "price_usd:non_finite"),
        ("native_amount", -1.0, "native_amount:range"),
    ],
)
def test_make_trade_applies_the_same_rules(field: str, value: float, reason: str) -> None:
    kwargs: dict[str, Any] = {
        "token": "T", "wallet": "w", "is_buy": True, "native_amount": 1.0,
        "token_amount": 1.0, "price_usd": 1.0, "ts_ms": 0, "tx_hash": "h",
    }  # fmt: skip
    kwargs[field] = value
    with pytest.raises(InvalidTradeError) as info:
        make_trade(**kwargs)
    assert info.value.reason == reason
