"""The terminal demo: the window engine on the wall clock, drawn as a live table.

Every tick (``TICK_S``) the trades of the elapsed wall time are fed to a ``Market`` with
the wall clock as floor: synthetic trades (``SyntheticMarket.live``) or the lines of a
JSONL file replayed in real time. Every refresh the tokens with the most volume in the
ranking window (5 minutes, else the second configured window) are shown with, per window,
trades (buys/sells), volume USD, unique wallets and price change.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import msgspec
from rich import box
from rich.cells import cell_len
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from tradepulse.adapters.clock import wall_now_ms
from tradepulse.adapters.files import iter_lines, open_input
from tradepulse.adapters.synthetic import SyntheticMarket
from tradepulse.adapters.wire import decode_trade
from tradepulse.core.errors import InvalidTradeError
from tradepulse.core.market import Market
from tradepulse.core.trade import Trade
from tradepulse.core.types import MS_PER_MINUTE, TsMs
from tradepulse.core.windows import WindowSpec, WindowStats

logger = logging.getLogger(__name__)

#: Seconds between two feeds of trades into the market.
TICK_S = 0.25
RANK_WINDOW_MS = 5 * MS_PER_MINUTE
#: Replayed trades are re-stamped, so their original time may lie anywhere.
_NO_FUTURE_LIMIT_MS = 1 << 62
_COLUMN_GAP = 3  # characters between two columns of the table (padding and rule)


class TradeFeed(Protocol):
    """Where the demo's trades come from."""

    label: str

    def poll(self, now_ms: TsMs) -> list[Trade]:
        """The trades due by wall time ``now_ms`` (stamped at or before it)."""
        ...


class SyntheticSource:
    """``SyntheticMarket.live`` driven by the wall clock."""

    def __init__(
        self, *, seed: int, tokens: int, rate_per_s: float, now_ms: TsMs, backfill_ms: int = 0
    ) -> None:
        """The first ``poll`` also returns ``backfill_ms`` of history before ``now_ms``, so
        the longer windows are not empty at start."""
        self.label = f"synthetic · seed {seed} · {tokens} tokens · mean {rate_per_s:g}/s"
        self._market = SyntheticMarket(
            seed=seed, tokens=tokens, rate_per_s=rate_per_s, start_ms=now_ms - backfill_ms
        )
        self._last_ms = now_ms - backfill_ms

    def poll(self, now_ms: TsMs) -> list[Trade]:
        elapsed_ms = now_ms - self._last_ms
        if elapsed_ms <= 0:
            return []
        self._last_ms = now_ms
        return self._market.live(now_ms, elapsed_ms)


class ReplaySource:
    """A JSONL trade file paced in real time: a trade of original time ``t`` is due
    ``(t - first_t) / speed`` after the start and is re-stamped to that wall time.
    Undecodable lines are counted in ``bad``."""

    def __init__(self, lines: Iterator[tuple[int, bytes]], *, name: str, speed: float,
                 start_ms: TsMs) -> None:  # fmt: skip
        self.label = f"replay {name} · ×{speed:g}"
        self.bad = 0
        self.finished = False
        self._lines = lines
        self._speed = speed
        self._start_ms = start_ms
        self._first_ms: TsMs | None = None
        self._pending: Trade | None = None

    def poll(self, now_ms: TsMs) -> list[Trade]:
        out: list[Trade] = []
        while True:
            trade = self._pending or self._read()
            if trade is None:
                return out
            due_ms = self._due_ms(trade)
            if due_ms > now_ms:
                self._pending = trade
                return out
            self._pending = None
            out.append(msgspec.structs.replace(trade, ts_ms=due_ms))

    def _due_ms(self, trade: Trade) -> TsMs:
        """Wall time (epoch ms) at which ``trade`` is released."""
        if self._first_ms is None:
            self._first_ms = trade.ts_ms
        return self._start_ms + int((trade.ts_ms - self._first_ms) / self._speed)

    def _read(self) -> Trade | None:
        """The next decodable trade of the file; ``None`` at its end."""
        for line_no, raw in self._lines:
            try:
                return decode_trade(raw, 0, _NO_FUTURE_LIMIT_MS)
            except InvalidTradeError as exc:
                self.bad += 1
                logger.debug("replay line %d rejected: %s", line_no, exc.reason)
        self.finished = True
        return None


@dataclass
class _Run:
    """What the header shows: the source and the counters of the run."""

    source: TradeFeed
    market: Market
    start_s: float  # time.monotonic() at start
    rate_applied: int = 0  # applied count at the previous refresh
    rate_s: float = 0.0  # monotonic time of the previous refresh
    rate_per_s: float = 0.0

    def __post_init__(self) -> None:
        self.rate_s = self.start_s

    def elapsed_s(self) -> float:
        return time.monotonic() - self.start_s

    def update_rate(self) -> None:
        """Trades applied per second since the previous refresh."""
        now_s = time.monotonic()
        if now_s > self.rate_s:
            self.rate_per_s = (self.market.applied - self.rate_applied) / (now_s - self.rate_s)
        self.rate_applied, self.rate_s = self.market.applied, now_s


def short_token(token: str) -> str:
    """A mint address as ``"7xKX…pump"`` (first and last four characters); names of at
    most 12 characters are kept whole."""
    return token if len(token) <= 12 else f"{token[:4]}…{token[-4:]}"


def rank_spec(specs: tuple[WindowSpec, ...]) -> WindowSpec:
    """The window tokens are ranked by: 5 minutes if configured, else the second window
    (the only one when there is just one)."""
    for spec in specs:
        if spec.duration_ms == RANK_WINDOW_MS:
            return spec
    return specs[1] if len(specs) > 1 else specs[0]


def shown_specs(
    specs: tuple[WindowSpec, ...], widths: dict[str, int], room: int
) -> tuple[WindowSpec, ...]:
    """The windows whose columns (``widths`` by window name, padding included) fit in
    ``room`` characters, shortest first; the ranking window is always shown."""
    rank = rank_spec(specs)
    used = widths[rank.name]
    chosen = {rank.name}
    for spec in specs:
        if spec != rank and used + widths[spec.name] <= room:
            used += widths[spec.name]
            chosen.add(spec.name)
        elif spec != rank:
            break
    return tuple(s for s in specs if s.name in chosen)


def top_tokens(
    market: Market, rank: WindowSpec, now_ms: TsMs, top: int
) -> list[tuple[str, dict[str, WindowStats]]]:
    """The ``top`` tokens by total USD volume in ``rank`` at ``now_ms`` with the stats of
    every window (tokens without a trade in ``rank`` are skipped)."""
    rows = []
    for token in market.active_since(now_ms - rank.duration_ms):
        stats = market.stats(token, now_ms)
        if rank.name in stats and stats[rank.name].trade_count:
            rows.append((token, stats))
    rows.sort(key=lambda row: row[1][rank.name].total_volume, reverse=True)
    return rows[:top]


def compact(value: float) -> str:
    """``1234 -> "1.2k"``, ``2_500_000 -> "2.5M"``; below 1000 as is (2 decimals if
    fractional and below 10)."""
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.1f}{suffix}"
    if value == int(value) or abs(value) >= 10:
        return f"{value:.0f}"
    return f"{value:.2f}"


def change_text(pct: float) -> Text:
    """Price change in percent, green when up, red when down, dim when flat."""
    style = "green" if pct > 0 else "red" if pct < 0 else "dim"
    return Text(f"{pct:+.1f}%", style=style)


def window_cell(stats: WindowStats | None) -> Text:
    """``trades (buys/sells)  $volume  wallets w  change %``; a dim dash when empty."""
    if stats is None or not stats.trade_count:
        return Text("–", style="dim")
    text = Text(f"{compact(stats.trade_count)} ")
    text.append(f"({compact(stats.buy_count)}/{compact(stats.sell_count)}) ", style="dim")
    text.append(f"${compact(stats.total_volume)} ", style="bold")
    text.append(f"{compact(stats.unique_wallets)}w ", style="cyan")
    return text.append_text(change_text(stats.price_change_pct))


def _column_width(title: str, values: list[str]) -> int:
    """Characters a table column takes: its widest text plus the gap to the next one."""
    return max(cell_len(v) for v in [title, *values]) + _COLUMN_GAP


def render_table(
    rows: list[tuple[str, dict[str, WindowStats]]], specs: tuple[WindowSpec, ...], width: int
) -> Table:
    """The token table: rank, token, last price and one cell per window, leaving out the
    longest windows when the columns would not fit in ``width`` characters."""
    rank = rank_spec(specs)
    titles = {s.name: f"{s.name} ▼" if s == rank else s.name for s in specs}
    cells = {s.name: [window_cell(stats.get(s.name)) for _, stats in rows] for s in specs}
    widths = {
        name: _column_width(titles[name], [c.plain for c in column])
        for name, column in cells.items()
    }
    prices = [f"{stats[rank.name].end_price:.3g}" for _, stats in rows]
    fixed = (
        _column_width("#", [str(len(rows))])
        + _column_width("token", [short_token(t) for t, _ in rows])
        + _column_width("price $", prices)
    )
    shown = shown_specs(specs, widths, width - fixed - 1)
    table = Table(box=box.SIMPLE_HEAD, caption_justify="left")
    table.caption = "cells: trades (buys/sells)  volume USD  unique wallets  price change"
    hidden = [s.name for s in specs if s not in shown]
    if hidden:
        table.caption += f"  ({', '.join(hidden)} hidden: widen the terminal)"
    table.add_column("#", justify="right", style="dim")
    table.add_column("token", style="bold magenta", no_wrap=True)
    table.add_column("price $", justify="right", no_wrap=True)
    for spec in shown:
        table.add_column(titles[spec.name], justify="right", no_wrap=True)
    for i, (token, _) in enumerate(rows):
        row_cells = [cells[spec.name][i] for spec in shown]
        table.add_row(str(i + 1), short_token(token), prices[i], *row_cells)
    return table


def render_header(run: _Run, rank: WindowSpec) -> Text:
    """One line: source, trades applied, trades/s, tokens, elapsed, rejections."""
    elapsed = int(run.elapsed_s())
    hours, rest = divmod(elapsed, 3600)
    market = run.market
    text = Text("tradepulse demo", style="bold")
    text.append(f" │ {run.source.label} │ applied {market.applied:,}")
    text.append(f" │ {run.rate_per_s:,.0f} trades/s │ tokens {len(market.tokens):,}")
    text.append(f" │ elapsed {hours}:{rest // 60:02d}:{rest % 60:02d}")
    text.append(f" │ ranked by {rank.name} volume", style="dim")
    if isinstance(run.source, ReplaySource):
        text.append(f" │ bad lines {run.source.bad:,}")
        if run.source.finished:
            text.append(" │ replay finished", style="yellow")
    if market.late or market.duplicates:
        text.append(f" │ late {market.late:,} · duplicates {market.duplicates:,}", style="dim")
    return text


def render(run: _Run, specs: tuple[WindowSpec, ...], top: int, width: int) -> Group:
    """Header line and token table at the current wall time."""
    rank = rank_spec(specs)
    rows = top_tokens(run.market, rank, wall_now_ms(), top)
    return Group(render_header(run, rank), render_table(rows, specs, width))


def _loop(live: Live, run: _Run, specs: tuple[WindowSpec, ...], *, top: int,
          refresh_s: float, duration_s: float | None) -> None:  # fmt: skip
    """Feed trades every tick and redraw every ``refresh_s`` (the first time after one
    tick) until ``duration_s`` has passed (forever when ``None``)."""
    tick_s = min(TICK_S, refresh_s)
    next_tick = next_draw = run.start_s + tick_s
    while True:
        time.sleep(max(0.0, next_tick - time.monotonic()))
        now_ms = wall_now_ms()
        run.market.add_many(run.source.poll(now_ms), now_ms)
        now_s = time.monotonic()
        done = duration_s is not None and now_s - run.start_s >= duration_s
        if now_s >= next_draw or done:
            run.update_rate()
            live.update(render(run, specs, top, live.console.width), refresh=True)
            next_draw = max(next_draw + refresh_s, now_s)
        if done:
            return
        next_tick = max(next_tick + tick_s, now_s)


def _summary(run: _Run, *, interrupted: bool) -> str:
    """The one-line summary printed when the demo ends."""
    elapsed = max(run.elapsed_s(), 1e-9)
    market = run.market
    line = (
        f"tradepulse demo {'interrupted' if interrupted else 'finished'}: "
        f"{market.applied:,} trades applied in {elapsed:.1f} s "
        f"({market.applied / elapsed:,.0f}/s), {len(market.tokens):,} tokens"
    )
    if isinstance(run.source, ReplaySource):
        line += f", {run.source.bad:,} bad lines"
    return line


def run_terminal_demo(
    *,
    specs: tuple[WindowSpec, ...],
    replay: Path | None = None,
    speed: float = 1.0,
    seed: int = 0,
    tokens: int = 200,
    rate_per_s: float = 200.0,
    top: int = 15,
    refresh_s: float = 1.0,
    duration_s: float | None = None,
    console: Console | None = None,
    backfill_s: float = 600.0,
) -> None:
    """Run the live table until Ctrl-C (or ``duration_s`` seconds), then print a summary.

    ``replay`` replays a JSONL trade file paced by ``speed`` (2.0 = twice as fast) instead
    of synthetic trades (``seed``, ``tokens``, ``rate_per_s``; the market starts with
    ``backfill_s`` seconds of history so that every window has content). Raises ``ValueError`` for
    bad arguments and ``InputError`` when the replay file cannot be opened.
    """
    if not specs:
        raise ValueError("at least one window is needed")
    if speed <= 0 or refresh_s <= 0 or top < 1 or backfill_s < 0:
        raise ValueError("speed and refresh_s must be > 0, top >= 1 and backfill_s >= 0")
    console = console or Console()
    with ExitStack() as stack:
        start_ms = wall_now_ms()
        source: TradeFeed
        if replay is None:
            source = SyntheticSource(
                seed=seed,
                tokens=tokens,
                rate_per_s=rate_per_s,
                now_ms=start_ms,
                backfill_ms=round(backfill_s * 1000),
            )
        else:
            stream, _size = stack.enter_context(open_input(str(replay)))
            source = ReplaySource(
                iter_lines(stream), name=replay.name, speed=speed, start_ms=start_ms
            )
        run = _Run(source, Market(specs), start_s=time.monotonic())
        interrupted = False
        try:
            with Live(console=console, auto_refresh=False, transient=False) as live:
                _loop(live, run, specs, top=top, refresh_s=refresh_s, duration_s=duration_s)
        except KeyboardInterrupt:
            interrupted = True
    console.print(_summary(run, interrupted=interrupted))
