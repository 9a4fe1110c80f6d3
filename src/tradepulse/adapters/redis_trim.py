"""Upkeep of a persisted Redis stream: its backlog, and trimming what was acknowledged.

Trimming removes the entries every consumer group of the stream is done with::

    floor(group) = its oldest pending entry (XPENDING summary)      when it has pending ones
                 = last-delivered-id + 1                            otherwise
    floor        = min(floor(group) over ALL groups of the stream,
                       (now_ms - keep_ms)-0  when the stream keeps a retention)
    XTRIM key MINID floor          (exact: entries with an id below floor go)

One Lua script reads the groups and trims, so no group can be created, read or acknowledge
in between: an entry that a group has not acknowledged (pending, or not yet delivered) is
never removed, whichever group it is. A stream without any group is left alone (its MAXLEN
cap stays its only bound). The retention keeps acknowledged entries that readers without a
group may still ask for by id (the API resumes WebSocket clients from ``alerts``).

The backlog is what the persisters' group has not acknowledged: its ``lag`` (entries not yet
delivered, XINFO GROUPS) plus its ``pending`` entries. Redis reports no lag when it cannot
know it (entries deleted with XDEL after the group's position); the stream's length, an
upper bound, is used then. Redis errors become ``StoreUnavailableError``.
"""

from __future__ import annotations

from typing import Any

import msgspec
import redis

from tradepulse.adapters.redis_group import text
from tradepulse.core.errors import StoreUnavailableError

# ids are "ms-seq" (two unsigned 64-bit decimals): compared as digit strings, never as Lua
# numbers (doubles lose digits above 2^53).
_TRIM_LUA = """
local function less(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  if #am ~= #bm then return #am < #bm end
  if am ~= bm then return am < bm end
  if #as ~= #bs then return #as < #bs end
  return as < bs
end
local function succ(s)
  local i = #s
  while i > 0 and string.sub(s, i, i) == '9' do i = i - 1 end
  if i == 0 then return '1' .. string.rep('0', #s) end
  return string.sub(s, 1, i - 1) .. string.char(string.byte(s, i) + 1) .. string.rep('0', #s - i)
end
local function next_id(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  if seq == '18446744073709551615' then return succ(ms) .. '-0' end
  return ms .. '-' .. succ(seq)
end
if redis.call('TYPE', KEYS[1])['ok'] ~= 'stream' then return {0, ''} end
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
if #groups == 0 then return {0, ''} end
local floor = ARGV[1]
for _, g in ipairs(groups) do
  local f = {}
  for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
  local candidate = false
  if tonumber(f['pending']) > 0 then
    candidate = redis.call('XPENDING', KEYS[1], f['name'])[2]
  end
  if not candidate then candidate = next_id(f['last-delivered-id']) end
  if floor == '' or less(candidate, floor) then floor = candidate end
end
return {redis.call('XTRIM', KEYS[1], 'MINID', floor), floor}
"""


class Backlog(msgspec.Struct, frozen=True):
    """What the group ``group`` has not acknowledged in a stream of ``length`` entries:
    ``lag`` not yet delivered (``None``: Redis cannot tell) and ``pending``; ``entries`` is
    their sum (with the length in place of an unknown lag)."""

    length: int
    pending: int
    lag: int | None
    entries: int


class RedisStreamUpkeep:
    """Backlog and trimming of stream ``key`` (shown as ``name``) for the persisters' group
    ``group``; ``keep_ms`` > 0 keeps acknowledged entries that young (by their id's time)."""

    def __init__(
        self, client: redis.Redis, key: str, name: str, group: str, *, keep_ms: int = 0
    ) -> None:
        self.name = name
        self.key = key
        self.group = group
        self.keep_ms = keep_ms
        self._client = client
        self._trim = client.register_script(_TRIM_LUA)

    def backlog(self) -> Backlog:
        """The group's backlog (everything, as not yet delivered, before the group exists)."""
        try:
            length = int(self._client.xlen(self.key))
            groups: Any = self._client.xinfo_groups(self.key)
        except redis.ResponseError:  # the stream does not exist
            return Backlog(0, 0, 0, 0)
        except redis.RedisError as exc:
            raise StoreUnavailableError(f"Redis XINFO GROUPS failed: {exc}") from exc
        for group in groups:
            if text(group["name"]) == self.group:
                pending, lag = int(group["pending"]), group.get("lag")
                lag = None if lag is None else int(lag)
                return Backlog(length, pending, lag, pending + (length if lag is None else lag))
        return Backlog(length, 0, length, length)

    def trim(self, now_ms: int) -> int:
        """Remove what every group acknowledged (and, with ``keep_ms``, is older than
        ``now_ms - keep_ms``); the number of entries removed."""
        keep_from = f"{max(now_ms - self.keep_ms, 0)}-0" if self.keep_ms else ""
        try:
            removed, _floor = self._trim(keys=[self.key], args=[keep_from])
        except redis.RedisError as exc:
            raise StoreUnavailableError(f"Redis XTRIM failed: {exc}") from exc
        return int(removed)
