"""The rule language (ARCHITECTURE §6): parse and validate JSON rules into ``Rule`` objects.

A rule::

    {"name": "whale buying", "description": "optional",
     "conditions": {"all": [{"metric": "window.5min.buy_count", "op": ">", "value": 20},
                            {"not": {"metric": "ind.rsi_14", "op": ">=", "value": 80}},
                            {"metric": "price", "op": "crosses_above",
                             "value": {"metric": "ind.ema_20"}}]},
     "cooldown": 300, "trigger": "level", "enabled": true,
     "symbols": ["So1...", "So2..."], "max_staleness": 30}

A condition is a comparison ``{"metric", "op", "value"}`` or a group ``{"all": [..]}``,
``{"any": [..]}``, ``{"not": cond}``, nested up to ``MAX_DEPTH`` levels; an array where a
condition is expected means ``all`` of it. The older form ``{"conditions": [..], "logic":
"all" | "any"}`` is accepted (``logic`` only with an array). Required: ``name`` (1..200
characters, not blank), ``conditions`` (no empty group) and ``cooldown`` (seconds, 0 ..
1 year). Defaults: ``trigger`` "level", ``enabled`` true, ``description`` "", ``symbols``
none (every token; a list must be non-empty), ``max_staleness`` none (seconds, > 0 ..
1 year). Times become integer milliseconds (rounded).

Metrics are named as in ``tradepulse.core.rule_model`` (``metric_error`` checks one).

Validation never stops at the first problem: every error is collected with the JSON path of
its field (``conditions[1].any[0].op: unknown operator '=>'``), unknown fields included,
and ``RuleError.errors`` lists them in schema order. Evaluation semantics (three-valued,
crossings, triggers) are in ``tradepulse.core.rule_eval`` and ``tradepulse.core.scanner``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import msgspec

from tradepulse.core.errors import TradepulseError
from tradepulse.core.rule_model import (
    CROSSING_OPERATORS,
    DEFAULT_WINDOW_NAMES,
    OPERATORS,
    AllOf,
    AnyOf,
    Comparison,
    Condition,
    MetricRef,
    Not,
    Op,
    Rule,
    Trigger,
    metric_error,
)

__all__ = [
    "CROSSING_OPERATORS", "DEFAULT_WINDOW_NAMES", "OPERATORS", "AllOf", "AnyOf", "Comparison",
    "Condition", "MetricRef", "Not", "Op", "Rule", "RuleError", "Trigger", "decode_rule",
    "metric_error", "parse_rule",
]  # fmt: skip

MAX_DEPTH = 32
NAME_MAX = 200
DESCRIPTION_MAX = 2_000
MAX_SECONDS = 31_536_000  # one year: longest cooldown and staleness
_RULE_FIELDS = ("name", "description", "conditions", "logic", "cooldown", "trigger",
                "enabled", "symbols", "max_staleness")  # fmt: skip
_GROUP_KEYS = ("all", "any", "not")
_COMPARISON_FIELDS = ("metric", "op", "value")


class RuleError(TradepulseError):
    """A rule is invalid. ``errors`` holds every problem as ``"<json path>: <message>"``
    (``$`` is the whole document)."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("invalid rule: " + "; ".join(errors))
        self.errors = errors


def _kind(x: object) -> str:
    """The JSON type name of a decoded value."""
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "boolean"
    if isinstance(x, int | float):
        return "number"
    names = {str: "string", list: "array", dict: "object"}
    return next((n for t, n in names.items() if isinstance(x, t)), type(x).__name__)


def _finite(x: int | float) -> float | None:
    """``x`` as a finite float, or None (infinite, NaN, or an int beyond float range)."""
    try:
        f = float(x)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


def _at(path: str, key: object) -> str:
    return f"{key}" if not path else f"{path}.{key}"


class _Parser:
    """Collects errors while walking one rule document."""

    def __init__(self, windows: Iterable[str]) -> None:
        self.windows = tuple(windows)
        self.errors: list[str] = []

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{path or '$'}: {message}")

    def unknown(self, obj: dict[object, object], allowed: tuple[str, ...], path: str) -> None:
        for key in obj:
            if key not in allowed:
                self.error(_at(path, key), "unknown field")

    def name(self, obj: dict[object, object]) -> str:
        name = obj.get("name")
        if "name" not in obj:
            self.error("name", "required")
        elif not isinstance(name, str):
            self.error("name", f"expected a string, got {_kind(name)}")
        elif not 1 <= len(name) <= NAME_MAX:
            self.error("name", f"must be 1..{NAME_MAX} characters, got {len(name)}")
        elif not name.strip():
            self.error("name", "must not be blank")
        else:
            return name
        return ""

    def description(self, obj: dict[object, object]) -> str:
        text = obj.get("description")
        if text is None:
            return ""
        if not isinstance(text, str):
            self.error("description", f"expected a string, got {_kind(text)}")
        elif len(text) > DESCRIPTION_MAX:
            self.error("description", f"must be at most {DESCRIPTION_MAX} characters, "
                                      f"got {len(text)}")  # fmt: skip
        else:
            return text
        return ""

    def root(self, obj: dict[object, object]) -> Condition | None:
        conditions = obj.get("conditions")
        if "conditions" not in obj:
            self.error("conditions", "required")
            self.logic(obj, misplaced=False)
            return None
        if not isinstance(conditions, list):
            condition = self.condition(conditions, "conditions", 1)
            self.logic(obj, misplaced=True)
            return condition
        items = self.items(conditions, "conditions", 1)
        any_ = self.logic(obj, misplaced=False) == "any"
        return _group(AnyOf if any_ else AllOf, items)

    def logic(self, obj: dict[object, object], *, misplaced: bool) -> str:
        if "logic" not in obj:
            return "all"
        logic = obj["logic"]
        if logic not in ("all", "any"):
            shown = repr(logic) if isinstance(logic, str) else _kind(logic)
            self.error("logic", f"expected 'all' or 'any', got {shown}")
        elif misplaced:
            self.error("logic", "only allowed with an array of conditions")
        return "any" if logic == "any" else "all"

    def items(self, xs: list[object], path: str, depth: int) -> list[Condition] | None:
        if not xs:
            self.error(path, "must not be empty")
            return None
        items = [self.condition(x, f"{path}[{i}]", depth + 1) for i, x in enumerate(xs)]
        return None if any(c is None for c in items) else [c for c in items if c is not None]

    def condition(self, x: object, path: str, depth: int) -> Condition | None:
        if depth > MAX_DEPTH:
            self.error(path, f"conditions nested deeper than {MAX_DEPTH} levels")
            return None
        if isinstance(x, list):
            return _group(AllOf, self.items(x, path, depth))
        if not isinstance(x, dict):
            self.error(path, f"expected a condition (an object or an array), got {_kind(x)}")
            return None
        keys = [k for k in _GROUP_KEYS if k in x]
        if not keys:
            return self.comparison(x, path)
        if any(k in x for k in _COMPARISON_FIELDS):
            self.error(path, "a condition is a comparison (metric, op, value) or a group "
                             "(all, any, not), not both")  # fmt: skip
            return None
        self.unknown(x, _GROUP_KEYS, path)
        parts = [self.group(k, x[k], _at(path, k), depth) for k in keys]
        if len(keys) > 1:
            self.error(path, "a group has exactly one of 'all', 'any', 'not', got "
                             + ", ".join(repr(k) for k in keys))  # fmt: skip
            return None
        return parts[0]

    def group(self, key: str, x: object, path: str, depth: int) -> Condition | None:
        if key == "not":
            item = self.condition(x, path, depth + 1)
            return None if item is None else Not(item)
        if not isinstance(x, list):
            self.error(path, f"expected an array of conditions, got {_kind(x)}")
            return None
        return _group(AllOf if key == "all" else AnyOf, self.items(x, path, depth))

    def comparison(self, x: dict[object, object], path: str) -> Comparison | None:
        self.unknown(x, _COMPARISON_FIELDS, path)
        metric = self.metric(x, path)
        op = self.op(x, path)
        value = self.value(x, path)
        if metric is None or op is None or value is None:
            return None
        return Comparison(metric, op, value)

    def metric(self, x: dict[object, object], path: str) -> str | None:
        path = _at(path, "metric")
        if "metric" not in x:
            self.error(path, "required")
            return None
        metric = x["metric"]
        if not isinstance(metric, str):
            self.error(path, f"expected a string, got {_kind(metric)}")
            return None
        problem = metric_error(metric, self.windows)
        if problem:
            self.error(path, problem)
            return None
        return metric

    def op(self, x: dict[object, object], path: str) -> Op | None:
        path = _at(path, "op")
        op = x.get("op")
        if "op" not in x:
            self.error(path, "required")
        elif not isinstance(op, str):
            self.error(path, f"expected a string, got {_kind(op)}")
        elif op not in OPERATORS:
            self.error(path, f"unknown operator {op!r}")
        else:
            return op  # type: ignore[return-value]  # checked against OPERATORS
        return None

    def value(self, x: dict[object, object], path: str) -> float | MetricRef | None:
        path = _at(path, "value")
        value = x.get("value")
        if "value" not in x:
            self.error(path, "required")
        elif isinstance(value, dict):
            self.unknown(value, ("metric",), path)
            metric = self.metric(value, path)
            return None if metric is None else MetricRef(metric)
        elif not isinstance(value, int | float) or isinstance(value, bool):
            self.error(path, f'expected a number or {{"metric": ...}}, got {_kind(value)}')
        elif (number := _finite(value)) is None:
            self.error(path, "must be finite")
        else:
            return number
        return None

    def seconds_ms(self, obj: dict[object, object], key: str, *, zero_ok: bool) -> int | None:
        """A duration in seconds (0 or more, or more than 0, at most a year) as ms."""
        x = obj.get(key)
        if not isinstance(x, int | float) or isinstance(x, bool):
            self.error(key, f"expected a number of seconds, got {_kind(x)}")
            return None
        seconds = _finite(x)
        if seconds is None:
            self.error(key, "must be a finite number of seconds")
        elif zero_ok and not 0 <= seconds <= MAX_SECONDS:
            self.error(key, f"must be between 0 and {MAX_SECONDS} seconds, got {x}")
        elif not zero_ok and not 0 < seconds <= MAX_SECONDS:
            self.error(key, f"must be more than 0 and at most {MAX_SECONDS} seconds, got {x}")
        else:
            return round(seconds * 1000)
        return None

    def choice(self, obj: dict[object, object], key: str, allowed: tuple[str, ...]) -> str:
        x = obj.get(key, allowed[0])
        if x in allowed:
            return str(x)
        shown = repr(x) if isinstance(x, str) else _kind(x)
        self.error(key, f"expected {' or '.join(repr(a) for a in allowed)}, got {shown}")
        return allowed[0]

    def enabled(self, obj: dict[object, object]) -> bool:
        x = obj.get("enabled", True)
        if not isinstance(x, bool):
            self.error("enabled", f"expected a boolean, got {_kind(x)}")
            return True
        return x

    def symbols(self, obj: dict[object, object]) -> tuple[str, ...] | None:
        xs = obj.get("symbols")
        if xs is None:
            return None
        if not isinstance(xs, list):
            self.error("symbols", f"expected an array of strings, got {_kind(xs)}")
            return None
        if not xs:
            self.error("symbols", "must not be empty (leave it out to cover every token)")
        for i, x in enumerate(xs):
            if not isinstance(x, str):
                self.error(f"symbols[{i}]", f"expected a string, got {_kind(x)}")
            elif not x:
                self.error(f"symbols[{i}]", "must not be empty")
        return tuple(dict.fromkeys(x for x in xs if isinstance(x, str)))


def _group(kind: type[AllOf] | type[AnyOf], items: list[Condition] | None) -> Condition | None:
    return None if items is None else kind(tuple(items))


def parse_rule(
    obj: object,
    *,
    windows: Iterable[str] = DEFAULT_WINDOW_NAMES,
    rule_id: str | None = None,
    version: int = 0,
) -> Rule:
    """Validate a decoded JSON rule into a ``Rule``; raise ``RuleError`` with every error.

    ``windows`` are the configured window names (metrics may read only those); ``rule_id``
    defaults to the rule's name."""
    if not isinstance(obj, dict):
        raise RuleError([f"$: expected an object, got {_kind(obj)}"])
    p = _Parser(windows)
    p.unknown(obj, _RULE_FIELDS, "")
    name = p.name(obj)
    description = p.description(obj)
    condition = p.root(obj)
    cooldown_ms = p.seconds_ms(obj, "cooldown", zero_ok=True) if "cooldown" in obj else None
    if "cooldown" not in obj:
        p.error("cooldown", "required")
    trigger = p.choice(obj, "trigger", ("level", "edge"))
    enabled = p.enabled(obj)
    symbols = p.symbols(obj)
    staleness_ms = None
    if obj.get("max_staleness") is not None:
        staleness_ms = p.seconds_ms(obj, "max_staleness", zero_ok=False)
    if p.errors or condition is None or cooldown_ms is None:
        raise RuleError(p.errors)
    return Rule(
        id=name if rule_id is None else rule_id, version=version, name=name,
        condition=condition, cooldown_ms=cooldown_ms,
        trigger="edge" if trigger == "edge" else "level", enabled=enabled,
        description=description, symbols=symbols, max_staleness_ms=staleness_ms,
    )  # fmt: skip


def decode_rule(
    data: bytes | str,
    *,
    windows: Iterable[str] = DEFAULT_WINDOW_NAMES,
    rule_id: str | None = None,
    version: int = 0,
) -> Rule:
    """``parse_rule`` of a JSON document; malformed JSON is a ``RuleError`` at ``$``."""
    try:
        obj = msgspec.json.decode(data)
    except msgspec.DecodeError as e:
        raise RuleError([f"$: invalid JSON: {e}"]) from e
    return parse_rule(obj, windows=windows, rule_id=rule_id, version=version)
