"""The real market data samples (``shared/data/real``) turned into wire-format trades.

The folder is found through the environment variable ``TRADEPULSE_REAL_DATA`` or, by default,
at ``<repo>/../shared/data/real``. Tests that need it call :func:`require_real_data`, which skips
with the path it looked at when the folder is absent. Nothing here copies data into the
repository: converted trades are written as JSON Lines into a directory the caller chooses
(a pytest ``tmp_path``).

Every converter returns wire dicts (ARCHITECTURE §3) sorted ascending by ``trans_time``;
the sort is stable, so trades with equal times keep their order in the source file. Times are
always epoch milliseconds (int). Numbers are Python floats parsed from the CSV text with
``float()`` (correctly rounded), so the JSON written here and the values the oracle uses are
bit-identical.

Conversion rules and assumptions, per file:

pump.fun swaps (``dex_solana_pumpfun/pumpfun_swaps_*.csv``)
    token = ``mint``; wallet = ``user``; side = buy when ``is_buy`` is 1, else sell;
    native_amount = ``sol_amount / 1e9`` (SOL); token_amount = ``token_amount / 1e6`` (pump.fun
    tokens have 6 decimals); price_usd = ``(sol_amount / 1e9) / (token_amount / 1e6) * SOL_USD``
    with ``SOL_USD = 190.0``. That rate is an ASSUMED FIXED RATE: the data is SOL-quoted and the
    folder has no SOL/USD series, so every USD figure of this file is "SOL × 190". trans_time =
    ``timestamp * 1000`` (the on-chain clock has 1-second resolution). tx_hash = ``sig``;
    event_index = how many earlier rows of the file (in file order, counting every row) carry
    the same ``sig`` (signatures repeat when a transaction holds several swaps).
    Dropped: rows with ``token_amount == 0`` (a trade needs token_amount > 0) and rows whose
    price would be 0, i.e. ``sol_amount == 0`` (a wire trade needs price_usd > 0); the sample
    has one such row (source id 58) and no zero-token rows.

Binance spot BTCUSDT / ETHUSDT trades (``cex_trades/binance_spot_{BTC,ETH}USDT_trades_*.csv``)
    token = ``symbol``; price_usd = ``price`` (USDT taken as USD); token_amount = ``qty``;
    native_amount = ``price * qty`` (quote currency); side = sell when ``is_buyer_maker`` is true
    (the taker sold), else buy; trans_time = ``trade_time_ms`` (exchange time, not the capture
    clock); tx_hash = ``str(trade_id)``; event_index = 0. A CEX has no wallets: wallet is the
    SYNTHETIC stand-in ``f"{symbol}-{trade_id % 97}"`` so that unique-wallet counts are
    exercised with realistic repetition.

Binance XRP/ETH aggregate trades (``cex_trades/binance_spot_XRPETH_aggtrades_*.csv``)
    token = ``"XRPETH"``; price_usd = ``price``: the price is ETH per XRP and is treated as if it
    were USD (unit-free for the statistics); token_amount = ``qty``; native_amount =
    ``price * qty`` (ETH); side = the ``side`` column (taker side); trans_time = ``timestamp_ms``;
    tx_hash = ``str(agg_trade_id)``; event_index = 0; wallet = synthetic
    ``f"XRPETH-{agg_trade_id % 97}"`` (no wallets on a CEX).

freqtrade order-flow ETHUSDT trades (``cex_trades/freqtrade_orderflow_ETHUSDT_trades_*.csv``)
    token = ``"ETHUSDT-ORDERFLOW"`` (the file names neither venue nor symbol); price_usd =
    ``price`` (USDT as USD); token_amount = ``amount``; native_amount = ``cost`` (quote amount as
    given in the file); side = ``side``; trans_time = ``timestamp`` (ms); tx_hash = ``str(id)``;
    event_index = 0; wallet = synthetic ``f"ETHUSDT-ORDERFLOW-{id % 97}"``.

Uniswap V2 UNI/WETH swaps (``dex_evm_uniswap/uniswapv2_UNI-WETH_swaps_*.csv``)
    The file is newest first; it is sorted ascending by ``timestamp`` (stable, so swaps of one
    block keep file order). token = ``pair.id``; side = buy when ``amount0Out > 0`` (UNI left the
    pool), else sell; token_amount = ``amount0In + amount0Out`` (UNI); price_usd =
    ``amountUSD / token_amount`` (The Graph's USD value); native_amount =
    ``amount1In + amount1Out`` (WETH); tx_hash = ``transaction.id``; event_index = the log index
    after ``-`` in ``id``; trans_time = ``timestamp * 1000`` (block time, seconds). The data has
    no trader: wallet is the SYNTHETIC stand-in ``"uni-" + last two hex digits of the tx hash``.
    Dropped: rows with a zero UNI amount or a zero USD value (price would be 0 or undefined);
    the sample has none.

Hyperliquid BTC perpetual trades (``perp_dex_hyperliquid/hyperliquid_perp_BTC_trades_*.csv``)
    token = ``coin`` (``"BTC"``); wallet = ``buyer`` when ``side`` is ``B`` (taker bought, side
    buy), ``seller`` when ``A`` (taker sold, side sell); price_usd = ``px`` (USDC as USD);
    token_amount = ``sz``; native_amount = ``px * sz`` (USDC); trans_time = ``time_ms``;
    tx_hash = ``str(tid)`` (the L1 ``hash`` is all zeros on some rows, the trade id is unique);
    event_index = 0.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
REAL_DATA = Path(
    os.environ.get("TRADEPULSE_REAL_DATA") or (REPO_ROOT / ".." / "shared" / "data" / "real")
).resolve()

SOL_USD = 190.0
"""Assumed fixed SOL/USD rate for pump.fun prices (the data has no SOL/USD series)."""

WALLET_BUCKETS = 97
"""Synthetic wallets on venues without wallets: ``f"{token}-{trade_id % WALLET_BUCKETS}"``."""

PUMPFUN = "dex_solana_pumpfun/pumpfun_swaps_20251020T1641Z_shared.csv"
BINANCE_BTCUSDT = "cex_trades/binance_spot_BTCUSDT_trades_20240808T2354Z-20240809T0005Z.csv"
BINANCE_ETHUSDT = "cex_trades/binance_spot_ETHUSDT_trades_20240808T2354Z-20240809T0005Z.csv"
BINANCE_XRPETH = (
    "cex_trades/" + "binance_spot_XRPETH_aggtrades_20191011T0000Z-20191012T0600Z_shared.csv"
)
ORDERFLOW_ETHUSDT = "cex_trades/freqtrade_orderflow_ETHUSDT_trades_20230202T0920Z.csv"
UNISWAP_UNI_WETH = "dex_evm_uniswap/uniswapv2_UNI-WETH_swaps_20210614-20210617_shared.csv"
HYPERLIQUID_BTC = "perp_dex_hyperliquid/hyperliquid_perp_BTC_trades_20250126T1913Z_sample.csv"

WireDict = dict[str, Any]


def real_data_available() -> bool:
    return REAL_DATA.is_dir()


def require_real_data() -> Path:
    """The real data folder, or skip the calling test when it is absent."""
    if not real_data_available():
        pytest.skip(f"real data folder not found at {REAL_DATA}: set TRADEPULSE_REAL_DATA")
    return REAL_DATA


def _rows(relative: str) -> Iterator[dict[str, str]]:
    with (REAL_DATA / relative).open(newline="", encoding="utf-8") as fh:
        yield from csv.DictReader(fh)


def _trade(
    *,
    token: str,
    wallet: str,
    is_buy: bool,
    native_amount: float,
    token_amount: float,
    price_usd: float,
    trans_time_ms: int,
    tx_hash: str,
    event_index: int = 0,
) -> WireDict:
    return {
        "token": token,
        "wallet": wallet,
        "sell_buy": "buy" if is_buy else "sell",
        "native_amount": native_amount,
        "token_amount": token_amount,
        "price_usd": price_usd,
        "trans_time": trans_time_ms,
        "tx_hash": tx_hash,
        "event_index": event_index,
    }


def _by_time(trades: Iterable[WireDict]) -> list[WireDict]:
    return sorted(trades, key=lambda t: t["trans_time"])  # stable: file order on equal times


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def pumpfun_trades() -> list[WireDict]:
    out = []
    seen_sigs: dict[str, int] = {}
    for row in _rows(PUMPFUN):
        sig = row["sig"]
        event_index = seen_sigs.get(sig, 0)
        seen_sigs[sig] = event_index + 1
        lamports = int(row["sol_amount"])
        raw_tokens = int(row["token_amount"])
        if raw_tokens == 0 or lamports == 0:
            continue  # token_amount must be > 0 and price_usd > 0 on the wire
        sol = lamports / 1e9
        tokens = raw_tokens / 1e6
        out.append(
            _trade(
                token=row["mint"],
                wallet=row["user"],
                is_buy=_bool(row["is_buy"]),
                native_amount=sol,
                token_amount=tokens,
                price_usd=sol / tokens * SOL_USD,
                trans_time_ms=int(row["timestamp"]) * 1000,
                tx_hash=sig,
                event_index=event_index,
            )
        )
    return _by_time(out)


def _binance_spot_trades(relative: str) -> list[WireDict]:
    out = []
    for row in _rows(relative):
        symbol = row["symbol"]
        trade_id = int(row["trade_id"])
        price = float(row["price"])
        qty = float(row["qty"])
        out.append(
            _trade(
                token=symbol,
                wallet=f"{symbol}-{trade_id % WALLET_BUCKETS}",
                is_buy=not _bool(row["is_buyer_maker"]),
                native_amount=price * qty,
                token_amount=qty,
                price_usd=price,
                trans_time_ms=int(row["trade_time_ms"]),
                tx_hash=str(trade_id),
            )
        )
    return _by_time(out)


def binance_btcusdt_trades() -> list[WireDict]:
    return _binance_spot_trades(BINANCE_BTCUSDT)


def binance_ethusdt_trades() -> list[WireDict]:
    return _binance_spot_trades(BINANCE_ETHUSDT)


def _side(text: str) -> bool:
    value = text.strip().lower()
    if value not in ("buy", "sell"):
        raise ValueError(f"not a side: {text!r}")
    return value == "buy"


def binance_xrpeth_trades() -> list[WireDict]:
    token = "XRPETH"
    out = []
    for row in _rows(BINANCE_XRPETH):
        agg_id = int(row["agg_trade_id"])
        price = float(row["price"])
        qty = float(row["qty"])
        out.append(
            _trade(
                token=token,
                wallet=f"{token}-{agg_id % WALLET_BUCKETS}",
                is_buy=_side(row["side"]),
                native_amount=price * qty,
                token_amount=qty,
                price_usd=price,
                trans_time_ms=int(row["timestamp_ms"]),
                tx_hash=str(agg_id),
            )
        )
    return _by_time(out)


def orderflow_ethusdt_trades() -> list[WireDict]:
    token = "ETHUSDT-ORDERFLOW"
    out = []
    for row in _rows(ORDERFLOW_ETHUSDT):
        trade_id = int(row["id"])
        out.append(
            _trade(
                token=token,
                wallet=f"{token}-{trade_id % WALLET_BUCKETS}",
                is_buy=_side(row["side"]),
                native_amount=float(row["cost"]),
                token_amount=float(row["amount"]),
                price_usd=float(row["price"]),
                trans_time_ms=int(row["timestamp"]),
                tx_hash=str(trade_id),
            )
        )
    return _by_time(out)


def uniswap_uni_weth_trades() -> list[WireDict]:
    out = []
    for row in _rows(UNISWAP_UNI_WETH):
        uni_in, uni_out = float(row["amount0In"]), float(row["amount0Out"])
        weth = float(row["amount1In"]) + float(row["amount1Out"])
        usd = float(row["amountUSD"])
        tokens = uni_in + uni_out
        if tokens == 0 or usd == 0:
            continue  # no price: the wire needs token_amount > 0 and price_usd > 0
        tx_hash = row["transaction.id"]
        out.append(
            _trade(
                token=row["pair.id"],
                wallet=f"uni-{tx_hash[-2:]}",
                is_buy=uni_out > 0,
                native_amount=weth,
                token_amount=tokens,
                price_usd=usd / tokens,
                trans_time_ms=int(row["timestamp"]) * 1000,
                tx_hash=tx_hash,
                event_index=int(row["id"].rsplit("-", 1)[1]),
            )
        )
    return _by_time(out)


def hyperliquid_btc_trades() -> list[WireDict]:
    out = []
    for row in _rows(HYPERLIQUID_BTC):
        side = row["side"].strip()
        if side not in ("A", "B"):
            raise ValueError(f"not a Hyperliquid side: {side!r}")
        is_buy = side == "B"
        price = float(row["px"])
        size = float(row["sz"])
        out.append(
            _trade(
                token=row["coin"],
                wallet=row["buyer"] if is_buy else row["seller"],
                is_buy=is_buy,
                native_amount=price * size,
                token_amount=size,
                price_usd=price,
                trans_time_ms=int(row["time_ms"]),
                tx_hash=str(int(row["tid"])),
            )
        )
    return _by_time(out)


@dataclass(frozen=True)
class RealTradeFile:
    """One real trade file and its converter to wire dicts."""

    name: str
    relative_path: str
    convert: Callable[[], list[WireDict]]

    @property
    def path(self) -> Path:
        return REAL_DATA / self.relative_path


REAL_TRADE_FILES: dict[str, RealTradeFile] = {
    f.name: f
    for f in (
        RealTradeFile("pumpfun", PUMPFUN, pumpfun_trades),
        RealTradeFile("binance_btcusdt", BINANCE_BTCUSDT, binance_btcusdt_trades),
        RealTradeFile("binance_ethusdt", BINANCE_ETHUSDT, binance_ethusdt_trades),
        RealTradeFile("binance_xrpeth", BINANCE_XRPETH, binance_xrpeth_trades),
        RealTradeFile("orderflow_ethusdt", ORDERFLOW_ETHUSDT, orderflow_ethusdt_trades),
        RealTradeFile("uniswap_uni_weth", UNISWAP_UNI_WETH, uniswap_uni_weth_trades),
        RealTradeFile("hyperliquid_btc", HYPERLIQUID_BTC, hyperliquid_btc_trades),
    )
}


def write_jsonl(trades: Iterable[WireDict], path: Path) -> Path:
    """Write ``trades`` one JSON object per line (floats as shortest round-trip repr)."""
    with path.open("w", encoding="utf-8") as fh:
        for trade in trades:
            fh.write(json.dumps(trade, allow_nan=False, separators=(",", ":")))
            fh.write("\n")
    return path


def convert_to_jsonl(name: str, directory: Path) -> tuple[list[WireDict], Path]:
    """Convert the real file ``name`` (a key of ``REAL_TRADE_FILES``) into
    ``directory/<name>.jsonl``; return the trades and the path."""
    trades = REAL_TRADE_FILES[name].convert()
    return trades, write_jsonl(trades, directory / f"{name}.jsonl")


# --- 1-minute OHLCV files (``ohlcv_1m/``) ---------------------------------------------------

OHLCV_1M_FILES: dict[str, str] = {
    "hyperliquid_fartcoin": "ohlcv_1m/"
    + "hyperliquid_perp_FARTCOIN-USDC_1m_ohlcv_20250721T0958Z-20250726T0541Z.csv",
    "hyperliquid_kpepe": "ohlcv_1m/"
    + "hyperliquid_perp_kPEPE-USDC_1m_ohlcv_20250721T0748Z-20250726T0500Z.csv",
    "hyperliquid_wif": "ohlcv_1m/"
    + "hyperliquid_perp_WIF-USDC_1m_ohlcv_20250721T1122Z-20250726T0521Z.csv",
    "hyperliquid_popcat": "ohlcv_1m/"
    + "hyperliquid_perp_POPCAT-USDC_1m_ohlcv_20250721T0822Z-20250726T0529Z.csv",
    "hyperliquid_pengu": "ohlcv_1m/"
    + "hyperliquid_perp_PENGU-USDC_1m_ohlcv_20250721T0953Z-20250726T0541Z.csv",
    "binance_xrpeth": "ohlcv_1m/"
    + "binance_spot_XRPETH_1m_ohlcv_freqtrade_20191011T0000Z-20191012T0600Z_shared.csv",
    "freqtrade_unittest_btc": "ohlcv_1m/freqtrade_UNITTEST_BTC_1m_ohlcv_20171104-20171114.csv",
}
"""The 1-minute OHLCV files by short name (see SOURCES.md for what each one is)."""


def ohlcv_1m_rows(name: str) -> list[dict[str, Any]]:
    """The bars of ``OHLCV_1M_FILES[name]``, oldest first, as dicts ``open_ms`` (int epoch
    ms of the UTC minute start, from ``open_time_utc`` ISO text or ``open_time_ms``) and
    ``open``, ``high``, ``low``, ``close``, ``volume`` (``float()`` of the CSV text).
    Missing minutes stay missing; nothing is filled or derived here."""
    from datetime import UTC, datetime, timedelta

    out = []
    for row in _rows(OHLCV_1M_FILES[name]):
        if "open_time_ms" in row:
            open_ms = int(row["open_time_ms"])
        else:
            moment = datetime.fromisoformat(row["open_time_utc"])
            open_ms = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
        bar: dict[str, Any] = {"open_ms": open_ms}
        for field in ("open", "high", "low", "close", "volume"):
            bar[field] = float(row[field])
        out.append(bar)
    return sorted(out, key=lambda b: b["open_ms"])


# ---------------------------------------------------------------------------- indicators


def indicator_reference(name: str) -> list[dict[str, str]]:
    """Rows of ``indicator_reference/ta_cs-<name>.csv`` (``rsi``, ``macd``, ``ppo``,
    ``bbands``, ``vwap``) as text, columns as in the file (see SOURCES.md)."""
    return list(_rows(f"indicator_reference/ta_cs-{name}.csv"))
