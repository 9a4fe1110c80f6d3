"""Where a worker's rules come from: a JSON file, or the rule store in PostgreSQL with
reloads announced on the Redis channel ``rules.updated`` (and every ``reload_s`` anyway,
in case an announcement was missed)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import msgspec
import redis

from tradepulse.core.errors import InputError, TradepulseError
from tradepulse.core.rules import Rule, RuleError, parse_rule

log = logging.getLogger(__name__)


def rules_from_file(path: Path, windows: list[str]) -> list[Rule]:
    """The rules of a JSON file (one rule object or a list); a rule's id is its name."""
    try:
        data = msgspec.json.decode(path.read_bytes())
    except (OSError, msgspec.DecodeError) as exc:
        raise InputError(f"cannot read rules from {path}: {exc}") from exc
    items = data if isinstance(data, list) else [data]
    rules, errors = [], []
    for i, item in enumerate(items):
        name = item.get("name") if isinstance(item, dict) else None
        try:
            rules.append(parse_rule(item, windows=windows, rule_id=str(name or i)))
        except RuleError as exc:
            errors += [f"[{i}].{e}" for e in exc.errors]
    if errors:
        raise RuleError(errors)
    return rules


class FileRules:
    """Rules of a file, reloaded when the file changes."""

    def __init__(self, path: Path, windows: list[str], interval_ms: int) -> None:
        self.path, self.windows, self.interval_ms = path, windows, interval_ms
        self._mtime = -1.0

    def load(self) -> list[Rule]:
        self._mtime = self._stat()
        return rules_from_file(self.path, self.windows)

    def changed(self) -> bool:
        return self._stat() != self._mtime

    def _stat(self) -> float:
        try:
            return self.path.stat().st_mtime
        except OSError:
            return -1.0


class EnabledRules(Protocol):
    def enabled_rules(self, windows: list[str]) -> list[Rule]: ...


class StoreRules:
    """Enabled rules of the rule store; ``changed`` after a ``rules.updated`` message or
    ``reload_s`` seconds."""

    def __init__(
        self,
        store: Callable[[], EnabledRules],
        windows: list[str],
        interval_ms: int,
        client: redis.Redis,
        channel: str,
        reload_s: float = 60.0,
    ) -> None:
        self._store, self.windows, self.interval_ms = store, windows, interval_ms
        self._reload_s = reload_s
        self._loaded_s = 0.0
        self._announced = threading.Event()
        thread = threading.Thread(target=self._listen, args=(client, channel), daemon=True,
                                  name="rules-updated")  # fmt: skip
        thread.start()

    def load(self) -> list[Rule]:
        self._announced.clear()
        self._loaded_s = time.monotonic()
        try:
            return self._store().enabled_rules(self.windows)
        except TradepulseError:
            raise
        except Exception as exc:  # a store that cannot be built: keep the rules we have
            raise InputError(f"rule store unavailable: {exc}") from exc

    def changed(self) -> bool:
        return self._announced.is_set() or time.monotonic() - self._loaded_s >= self._reload_s

    def _listen(self, client: redis.Redis, channel: str) -> None:
        while True:
            try:
                pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
                pubsub.subscribe(channel)
                for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._announced.set()
            except redis.RedisError as exc:
                log.warning("rules.updated subscription lost, retrying: %s", exc)
                time.sleep(1.0)
