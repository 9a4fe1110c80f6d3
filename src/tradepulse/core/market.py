"""All tokens of one process: routes trades to their ``TokenWindows`` and counts outcomes."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Sequence

from tradepulse.core.clock import NEVER
from tradepulse.core.trade import Trade
from tradepulse.core.types import TokenId, TsMs
from tradepulse.core.windows import AddResult, TokenWindows, WindowSpec, WindowStats, add_rows

_Columns = tuple[list[TsMs], set[TokenId], dict[TokenId, int]]
_ColumnsKernel = Callable[[list[Trade], list[int], dict[TokenId, TokenWindows]], _Columns]


def _compiled_columns() -> _ColumnsKernel | None:
    """``batch_columns`` compiled (``_kernels.batch_columns``), or None where the extension
    is not built."""
    try:
        from tradepulse.core._kernels import batch_columns as compiled
    except ImportError:
        return None
    return compiled


_batch_columns_c = _compiled_columns()


def batch_columns(
    trades: Sequence[Trade], partitions: Sequence[int], known: dict[TokenId, TokenWindows]
) -> _Columns:
    """What the worker needs of a batch's trades before applying them (``partitions[i]``:
    where ``trades[i]`` was read), in one pass: every trade's time, the tokens traded, and
    the tokens not in ``known``, each with the partition of its last trade."""
    if _batch_columns_c is not None and type(trades) is list and type(partitions) is list:
        return _batch_columns_c(trades, partitions, known)
    if len(trades) != len(partitions):
        raise ValueError(f"{len(trades)} trades but {len(partitions)} partitions")
    new = {t.token: p for p, t in zip(partitions, trades, strict=True) if t.token not in known}
    return [t.ts_ms for t in trades], {t.token for t in trades}, new


def shard_of(token: TokenId, shards: int) -> int:
    """The shard (0..shards-1) that owns ``token``: stable across processes and runs."""
    return zlib.crc32(token.encode()) % shards


class Market:
    """Per-token windows plus counters of applied, duplicate and late trades.

    With ``shard=(k, n)`` the market keeps only the tokens of shard ``k`` of ``n``
    (``shard_of``); trades of other tokens are ignored (not counted)."""

    __slots__ = ("_foreign", "_shard", "applied", "duplicates", "late", "specs", "tokens")

    def __init__(self, specs: tuple[WindowSpec, ...], shard: tuple[int, int] = (0, 1)) -> None:
        self.specs = specs
        self.tokens: dict[TokenId, TokenWindows] = {}
        self.applied = 0
        self.duplicates = 0
        self.late = 0
        self._shard = shard
        self._foreign: set[TokenId] = set()  # tokens seen that other shards own

    def _owns(self, token: TokenId) -> bool:
        """Whether a token not yet known belongs here (remembers the answer)."""
        if token in self._foreign:
            return False
        k, n = self._shard
        if n == 1 or shard_of(token, n) == k:
            return True
        self._foreign.add(token)
        return False

    def _new_token(self, token: TokenId) -> TokenWindows | None:
        """The windows of a token not seen yet, stored; None when another shard owns it."""
        if not self._owns(token):
            return None
        windows = self.tokens[token] = TokenWindows(self.specs)
        return windows

    def add(self, trade: Trade, floor_ms: TsMs) -> AddResult:
        """Apply one trade; ``floor_ms`` is the clock's time (watermark or wall clock)."""
        token = self.tokens.get(trade.token) or self._new_token(trade.token)
        if token is None:
            return AddResult.FOREIGN
        result = token.add(trade, floor_ms)
        if result is AddResult.APPLIED:
            self.applied += 1
        elif result is AddResult.DUPLICATE:
            self.duplicates += 1
        else:
            self.late += 1
            if token.newest_ms == NEVER:
                del self.tokens[trade.token]
        return result

    def add_all(
        self, trades: Sequence[Trade], floors_ms: Sequence[TsMs]
    ) -> dict[TokenId, list[Trade]]:
        """``add`` of each trade with its own floor, in order (one call for a batch).
        Returns the trades applied, by token, in the order they were applied."""
        rows = trades if isinstance(trades, list) else list(trades)
        floors = floors_ms if isinstance(floors_ms, list) else list(floors_ms)
        added = add_rows(self.tokens, rows, floors, self._new_token)
        if added is not None:  # the compiled loop
            applied, n_applied, n_duplicate, n_late = added
            self.applied += n_applied
            self.duplicates += n_duplicate
            self.late += n_late
            return applied
        tokens = self.tokens
        get, new = tokens.get, self._new_token
        applied = {}
        counts = [0, 0, 0, 0]
        applied_r, late_r = AddResult.APPLIED, AddResult.LATE
        for trade, floor_ms in zip(rows, floors, strict=True):
            name = trade.token
            token = get(name) or new(name)
            if token is None:
                continue
            result = token.add(trade, floor_ms)
            counts[result] += 1
            if result is applied_r:
                same = applied.get(name)
                if same is None:
                    applied[name] = [trade]
                else:
                    same.append(trade)
            elif result is late_r and token.newest_ms == NEVER:
                del tokens[name]  # created for a late trade: holds nothing
        self.applied += counts[AddResult.APPLIED]
        self.duplicates += counts[AddResult.DUPLICATE]
        self.late += counts[AddResult.LATE]
        return applied

    def add_many(self, trades: Iterable[Trade], floor_ms: TsMs) -> None:
        """Apply trades with one clock floor (a batch read at one instant)."""
        for trade in trades:
            self.add(trade, floor_ms)

    def add_in_order_read(self, trades: list[Trade], watermark_ms: TsMs) -> TsMs:
        """Apply trades read in this order from one partition on the event clock: each
        trade's floor is the newest trade time read before it. Returns the new watermark."""
        tokens = self.tokens
        get, new = tokens.get, self._new_token
        counts = [0, 0, 0]
        for trade in trades:
            t = trade.ts_ms
            watermark_ms = max(watermark_ms, t)
            token = get(trade.token) or new(trade.token)
            if token is None:
                continue
            result = token.add(trade, watermark_ms)
            counts[result] += 1
            if result is AddResult.LATE and token.newest_ms == NEVER:
                del tokens[trade.token]  # created for a late trade: holds nothing
        self.applied += counts[AddResult.APPLIED]
        self.duplicates += counts[AddResult.DUPLICATE]
        self.late += counts[AddResult.LATE]
        return watermark_ms

    def stats(self, token: TokenId, t_ms: TsMs) -> dict[str, WindowStats]:
        """Every window of ``token`` at ``max(t_ms, its newest trade)``; empty if unknown."""
        windows = self.tokens.get(token)
        return windows.stats(t_ms) if windows is not None else {}

    def active_since(self, since_ms: TsMs) -> list[TokenId]:
        """Tokens whose newest trade is later than ``since_ms``."""
        return [name for name, tw in self.tokens.items() if tw.newest_ms > since_ms]
