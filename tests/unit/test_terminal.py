"""The terminal demo: it draws a live token table from synthetic or replayed trades."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console

from tradepulse.adapters.synthetic import SyntheticMarket, write_jsonl
from tradepulse.core.errors import InputError
from tradepulse.core.market import Market
from tradepulse.core.trade import make_trade
from tradepulse.core.windows import DEFAULT_WINDOWS, WindowStats, parse_windows
from tradepulse.terminal import (
    SyntheticSource,
    compact,
    rank_spec,
    run_terminal_demo,
    short_token,
    shown_specs,
    window_cell,
)

SPECS = parse_windows(DEFAULT_WINDOWS)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=200), out


def _plain(out: io.StringIO) -> str:
    return _ANSI.sub("", out.getvalue())


def test_demo_synthetic_two_seconds_draws_token_table() -> None:
    console, out = _console()
    run_terminal_demo(specs=SPECS, duration_s=2.5, rate_per_s=400.0, console=console)
    text = _plain(out)
    tokens = SyntheticMarket(seed=0, start_ms=0).token_names
    assert sum(short_token(t) in text for t in tokens) >= 3
    assert "5min ▼" in text and "1hour" in text
    assert re.search(r"\d+ \(\d+/\d+\) \$[\d.]+k? \d+w [+-]\d+\.\d%", text)
    assert re.search(r"applied [\d,]+ │ [\d,]+ trades/s │ tokens \d+", text)
    assert "tradepulse demo finished:" in text.splitlines()[-1]


def test_demo_replay_file_shows_its_tokens_and_counts_bad_lines(tmp_path: Path) -> None:
    trades = list(SyntheticMarket(seed=4, tokens=3, start_ms=1_700_000_000_000).generate(300))
    path = tmp_path / "trades.jsonl"
    write_jsonl(trades, path)
    with path.open("ab") as f:
        f.write(b"not json\n{}\n")
    console, out = _console()
    run_terminal_demo(specs=SPECS, replay=path, speed=1e6, duration_s=1.0, console=console)
    text = _plain(out)
    for token in {t.token for t in trades}:
        assert short_token(token) in text
    assert "bad lines 2" in text
    assert "replay finished" in text
    assert "300 trades applied" in text.splitlines()[-1]


def test_demo_replay_paces_trades_by_original_time(tmp_path: Path) -> None:
    trades = [
        make_trade(token=token, wallet="w", is_buy=True, native_amount=1.0, token_amount=10.0,
                   price_usd=1.0, ts_ms=ts_ms, tx_hash=token)
        for token, ts_ms in (("EARLY", 1_000), ("LATER", 3_600_000))
    ]  # fmt: skip
    path = tmp_path / "two.jsonl"
    write_jsonl(trades, path)
    console, out = _console()
    run_terminal_demo(specs=SPECS, replay=path, duration_s=1.0, console=console)
    text = _plain(out)
    assert "EARLY" in text
    assert "LATER" not in text
    assert "1 trades applied" in text.splitlines()[-1]


def test_demo_missing_replay_file_raises_input_error(tmp_path: Path) -> None:
    console, _ = _console()
    with pytest.raises(InputError):
        run_terminal_demo(specs=SPECS, replay=tmp_path / "none.jsonl", console=console)


def test_demo_bad_speed_raises_value_error() -> None:
    with pytest.raises(ValueError, match="speed"):
        run_terminal_demo(specs=SPECS, speed=0.0, duration_s=0.1)


def test_rank_spec_without_5min_is_second_window() -> None:
    assert rank_spec(parse_windows("1min,15min,1hour")).name == "15min"
    assert rank_spec(parse_windows("300s,1hour")).name == "300s"
    assert rank_spec(parse_windows("1hour")).name == "1hour"


def test_shown_specs_narrow_room_keeps_rank_window() -> None:
    widths = {s.name: 30 for s in SPECS}
    assert [s.name for s in shown_specs(SPECS, widths, 65)] == ["1min", "5min"]
    assert [s.name for s in shown_specs(SPECS, widths, 10)] == ["5min"]
    assert shown_specs(SPECS, widths, 1_000) == SPECS


def test_short_token_long_name_abbreviated_short_kept() -> None:
    assert short_token("7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsUpump") == "7xKX…pump"
    assert short_token("BONK") == "BONK"


def test_compact_large_numbers_get_suffix() -> None:
    assert [compact(x) for x in (7, 2.5, 999, 1_234, 2_500_000, 3e9)] == [
        "7", "2.50", "999", "1.2k", "2.5M", "3.0B",
    ]  # fmt: skip


def test_window_cell_empty_window_is_dash() -> None:
    empty = WindowStats(0, 0, 0, 0.0, 0.0, 0.0, 0.0, 0, 0, 0, 1.0, 1.0, 1.0, 1.0, 0.0,
                        None, None, None, 0)  # fmt: skip
    assert window_cell(empty).plain == "–"
    assert window_cell(None).plain == "–"


def test_demo_long_refresh_first_table_drawn_after_first_tick() -> None:
    console, out = _console()
    run_terminal_demo(specs=SPECS, refresh_s=30.0, duration_s=1.5, console=console)
    assert _plain(out).count("cells: trades") >= 2  # the first table plus the final one


def test_synthetic_backfill_fills_the_longer_windows_at_start() -> None:
    now_ms = 1_750_000_000_000
    source = SyntheticSource(seed=1, tokens=20, rate_per_s=50.0, now_ms=now_ms,
                              backfill_ms=300_000)  # fmt: skip
    trades = source.poll(now_ms)
    times = [t.ts_ms for t in trades]
    assert all(now_ms - 300_000 < t <= now_ms for t in times)
    assert min(times) < now_ms - 240_000  # history reaches back most of the 5 minutes
    assert source.poll(now_ms) == []  # nothing new until the clock moves
    market = Market(parse_windows("1min,5min"))
    market.add_many(trades, now_ms)
    busiest = max(market.tokens, key=lambda k: market.stats(k, now_ms)["5min"].trade_count)
    stats = market.stats(busiest, now_ms)
    assert stats["5min"].trade_count > stats["1min"].trade_count > 0
