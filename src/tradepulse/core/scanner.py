"""The scanner (ARCHITECTURE §6): every enabled rule over every token of a metrics table.

One scan: the caller passes ``now_ms``, the tokens (one row each), one float64 column per
metric in ``Scanner.input_metrics`` (NaN = null) and each token's newest trade time. The
compiled program (``tradepulse.core.rule_eval``) gives, per rule, the rows where the
condition is TRUE; then, per rule::

    held ── symbols? ──> edge: only if the previous evaluation was not TRUE ──>
         fresh? (now - newest trade <= max_staleness) ──> not cooling down ──> Alert

* **Cooldown**: a (rule, token) that fired at ``t`` is cooling down while
  ``now_ms < t + cooldown_ms``; the last firing is kept, not the deadline, so a rule whose
  cooldown is edited applies the new one. Suppressed firings (stale, cooling) do not
  restart the cooldown.
* **Edge** rules fire when the condition is TRUE now and was not TRUE (false or unknown)
  at the previous evaluation of that (rule, token). The first evaluation has no previous
  one and never fires, so a restart without state or a new rule does not fire for every
  token that already holds. The previous result tracks the condition whatever happens to
  the alert (cooling, stale): an edge that was suppressed is not fired later.
* **Crossings** compare with the token's previous sample: its values at the last scan that
  included it (a token new since then has none). ``forget`` drops a token's state.
* **symbols** limits a rule to some tokens (others are not evaluated: no state changes).
* A **disabled** rule is not evaluated; its cooldowns survive, its edge state does not.

State per token (cooldowns, edge results, previous samples) is ``token_state`` /
``restore_token``: the worker stores it with the token's atomic write, so a restarted
scanner continues exactly where the old one was. Rule state is keyed by rule id; a new
version of a rule keeps its cooldowns and starts its edge state afresh.

Alerts are deterministic (``tradepulse.core.alerts``): ``id`` is the UUID-5 of the JSON
``[rule_id, rule_version, token, triggered_ms]``, so a redelivered batch that triggers the
same alert produces the same id.

Cost: the rules are evaluated in a few NumPy passes per distinct comparison and group
(``rule_eval``); per rule a handful more for symbols, edges, staleness and cooldowns; then
a few µs per alert. Masks reuse preallocated buffers (fresh arrays cost page faults).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import msgspec
import numpy as np

from tradepulse.core.alerts import ALERT_NAMESPACE, Alert, AlertMaker
from tradepulse.core.rule_eval import Mask, Program
from tradepulse.core.rule_model import Rule
from tradepulse.core.types import TokenId, TsMs

__all__ = ["ALERT_NAMESPACE", "NEVER", "Alert", "RuleTokenState", "Scanner", "TokenState"]

NEVER = -(1 << 62)  # "never fired": far enough from int64 limits for any arithmetic
_NO_RESULT, _NOT_TRUE, _TRUE = -1, 0, 1  # edge state of a (rule, token)
_INITIAL_CAPACITY = 1024
_NO_ROWS = np.empty(0, np.int64)


class RuleTokenState(msgspec.Struct, frozen=True, omit_defaults=True):
    """One rule's state for one token: its version, its last firing, and (edge rules)
    whether the condition was TRUE at the previous evaluation."""

    version: int
    last_fired_ms: TsMs | None = None
    held: bool | None = None


class TokenState(msgspec.Struct, frozen=True, omit_defaults=True):
    """A token's scanner state: per rule id, and the previous sample of every metric a
    crossing reads (absent = null or none)."""

    rules: dict[str, RuleTokenState] = {}
    previous: dict[str, float] = {}


class _RuleState:
    """Per-slot arrays of one rule: last firing (allocated at the first firing) and the
    edge state (edge rules only)."""

    __slots__ = ("alerts", "held", "last_fired", "rule")

    def __init__(self, rule: Rule, capacity: int) -> None:
        self.rule = rule
        self.last_fired: np.ndarray | None = None
        edge = rule.trigger == "edge" and rule.enabled
        self.held = np.full(capacity, _NO_RESULT, np.int8) if edge else None
        self.alerts = AlertMaker(rule)

    def fired(self, capacity: int) -> np.ndarray:
        if self.last_fired is None:
            self.last_fired = np.full(capacity, NEVER, np.int64)
        return self.last_fired

    def grow(self, capacity: int) -> None:
        if self.last_fired is not None:
            self.last_fired = _grown(self.last_fired, capacity, NEVER)
        if self.held is not None:
            self.held = _grown(self.held, capacity, _NO_RESULT)

    def reset(self, slot: int) -> None:
        if self.last_fired is not None:
            self.last_fired[slot] = NEVER
        if self.held is not None:
            self.held[slot] = _NO_RESULT


def _grown(a: np.ndarray, capacity: int, fill: float) -> np.ndarray:
    out = np.full(capacity, fill, a.dtype)
    out[: a.size] = a
    return out


class Scanner:
    """Evaluates a rule set over token metric tables, keeping per (rule, token) state."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self._capacity = _INITIAL_CAPACITY
        self._slot_of: dict[TokenId, int] = {}
        self._free: list[int] = []
        self._states: dict[str, _RuleState] = {}
        self._prev: dict[str, np.ndarray] = {}
        self._tokens: list[TokenId] | None = None  # the token list of the cached selection
        self._slots = np.empty(0, np.int64)
        self._sel: slice | np.ndarray = self._slots
        self._symbol_masks: dict[str, Mask] = {}
        self._scratch_buf = np.empty((2, 0), bool)
        self.update_rules(rules)

    @property
    def rules(self) -> tuple[Rule, ...]:
        return tuple(s.rule for s in self._states.values())

    @property
    def input_metrics(self) -> tuple[str, ...]:
        """The columns ``scan`` needs: base metrics of the enabled rules (derived ones are
        computed here) and ``window.<w>.updated_ms`` of every window they read."""
        return self._program.input_metrics

    @property
    def program(self) -> Program:
        return self._program

    def update_rules(self, rules: Iterable[Rule]) -> None:
        """Replace the rule set; state follows the rule ids (see the module docstring)."""
        states: dict[str, _RuleState] = {}
        for rule in rules:
            if rule.id in states:
                raise ValueError(f"two rules have the id {rule.id!r}")
            state = states[rule.id] = _RuleState(rule, self._capacity)
            old = self._states.get(rule.id)
            if old is not None:
                state.last_fired = old.last_fired
                if state.held is not None and old.held is not None:
                    state.held = old.held if old.rule.version == rule.version else state.held
        self._states = states
        enabled = [s.rule for s in states.values() if s.rule.enabled]
        bounds = [f"window.{w}.updated_ms" for r in enabled for w in r.windows()]
        self._program = Program(enabled, extra_inputs=bounds)
        self._active = [states[r.id] for r in enabled]
        self._prev = {m: self._prev.get(m, _nans(self._capacity))
                      for m in self._program.crossing_metrics}  # fmt: skip
        self._symbol_masks.clear()

    # -- scanning ----------------------------------------------------------------------

    def scan(
        self,
        now_ms: TsMs,
        tokens: Sequence[TokenId],
        columns: Mapping[str, np.ndarray],
        newest_trade_ms: np.ndarray,
    ) -> list[Alert]:
        """Evaluate every enabled rule for every token; return the alerts, by rule then row.

        ``columns[m][i]`` is metric ``m`` of ``tokens[i]`` (NaN = null); extra columns are
        ignored. ``newest_trade_ms[i]`` is the time of the token's newest trade."""
        if not tokens:
            return []
        rows = len(tokens)
        newest = np.asarray(newest_trade_ms, dtype=np.int64)
        if newest.shape != (rows,):
            raise ValueError(f"scan: newest_trade_ms has shape {newest.shape}, expected ({rows},)")
        cols = self._program.columns(columns, rows)
        self._select(tokens)
        prev = {m: a[self._sel] for m, a in self._prev.items()}
        held = self._program.held(cols, prev, rows)
        fresh: dict[int, Mask] = {}
        alerts: list[Alert] = []
        for state, mask in zip(self._active, held, strict=True):
            fired = self._fired(state, mask, now_ms, newest, fresh)
            if fired.size:
                alerts += state.alerts.make(fired, now_ms, self._tokens or [], cols, newest)
        for m, a in self._prev.items():
            a[self._sel] = cols[m]
        return alerts

    def _fired(
        self, state: _RuleState, held: Mask, now_ms: TsMs, newest: np.ndarray,
        fresh: dict[int, Mask],
    ) -> np.ndarray:  # fmt: skip
        """The rows where the rule fires: ``held`` limited to the rule's symbols, for edge
        rules to rows whose previous evaluation was not TRUE (recording the new one), to
        fresh tokens (``fresh`` caches the scan's staleness masks), to rows not cooling."""
        mask, spare = self._scratch(held.size)
        symbols = self._symbol_mask(state.rule)
        if symbols is not None:
            held = np.logical_and(held, symbols, out=mask)
        if state.held is not None:
            before = state.held[self._sel]
            np.equal(before, _NOT_TRUE, out=spare)
            np.logical_and(held, spare, out=spare)
            state.held[self._sel] = held if symbols is None else np.where(symbols, held, before)
            held = spare
        limit = state.rule.max_staleness_ms
        if limit is not None:
            if limit not in fresh:
                fresh[limit] = newest >= now_ms - limit
            held = np.logical_and(held, fresh[limit], out=mask)
        if not held.any():
            return _NO_ROWS
        return self._not_cooling(state, np.flatnonzero(held), now_ms)

    def _scratch(self, rows: int) -> tuple[Mask, Mask]:
        """Two reused masks of ``rows`` rows (fresh arrays each time cost page faults)."""
        if self._scratch_buf.shape[1] < rows:
            self._scratch_buf = np.empty((2, rows * 5 // 4), bool)
        return self._scratch_buf[0, :rows], self._scratch_buf[1, :rows]

    def _not_cooling(self, state: _RuleState, rows: np.ndarray, now_ms: TsMs) -> np.ndarray:
        """The rows not cooling down; records ``now_ms`` as their last firing."""
        last = state.fired(self._capacity)
        slots = self._slots[rows]
        keep = last[slots] <= now_ms - state.rule.cooldown_ms
        last[slots[keep]] = now_ms
        out: np.ndarray = rows[keep]
        return out

    def _symbol_mask(self, rule: Rule) -> Mask | None:
        if rule.symbols is None:
            return None
        mask = self._symbol_masks.get(rule.id)
        if mask is None:
            tokens = self._tokens or []
            wanted = set(rule.symbols)
            mask = np.fromiter((t in wanted for t in tokens), dtype=bool, count=len(tokens))
            self._symbol_masks[rule.id] = mask
        return mask

    def _select(self, tokens: Sequence[TokenId]) -> None:
        """Map the rows to state slots (cached while the token list stays the same: one
        list comparison, fast when the caller passes the same strings)."""
        given = tokens if isinstance(tokens, list) else list(tokens)
        if self._tokens is not None and given == self._tokens:
            return
        listed = list(given)  # our own copy: the caller may reuse its list
        if len(set(listed)) != len(listed):
            raise ValueError("scan: a token is listed twice")
        slots = np.fromiter((self._slot(t) for t in listed), dtype=np.int64, count=len(listed))
        first = int(slots[0])
        contiguous = bool(np.array_equal(slots, np.arange(first, first + len(slots))))
        self._tokens, self._slots = listed, slots
        self._sel = slice(first, first + len(slots)) if contiguous else slots
        self._symbol_masks.clear()

    # -- per-token state ---------------------------------------------------------------

    def _slot(self, token: TokenId) -> int:
        slot = self._slot_of.get(token)
        if slot is None:
            if not self._free:
                self._grow()
            slot = self._slot_of[token] = self._free.pop()
        return slot

    def _grow(self) -> None:
        used = len(self._slot_of)
        if used >= self._capacity:
            self._capacity *= 2
            for state in self._states.values():
                state.grow(self._capacity)
            self._prev = {m: _grown(a, self._capacity, math.nan) for m, a in self._prev.items()}
        self._free = list(range(self._capacity - 1, used - 1, -1))  # lowest slot first

    def forget(self, token: TokenId) -> None:
        """Drop a token's state (it left this worker or went idle for good)."""
        slot = self._slot_of.pop(token, None)
        if slot is None:
            return
        for state in self._states.values():
            state.reset(slot)
        for a in self._prev.values():
            a[slot] = math.nan
        self._free.append(slot)
        self._tokens = None

    def token_state(self, token: TokenId) -> TokenState:
        """The token's state, to be stored with its other state (empty when unknown)."""
        slot = self._slot_of.get(token)
        if slot is None:
            return TokenState()
        rules = {}
        for rule_id, s in self._states.items():
            last = NEVER if s.last_fired is None else int(s.last_fired[slot])
            held = _NO_RESULT if s.held is None else int(s.held[slot])
            if last != NEVER or held != _NO_RESULT:
                rules[rule_id] = RuleTokenState(
                    s.rule.version,
                    None if last == NEVER else last,
                    None if held == _NO_RESULT else held == _TRUE,
                )
        previous = {m: float(a[slot]) for m, a in self._prev.items() if not math.isnan(a[slot])}
        return TokenState(rules, previous)

    def restore_token(self, token: TokenId, state: TokenState) -> None:
        """Continue from a stored ``token_state``: replaces what is held for the token.
        Rules no longer present are ignored; an edge state of another rule version too."""
        slot = self._slot(token)
        for s in self._states.values():
            s.reset(slot)
        for rule_id, saved in state.rules.items():
            found = self._states.get(rule_id)
            if found is None:
                continue
            if saved.last_fired_ms is not None:
                found.fired(self._capacity)[slot] = saved.last_fired_ms
            same = saved.version == found.rule.version
            if saved.held is not None and found.held is not None and same:
                found.held[slot] = _TRUE if saved.held else _NOT_TRUE
        for m, a in self._prev.items():
            a[slot] = state.previous.get(m, math.nan)


def _nans(capacity: int) -> np.ndarray:
    return np.full(capacity, math.nan)


class ScanRecord(msgspec.Struct, frozen=True):
    """What a worker stores with a token after a scan: the scan time and the scanner state
    (a restarted worker does not scan the token again at or before ``scanned_ms``)."""

    scanned_ms: TsMs
    state: TokenState
