"""The Redis mirror of live state (ARCHITECTURE §5): one Lua script per token write, one
pipeline per batch.

Keys of token ``addr`` (``{addr}`` is a Redis Cluster hash tag: all keys of one token share
a slot, so the per-token script also runs on a cluster)::

    {prefix}token:{addr}:trades       List    retained trades, compact JSON, oldest first
    {prefix}token:{addr}:indices      Hash    ``base``: sequence number of the list head;
                                              per window: sequence number of its first trade
    {prefix}token:{addr}:aggregates   Hash    per window: JSON of its statistics
    {prefix}token:{addr}:last_update  String  RFC 3339 time of the write
    {prefix}tokens:active             ZSet    addr -> newest trade time (ms)

A token's four keys change together in one script (a reader never sees aggregates of one
batch with ``last_update`` or indices of another) and all get the TTL of the longest
window. ``tokens:active`` lives in another slot, so it is updated beside the scripts, in
the same pipeline: one ZADD for every token of the batch, after their scripts.

The trades list follows ``TokenWindows.sync_view``: keep the list before ``replace_from``,
append the new trades, drop what is before ``head``. If the list does not hold
``[head, replace_from)`` (Redis lost data), the script changes nothing and the token is
reported back so that the caller sends a full view.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
import redis
from redis.exceptions import NoScriptError, ResponseError

from tradepulse import metrics
from tradepulse.adapters.redis_packed import as_dict, execute_packed
from tradepulse.adapters.wire import compiled_line_rows
from tradepulse.core.alerts import Alert
from tradepulse.core.bars import Bar
from tradepulse.core.errors import StoreUnavailableError
from tradepulse.core.scanner import ScanRecord
from tradepulse.core.tokenbars import TokenBarsSnapshot
from tradepulse.core.trade import Trade
from tradepulse.core.types import TokenId, TsMs
from tradepulse.core.windows import SyncView, TokenWindows, WindowSpec, WindowStats

_WRITE_TOKEN = """
local replace_from = tonumber(ARGV[1])
local head = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local base = tonumber(redis.call('HGET', KEYS[2], 'base') or -1)
local len = redis.call('LLEN', KEYS[1])
if base < 0 then len = 0 end
if replace_from == head then
  redis.call('DEL', KEYS[1])
  base = head
  len = 0
elseif not (base >= 0 and base <= head and replace_from <= base + len) then
  return 0
end
local keep = replace_from - base
if keep < len then
  if keep == 0 then redis.call('DEL', KEYS[1]) else redis.call('LTRIM', KEYS[1], 0, keep - 1) end
end
local n = tonumber(ARGV[5])
local m = tonumber(ARGV[6])
local a = tonumber(ARGV[13])
local wfirst = 17 + m + a
local packed = ARGV[wfirst + 3 * n]
local items, k, pos, plen = {}, 0, 1, #packed
while pos <= plen do
  local stop = string.find(packed, "\\n", pos, true) or (plen + 1)
  k = k + 1
  items[k] = string.sub(packed, pos, stop - 1)
  pos = stop + 1
  if k == 1000 then
    redis.call('RPUSH', KEYS[1], unpack(items))
    items, k = {}, 0
  end
end
if k > 0 then redis.call('RPUSH', KEYS[1], unpack(items, 1, k)) end
if head > base then
  redis.call('LTRIM', KEYS[1], head - base, -1)
  base = head
end
local idx = {'base', base}
local agg = {}
for i = 0, n - 1 do
  local name = ARGV[wfirst + 3 * i]
  idx[#idx + 1] = name
  idx[#idx + 1] = ARGV[wfirst + 1 + 3 * i]
  agg[#agg + 1] = name
  agg[#agg + 1] = ARGV[wfirst + 2 + 3 * i]
end
redis.call('HSET', KEYS[2], unpack(idx))
if n > 0 then redis.call('HSET', KEYS[3], unpack(agg)) end
redis.call('SET', KEYS[4], ARGV[4], 'EX', ttl)
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ttl) end
if ARGV[7] ~= '' then redis.call('SET', KEYS[5], ARGV[7], 'EX', ttl)
else redis.call('EXPIRE', KEYS[5], ttl) end
if ARGV[8] ~= '' then redis.call('SET', KEYS[6], ARGV[8], 'PX', 300000)
else redis.call('DEL', KEYS[6]) end
if ARGV[9] ~= '' then
  redis.call('SET', KEYS[7], ARGV[9], 'PX', 600000)
  redis.call('PUBLISH', ARGV[10], ARGV[11])
end
for i = 17, 16 + m do
  redis.call('XADD', KEYS[8], 'MAXLEN', '~', ARGV[12], '*', 'bar', ARGV[i])
end
if ARGV[14] ~= '' then redis.call('SET', KEYS[9], ARGV[14], 'EX', ttl)
else redis.call('EXPIRE', KEYS[9], ttl) end
for i = 17 + m, 16 + m + a do
  redis.call('XADD', KEYS[10], 'MAXLEN', '~', ARGV[16], '*', 'alert', ARGV[i])
  redis.call('PUBLISH', ARGV[15], ARGV[i])
end
return 1
"""

#: Entries kept in the ``bars.finalized`` stream (about 8 hours of 2,000 busy tokens): the
#: persister acknowledges far sooner; the cap only bounds memory if it is down for long.
BARS_STREAM_MAXLEN = 1_000_000
INDICATORS_CHANNEL = "indicators.updated"
#: Channel of the batch's written tokens (newline-joined addresses), published once per
#: ``write`` after every token's script in the same pipeline: the API's WebSocket gateway
#: reads a token again when it is named.
STATS_CHANNEL = "stats.updated"
#: The ``alerts`` stream is capped too (the alert persister acknowledges within seconds).
ALERTS_STREAM_MAXLEN = 100_000
ALERTS = "alerts"  # stream and channel


class StoredTrade(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A trade in the Redis list: a JSON array, the token implied by the key."""

    ts_ms: TsMs
    wallet: str
    is_buy: bool
    native_amount: float
    token_amount: float
    price_usd: float
    tx_hash: str
    event_index: int


class TokenUpdate(msgspec.Struct, frozen=True):
    """One token's write: its trades-list changes and every window's statistics."""

    token: TokenId
    view: SyncView
    stats: dict[str, WindowStats]
    newest_ms: TsMs
    written_ms: TsMs
    partition: int = -1  # the Kafka partition the token is read from (-1: none)
    finals: list[Bar] = []  # final bars (and corrections) to append to bars.finalized
    forming: Bar | None = None  # the forming bar (livebar key; deleted when None)
    indicators: dict[str, float | None] | None = None  # new values (ind key), or unchanged
    bars_state: TokenBarsSnapshot | None = None  # written with finals (what trades cannot rebuild)
    alerts: list[Alert] = []  # appended to the alerts stream and published
    scan: ScanRecord | None = None  # the token's scanner state after its last scan


_encoder = msgspec.json.Encoder()
_trade_decoder = msgspec.json.Decoder(StoredTrade)
_stats_decoder = msgspec.json.Decoder(WindowStats)


_LOAD_CHUNK = 256
_READ_TOKEN = """
return {redis.call('HGET', KEYS[2], 'base') or false, redis.call('LRANGE', KEYS[1], 0, -1),
        redis.call('HGETALL', KEYS[3]), redis.call('GET', KEYS[4]) or false,
        redis.call('GET', KEYS[5]) or false}
"""
_bars_state_decoder = msgspec.json.Decoder(TokenBarsSnapshot)
_scan_decoder = msgspec.json.Decoder(ScanRecord)


def _stored_trade(token: TokenId, raw: bytes) -> Trade:
    s = _trade_decoder.decode(raw)
    return Trade(token, s.wallet, s.is_buy, s.native_amount, s.token_amount, s.price_usd,
                 s.token_amount * s.price_usd, s.ts_ms, s.tx_hash, s.event_index)  # fmt: skip


def stored_trades(token: TokenId, raws: Sequence[bytes]) -> list[Trade]:
    """The trades of a ``token:{addr}:trades`` list (``LRANGE`` items), in list order."""
    return [_stored_trade(token, raw) for raw in raws]


class Restored(msgspec.Struct, frozen=True):
    """A token as read back: its windows and, when it has emitted bars, their state."""

    windows: TokenWindows
    bars_state: TokenBarsSnapshot | None
    scan: ScanRecord | None = None


def _rebuild(token: TokenId, specs: tuple[WindowSpec, ...], reply: Any) -> Restored | None:
    """A token from the reply of ``_READ_TOKEN``: ``[base, trades, flat aggregates,
    bars state]``."""
    base_raw, raw_trades, flat, raw_state, raw_scan = reply
    if not raw_trades or not flat:
        return None
    updated = max(_stats_decoder.decode(v).updated_ms for v in flat[1::2])
    trades = [_stored_trade(token, item) for item in raw_trades]
    windows = TokenWindows.rebuild(specs, trades, updated, first_seq=int(base_raw or 0))
    state = _bars_state_decoder.decode(raw_state) if raw_state else None
    scan = _scan_decoder.decode(raw_scan) if raw_scan else None
    return Restored(windows, state, scan)


def _line_rows_py(trades: Iterable[Trade]) -> list[tuple[object, ...]]:
    """The row of each trade in its token's list (the fields of ``StoredTrade``)."""
    return [(t.ts_ms, t.wallet, t.is_buy, t.native_amount, t.token_amount, t.price_usd,
             t.tx_hash, t.event_index) for t in trades]  # fmt: skip


#: ``_line_rows_py`` compiled (``adapters/_wire.pyx``) where it is built
_line_rows = compiled_line_rows or _line_rows_py


def _rfc3339(ts_ms: TsMs) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


class RedisStore:
    """Writes and reads the per-token keys under ``prefix``; every key expires after
    ``ttl_s`` without a write (the longest window)."""

    def __init__(self, client: redis.Redis, *, prefix: str = "", ttl_s: int = 3600) -> None:
        self._client = client
        self._prefix = prefix
        self._ttl_s = ttl_s
        self._sha = hashlib.sha1(_WRITE_TOKEN.encode()).hexdigest()
        #: The group's newest trade time per partition, as read back by the last ``write``
        #: that stored watermarks (what the other processes of the group have reached).
        self.group_watermarks: dict[int, TsMs] = {}

    def ping(self) -> bool:
        """Whether Redis answers now."""
        try:
            return bool(self._client.ping())
        except redis.RedisError:
            return False

    def bar_keys(self, token: TokenId) -> tuple[str, str, str]:
        """The bars state, forming bar and indicators keys of ``token``."""
        p = self._prefix
        return f"{p}token:{{{token}}}:bars", f"{p}livebar:{{{token}}}", f"{p}ind:{{{token}}}"

    def scan_key(self, token: TokenId) -> str:
        """The token's scanner state (cooldowns, previous samples) after its last scan."""
        return f"{self._prefix}token:{{{token}}}:scan"

    @property
    def alerts_key(self) -> str:
        return f"{self._prefix}{ALERTS}"

    @property
    def bars_stream_key(self) -> str:
        return f"{self._prefix}bars.finalized"

    def keys(self, token: TokenId) -> tuple[str, str, str, str]:
        """The trades, indices, aggregates and last_update keys of ``token``."""
        stem = f"{self._prefix}token:{{{token}}}:"
        return stem + "trades", stem + "indices", stem + "aggregates", stem + "last_update"

    @property
    def active_key(self) -> str:
        return f"{self._prefix}tokens:active"

    @property
    def watermarks_key(self) -> str:
        return f"{self._prefix}watermarks"

    def partition_key(self, partition: int) -> str:
        """Set of the tokens read from ``partition`` (for maintenance after a restart)."""
        return f"{self._prefix}partition:{partition}:tokens"

    def partition_tokens(self, partitions: Sequence[int]) -> dict[TokenId, int]:
        """Every token known to be read from ``partitions``, with its partition."""
        pipe = self._client.pipeline(transaction=False)
        for partition in partitions:
            pipe.smembers(self.partition_key(partition))
        results: list[set[bytes]] = self._run(pipe)  # type: ignore[assignment]
        return {t.decode(): p for p, members in zip(partitions, results, strict=True)
                for t in members}  # fmt: skip

    def write(
        self, updates: Iterable[TokenUpdate], watermarks: dict[int, TsMs] | None = None
    ) -> list[TokenId]:
        """Write every update in one pipeline, then (last, so that they are stored only
        when every token before them is) the newest trade time per partition. Returns the
        tokens whose list had a gap (nothing of theirs was written: send them again with a
        full view). The batch's tokens are published on ``{prefix}stats.updated`` (one
        message, addresses joined by newlines) after their scripts."""
        taken: list[TokenUpdate] = []
        commands = self._commands(updates, watermarks, taken)
        started = time.perf_counter()
        try:
            results = self._execute_scripts(commands)
        except redis.RedisError as exc:
            raise StoreUnavailableError(f"Redis write failed: {exc}") from exc
        finally:
            metrics.REDIS_SECONDS.labels("write").observe(time.perf_counter() - started)
        if watermarks:
            self.group_watermarks = {int(p): int(t) for p, t in as_dict(results[-1]).items()}
        oks = results[: len(taken)]  # the scripts' replies come first
        return [u.token for u, ok in zip(taken, oks, strict=True) if not ok]

    def _commands(
        self,
        updates: Iterable[TokenUpdate],
        watermarks: dict[int, TsMs] | None,
        taken: list[TokenUpdate],
    ) -> Iterator[tuple[Any, ...]]:
        """The commands of ``write``, built one at a time (so that the first ones are sent
        while the rest are built): a script call per update (each update appended to
        ``taken``), then the index, the notification and the watermarks."""
        written: dict[TsMs, str] = {}
        stream_key, alerts_key = self.bars_stream_key, self.alerts_key
        for update in updates:
            taken.append(update)
            at = written.get(update.written_ms)
            if at is None:
                at = written[update.written_ms] = _rfc3339(update.written_ms)
            token = update.token
            keys = (*self.keys(token), *self.bar_keys(token), stream_key, self.scan_key(token),
                    alerts_key)  # fmt: skip
            yield ("EVALSHA", self._sha, len(keys), *keys, *self._args(update, at))
        yield from self._index_commands(taken)
        if taken:
            names = "\n".join(dict.fromkeys(u.token for u in taken))
            yield ("PUBLISH", f"{self._prefix}{STATS_CHANNEL}", names)
        if watermarks:
            flat = [x for p, t in watermarks.items() for x in (str(p), t)]
            yield ("HSET", self.watermarks_key, *flat)
            yield ("HGETALL", self.watermarks_key)

    def _index_commands(self, updates: Sequence[TokenUpdate]) -> list[tuple[Any, ...]]:
        """After the scripts: every token's newest trade time in ``tokens:active`` in one
        ZADD, and each partition's tokens in one SADD (one command per batch instead of
        two per token)."""
        if not updates:
            return []
        scores: list[object] = []
        by_partition: dict[int, list[TokenId]] = {}
        for update in updates:
            scores += (update.newest_ms, update.token)
            if update.partition >= 0:
                by_partition.setdefault(update.partition, []).append(update.token)
        commands: list[tuple[Any, ...]] = [("ZADD", self.active_key, *scores)]
        commands += [("SADD", self.partition_key(p), *tokens) for p, tokens in by_partition.items()]
        return commands

    def _execute_scripts(self, commands: Iterator[tuple[Any, ...]]) -> list[Any]:
        """Run ``commands`` in one round trip (``execute_packed``, sent while they are
        built); the write script is called by its hash (EVALSHA: no script text and no
        SCRIPT EXISTS round trip per batch). When Redis does not know the script (first use,
        or restarted empty) it is loaded and everything sent again, as after a connection
        closed while idle: every command is idempotent. The first error reply is raised."""
        sent: list[tuple[Any, ...]] = []
        for attempt in (1, 2, 3):
            try:
                if attempt == 1:
                    replies = execute_packed(self._client, commands, sent)
                else:
                    replies = execute_packed(self._client, sent)
            except redis.ConnectionError:
                if attempt == 3:
                    raise
                sent.extend(commands)  # what the failed attempt had not built yet
                continue  # a connection closed while idle: once more on a new one
            first = next((r for r in replies if isinstance(r, ResponseError)), None)
            if first is None:
                return replies
            if not isinstance(first, NoScriptError) or attempt == 3:
                raise first
            if self._client.script_load(_WRITE_TOKEN) != self._sha:
                raise StoreUnavailableError("Redis returned another script hash") from None
        raise AssertionError("unreachable")

    def read_watermarks(self) -> dict[int, TsMs]:
        """The newest trade time per partition as last written."""
        pipe = self._client.pipeline(transaction=False)
        pipe.hgetall(self.watermarks_key)
        raw: dict[bytes, bytes] = self._run(pipe)[0]  # type: ignore[assignment]
        return {int(p): int(t) for p, t in raw.items()}

    def _args(self, update: TokenUpdate, written: str) -> list[bytes | str | int]:
        """The script's arguments: a header, the final bars, a (name, first sequence number,
        statistics) triple per window, then the new trades as one argument: their JSON
        arrays joined by newlines (JSON never holds a raw newline), split by the script with
        a plain ``string.find`` (a pattern match costs Redis twice as much)."""
        view = update.view
        indicators = b""
        if update.indicators is not None:
            values = {"token": update.token, **update.indicators}
            indicators = _encoder.encode(values)
        args: list[bytes | str | int] = [
            view.replace_from, view.head, self._ttl_s, written,
            len(update.stats), len(update.finals),
            _encoder.encode(update.bars_state) if update.bars_state is not None else b"",
            _encoder.encode(update.forming) if update.forming is not None else b"",
            indicators, f"{self._prefix}{INDICATORS_CHANNEL}", update.token, BARS_STREAM_MAXLEN,
            len(update.alerts), _encoder.encode(update.scan) if update.scan is not None else b"",
            self.alerts_key, ALERTS_STREAM_MAXLEN,
        ]  # fmt: skip
        args += [_encoder.encode(bar) for bar in update.finals]
        args += [_encoder.encode(alert) for alert in update.alerts]
        for name, stats in update.stats.items():
            args += [name, view.starts[name], _encoder.encode(stats)]
        # each line as ``StoredTrade`` encodes (an array of its fields), in one call
        args.append(_encoder.encode_lines(_line_rows(view.trades))[:-1])
        return args

    def read_trades(self, token: TokenId) -> tuple[int, list[Trade]]:
        """``(base, trades)``: the list and the sequence number of its head."""
        trades_key, indices_key, _, _ = self.keys(token)
        pipe = self._client.pipeline(transaction=True)
        pipe.hget(indices_key, "base")
        pipe.lrange(trades_key, 0, -1)
        base_raw, raw_list = self._run(pipe)
        raw: list[bytes] = raw_list  # type: ignore[assignment]
        base = int(base_raw) if isinstance(base_raw, bytes | str | int) else 0
        return base, [_stored_trade(token, item) for item in raw]

    def read_stats(self, token: TokenId) -> dict[str, WindowStats]:
        """Every window's statistics as last written (empty when unknown)."""
        pipe = self._client.pipeline(transaction=False)
        pipe.hgetall(self.keys(token)[2])
        raw: dict[bytes, bytes] = self._run(pipe)[0]  # type: ignore[assignment]
        return {k.decode(): _stats_decoder.decode(v) for k, v in raw.items()}

    def load(self, token: TokenId, specs: tuple[WindowSpec, ...]) -> TokenWindows | None:
        """The token's windows rebuilt from its mirror (in sync with it), or ``None``."""
        restored = self.load_many([token], specs).get(token)
        return restored.windows if restored is not None else None

    def load_many(
        self, tokens: Sequence[TokenId], specs: tuple[WindowSpec, ...]
    ) -> dict[TokenId, Restored]:
        """The tokens that have a mirror, rebuilt from it. Each token's list, ``base``,
        aggregates and bars state are read together by one script (so from one write),
        256 tokens per pipeline round trip."""
        out: dict[TokenId, Restored] = {}
        for i in range(0, len(tokens), _LOAD_CHUNK):
            chunk = tokens[i : i + _LOAD_CHUNK]
            pipe = self._client.pipeline(transaction=False)
            for token in chunk:
                trades_key, indices_key, aggregates_key, _ = self.keys(token)
                keys = (trades_key, indices_key, aggregates_key, self.bar_keys(token)[0],
                        self.scan_key(token))  # fmt: skip
                pipe.eval(_READ_TOKEN, len(keys), *keys)
            for token, reply in zip(chunk, self._run(pipe), strict=True):
                restored = _rebuild(token, specs, reply)
                if restored is not None:
                    out[token] = restored
        return out

    def _run(self, pipe: redis.client.Pipeline) -> list[object]:
        started = time.perf_counter()
        try:
            return list(pipe.execute())
        except redis.RedisError as exc:
            raise StoreUnavailableError(f"Redis read failed: {exc}") from exc
        finally:
            metrics.REDIS_SECONDS.labels("read").observe(time.perf_counter() - started)
