"""The ``engine-bars`` cases of ``bench/cases.py``: the ``engine`` case plus 1-minute bars and
indicators, fed as the worker feeds them (``service/pipeline.py``).

Per trade: ``Market.add``; when it returns ``APPLIED`` the trade also goes to its token's
``TokenBars`` (created on first use, grace 2 s, horizon 1 h). Every EVERY trades, per touched
token (the worker's write of a token): ``Market.stats``, then at the token's ``T``
(``TokenWindows.t_ms``) ``TokenBars.advance`` (final bars, which update the indicators),
``TokenBars.forming`` and ``TokenBars.confirm``. ``engine-bars-values`` also does what the
worker does with the indicators when final bars came out: ``Indicators.values()`` and
``TokenBars.snapshot()``. The final snapshot writes every token the same way.

The check (not timed) recounts the bars from the trades, independently of the bar builder:

* the final bars emitted are exactly the distinct ``(token, minute)`` pairs with
  ``minute + 60_000 + grace <= T`` at the end, each once, revision 0 (the trades come in time
  order, so nothing is corrected), with that minute's trade count and last price as close;
* Σ trades over the final bars and the bars not final at the end (the forming bar and a bar
  still in its grace) equals the trades applied, and Σ USD volume equals that of the trades;
* ``sma_20`` of the 5 busiest tokens equals the mean of their last 20 final closes.
"""

from __future__ import annotations

import gc
import math
import time
from collections import Counter
from itertools import pairwise

from tradepulse.core.bars import MINUTE_MS, Bar
from tradepulse.core.market import Market
from tradepulse.core.tokenbars import TokenBars
from tradepulse.core.trade import Trade
from tradepulse.core.types import TokenId, TsMs
from tradepulse.core.windows import DEFAULT_WINDOWS, AddResult, parse_windows

GRACE_MS = 2_000
HORIZON_MS = 3_600_000
APPLIED = AddResult.APPLIED


def run_engine_bars(trades: list[Trade], *, every: int, values: bool) -> dict[str, object]:
    market = Market(parse_windows(DEFAULT_WINDOWS))
    bars: dict[TokenId, TokenBars] = {}
    finals: list[Bar] = []
    touched: set[str] = set()
    evaluations = 0
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    started = time.perf_counter()
    for i, tr in enumerate(trades, start=1):
        if market.add(tr, tr.ts_ms) is APPLIED:
            tb = bars.get(tr.token)
            if tb is None:
                tb = bars[tr.token] = TokenBars.new(tr.token, grace_ms=GRACE_MS,
                                                    horizon_ms=HORIZON_MS)  # fmt: skip
            tb.add(tr)
        touched.add(tr.token)
        if i % every == 0:
            for token in touched:
                _write(market, bars, token, tr.ts_ms, finals, values)
            evaluations += len(touched)
            touched.clear()
    final_ms = max(t.ts_ms for t in trades[-1000:])
    for token in market.tokens:
        _write(market, bars, token, final_ms, finals, values)
    elapsed = time.perf_counter() - started
    return {
        "trades": len(trades),
        "seconds": elapsed,
        "token_evaluations": evaluations + len(market.tokens),
        "applied": market.applied,
        **check_bars(trades, market, bars, finals),
    }


def _write(market: Market, bars: dict[TokenId, TokenBars], token: TokenId, floor_ms: TsMs,
           finals: list[Bar], values: bool) -> None:  # fmt: skip
    """The bar part of the worker's write of one token (``Pipeline._update``)."""
    market.stats(token, floor_ms)
    tb = bars.get(token)
    if tb is None:
        return
    t_ms = market.tokens[token].t_ms
    emitted = tb.advance(t_ms)
    tb.forming(t_ms)
    if emitted:
        finals.extend(emitted)
        if values:
            _ = {"bar_open_ms": tb.indicators.last_open_ms, **tb.indicators.values()}
            tb.snapshot()
    tb.confirm()


def check_bars(trades: list[Trade], market: Market, bars: dict[TokenId, TokenBars],
               finals: list[Bar]) -> dict[str, object]:  # fmt: skip
    """Assert the bars against a recount from the trades; the counts checked."""
    assert all(a.ts_ms <= b.ts_ms for a, b in pairwise(trades))
    counts: Counter[tuple[TokenId, TsMs]] = Counter()
    closes: dict[tuple[TokenId, TsMs], float] = {}
    for tr in trades:
        key = (tr.token, tr.ts_ms - tr.ts_ms % MINUTE_MS)
        counts[key] += 1
        closes[key] = tr.price_usd  # time order, ties in arrival order: the last is the close
    end_ms = trades[-1].ts_ms
    assert all(tw.t_ms == end_ms for tw in market.tokens.values()), "T of a token at the end"
    final_keys = {k for k in counts if k[1] + MINUTE_MS + GRACE_MS <= end_ms}
    emitted = [(b.token, b.open_ms) for b in finals]
    assert len(finals) == len(final_keys), (len(finals), len(final_keys))
    assert set(emitted) == final_keys, "final bars emitted != final (token, minute) pairs"
    assert all(b.revision == 0 for b in finals), "a bar was corrected: trades are in order"
    for bar in finals:
        key = (bar.token, bar.open_ms)
        assert bar.trades == counts[key] and bar.close == closes[key], bar
    open_bars = [b for tb in bars.values() for b in tb.builder.bars()
                 if b.open_ms + MINUTE_MS + GRACE_MS > tb.builder.clock_ms]  # fmt: skip
    for tb in bars.values():
        forming = tb.forming(end_ms)
        assert forming is None or forming.open_ms == max(b.open_ms for b in tb.builder.bars())
    bar_trades = sum(b.trades for b in finals) + sum(b.trades for b in open_bars)
    assert bar_trades == market.applied == len(trades), (bar_trades, market.applied)
    bar_usd = math.fsum(b.volume_usd for b in [*finals, *open_bars])
    assert math.isclose(bar_usd, math.fsum(t.volume_usd for t in trades), rel_tol=1e-9)
    return {
        "final_bars": len(finals),
        "open_bars": len(open_bars),
        "bar_trades": bar_trades,
        "sma_checked": _check_sma(finals, bars, counts),
    }


def _check_sma(finals: list[Bar], bars: dict[TokenId, TokenBars],
               counts: Counter[tuple[TokenId, TsMs]]) -> int:  # fmt: skip
    """``sma_20`` of the 5 busiest tokens = mean of their last 20 final closes."""
    per_token: Counter[TokenId] = Counter()
    for (token, _), n in counts.items():
        per_token[token] += n
    checked = 0
    for token, _ in per_token.most_common(5):
        closes = [b.close for b in finals if b.token == token]
        sma = bars[token].indicators.values()["sma_20"]
        if len(closes) < 20:
            assert sma is None, (token, sma)
            continue
        assert sma is not None and math.isclose(sma, math.fsum(closes[-20:]) / 20, rel_tol=1e-12)
        checked += 1
    return checked
