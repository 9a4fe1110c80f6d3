"""Settings: read once from the environment (and ``.env``), validated, typed.

Nothing else in tradepulse reads ``os.environ``. A bad value stops start-up with a
``ConfigError`` naming the variable and what it accepts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import msgspec

from tradepulse.core.errors import ConfigError, WindowSpecError
from tradepulse.core.windows import DEFAULT_WINDOWS, WindowSpec, parse_duration_ms, parse_windows

T = TypeVar("T")
LOG_LEVELS = ("DEBUG", "INFO", "WARN", "ERROR", "FATAL")


class Settings(msgspec.Struct, frozen=True):
    """Every setting of tradepulse with its default."""

    windows: tuple[WindowSpec, ...] = parse_windows(DEFAULT_WINDOWS)
    max_future_skew_ms: int = 5_000
    log_level: str = "INFO"
    log_format: str = "json"
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_topic: str = "trade-info"


def read_dotenv(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines of a ``.env`` file (``#`` comments, optional quotes)."""
    if not path.is_file():
        return {}
    values: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip().removeprefix("export ").strip()] = value.strip().strip("'\"")
    return values


def load_settings(
    environ: Mapping[str, str] | None = None, dotenv: Path | None = Path(".env")
) -> Settings:
    """Settings from ``environ`` (default ``os.environ``) over ``.env`` over defaults."""
    base = read_dotenv(dotenv) if dotenv else {}
    env = {**base, **(os.environ if environ is None else environ)}
    kwargs: dict[str, object] = {}
    if "TRADEPULSE_WINDOWS" in env:
        kwargs["windows"] = _parse("TRADEPULSE_WINDOWS", env, parse_windows, "e.g. 1min,5min,1hour")
    if "TRADEPULSE_MAX_FUTURE_SKEW" in env:
        kwargs["max_future_skew_ms"] = _parse(
            "TRADEPULSE_MAX_FUTURE_SKEW", env, parse_duration_ms, "a duration such as 5s"
        )
    if "TRADEPULSE_KAFKA_BOOTSTRAP" in env:
        kwargs["kafka_bootstrap"] = _bootstrap(env["TRADEPULSE_KAFKA_BOOTSTRAP"])
    if "TRADEPULSE_KAFKA_TOPIC" in env:
        topic = env["TRADEPULSE_KAFKA_TOPIC"].strip()
        if not _TOPIC_RE.match(topic):
            raise ConfigError(
                f"TRADEPULSE_KAFKA_TOPIC={topic!r}: accepts 1-249 of letters, digits, '.', '_', '-'"
            )
        kwargs["kafka_topic"] = topic
    if "LOG_LEVEL" in env:
        level = env["LOG_LEVEL"].strip().upper()
        level = "WARN" if level == "WARNING" else level
        if level not in LOG_LEVELS:
            raise ConfigError(f"LOG_LEVEL={env['LOG_LEVEL']!r}: accepts {', '.join(LOG_LEVELS)}")
        kwargs["log_level"] = level
    return Settings(**kwargs)  # type: ignore[arg-type]


_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_HOST_PORT_RE = re.compile(r"^[A-Za-z0-9._-]+:\d{1,5}$|^\[[0-9A-Fa-f:]+\]:\d{1,5}$")


def _bootstrap(value: str) -> str:
    """A comma-separated list of ``host:port``."""
    hosts = [h.strip() for h in value.split(",") if h.strip()]
    if not hosts or not all(_HOST_PORT_RE.match(h) for h in hosts):
        raise ConfigError(
            f"TRADEPULSE_KAFKA_BOOTSTRAP={value!r}: accepts host:port[,host:port...], "
            "e.g. 127.0.0.1:9092"
        )
    return ",".join(hosts)


def _parse(name: str, env: Mapping[str, str], parse: Callable[[str], T], accepts: str) -> T:
    try:
        return parse(env[name])
    except WindowSpecError as exc:
        raise ConfigError(f"{name}={env[name]!r}: {exc} (accepts {accepts})") from exc
