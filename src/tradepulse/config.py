"""Settings: read once from the environment (and ``.env``), validated, typed.

Nothing else in tradepulse reads ``os.environ``. A bad value stops start-up with a
``ConfigError`` naming the variable and what it accepts. Values that may hold a password
(``TRADEPULSE_PG_DSN``, ``TRADEPULSE_REDIS_URL``) are never echoed: not in errors, and not in
the ``repr`` of ``Settings``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

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
    kafka_group: str = "tradepulse"
    kafka_dlq_topic: str = ""  # empty: "<kafka_topic>.dlq"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = ""
    clock: str = "wall"
    batch_size: int = 10_000
    batch_wait_ms: int = 100
    maintenance_interval_ms: int = 60_000
    stale_after_ms: int = 10_000
    http_host: str = "127.0.0.1"
    http_port: int = 9100
    bars: bool = True
    bar_grace_ms: int = 2_000
    rules: str = "db"  # "db": the rule store; "off": no scans; else a JSON file of rules
    scan_interval_ms: int = 1_000
    pg_dsn: str = "postgresql://postgres@127.0.0.1:5432/test"  # may hold a password
    persist_group: str = "tradepulse-persister"
    persist_consumer: str = ""  # empty: the host name (stable across restarts of a pod)
    persist_batch_size: int = 500
    persist_claim_idle_ms: int = 60_000
    persist_http_port: int = 9101  # operations HTTP of `tradepulse persist` (host: http_host)
    alerts_retention_ms: int = 86_400_000  # acknowledged alerts kept in the stream this long
    jwt_secret: str = ""  # HS256 shared secret (>= 32 bytes); never printed
    jwt_public_key: str = ""  # RS256 public key: PEM text or the path of a .pem file
    public_market_data: bool = True  # tokens, candles, symbols readable without a token
    otel_endpoint: str = ""  # OTLP/HTTP collector; empty: tracing off
    otel_service_name: str = ""  # empty: tradepulse-<role> (worker, persist, rebuild)
    api_cache_ttl_ms: int = 1_000  # longest age of the token list's read (0: every request)
    ws_heartbeat_ms: int = 15_000  # server heartbeat; a peer silent for 2 intervals is closed
    ws_send_queue: int = 1_000  # alerts and replies queued per connection before 4008
    ws_rate: int = 20  # client messages per second (token bucket refill)
    ws_burst: int = 40  # token bucket size
    ws_max_per_user: int = 10  # connections per user (anonymous: per client address)
    ws_max_frame_bytes: int = 4_096  # largest client message
    ws_max_subscriptions: int = 100  # token channels per connection
    ws_top_interval_ms: int = 1_000  # period of tokens:top messages
    ws_prefs_ttl_ms: int = 2_000  # how old the alert preferences the gateway applies may be

    @property
    def dlq_topic(self) -> str:
        return self.kafka_dlq_topic or f"{self.kafka_topic}.dlq"

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        """Every field, passwords in ``pg_dsn`` and ``redis_url`` shown as ``***``."""
        fields = [(name, getattr(self, name)) for name in self.__struct_fields__]
        return [(n, _redact(n, v)) for n, v in fields]

    def __repr__(self) -> str:
        return f"Settings({', '.join(f'{k}={v!r}' for k, v in self.__rich_repr__())})"


_SECRET_FIELDS = frozenset({"pg_dsn", "redis_url", "jwt_secret"})


def _redact(name: str, value: Any) -> Any:
    if name == "jwt_secret":
        return "***" if value else ""
    return redact_password(value) if name in _SECRET_FIELDS else value


_URI_PASSWORD_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:@/]*):.*@")
_KEY_PASSWORD_RE = re.compile(r"(password\s*=\s*)('(?:\\.|[^'\\])*'|[^\s&]+)")


def redact_password(url: str) -> str:
    """``url`` (a URI such as ``postgresql://u:pw@host/db`` or ``redis://:pw@host``, or libpq
    ``key=value`` pairs) with its password shown as ``***``; errs on hiding too much."""
    url = _URI_PASSWORD_RE.sub(r"\1:***@", url)
    return _KEY_PASSWORD_RE.sub(r"\1***", url)


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
    kwargs = {
        field: parse(name, env[name]) for name, (field, parse) in _VARIABLES.items() if name in env
    }
    if not kwargs.get("kafka_dlq_topic", "x"):
        del kwargs["kafka_dlq_topic"]  # empty: the default "<topic>.dlq"
    return Settings(**kwargs)  # type: ignore[arg-type]


def _windows(name: str, value: str) -> object:
    return _parse(name, value, parse_windows, "e.g. 1min,5min,1hour")


def _duration(name: str, value: str) -> object:
    return _parse(name, value, parse_duration_ms, "a duration such as 5s")


def _redis_url(name: str, value: str) -> str:
    url = value.strip()
    if not url.startswith(("redis://", "rediss://", "unix://")):
        shown = redact_password(url)
        raise ConfigError(f"{name}={shown!r}: accepts redis://host:port/db (or rediss://, unix://)")
    return url


def _clock(name: str, value: str) -> str:
    clock = value.strip().lower()
    if clock not in ("wall", "event"):
        raise ConfigError(f"{name}={value!r}: accepts wall or event")
    return clock


def _log_level(name: str, value: str) -> str:
    level = value.strip().upper()
    level = "WARN" if level == "WARNING" else level
    if level not in LOG_LEVELS:
        raise ConfigError(f"{name}={value!r}: accepts {', '.join(LOG_LEVELS)}")
    return level


def _kafka_name(name: str, value: str) -> str:
    """A topic or group name ("" only for the dead-letter topic: its default)."""
    value = value.strip()
    if not (_TOPIC_RE.match(value) or (name == "TRADEPULSE_KAFKA_DLQ_TOPIC" and not value)):
        raise ConfigError(f"{name}={value!r}: accepts 1-249 of letters, digits, '.', '_', '-'")
    return value


def _int_at_least(low: int) -> Callable[[str, str], int]:
    def parse(name: str, value: str) -> int:
        try:
            number = int(value.strip())
        except ValueError:
            number = low - 1
        if number < low:
            raise ConfigError(f"{name}={value!r}: accepts a whole number >= {low}")
        return number

    return parse


def _log_format(name: str, value: str) -> str:
    fmt = value.strip().lower()
    if fmt not in ("json", "text"):
        raise ConfigError(f"{name}={value!r}: accepts json or text")
    return fmt


def _port(name: str, value: str) -> int:
    port = _int_at_least(0)(name, value)
    if port > 65_535:
        raise ConfigError(f"{name}={value!r}: accepts a port number 0-65535 (0: any free port)")
    return port


def _host(name: str, value: str) -> str:
    host = value.strip()
    if not re.match(r"^[A-Za-z0-9._:-]+$", host):
        raise ConfigError(f"{name}={value!r}: accepts an address to listen on, e.g. 0.0.0.0")
    return host


def _text(_name: str, value: str) -> str:
    return value


def _stripped(_name: str, value: str) -> str:
    return value.strip()


def _rules(name: str, value: str) -> str:
    text = value.strip()
    if not text:
        raise ConfigError(f"{name}={value!r}: accepts db, off or the path of a JSON rules file")
    return text


def _positive_duration(name: str, value: str) -> int:
    ms = _duration(name, value)
    if not isinstance(ms, int) or ms <= 0:
        raise ConfigError(f"{name}={value!r}: accepts a duration above zero such as 1s")
    return ms


def _flag(name: str, value: str) -> bool:
    text = value.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={value!r}: accepts true or false")


def _non_empty(name: str, value: str) -> str:
    if not value.strip():
        raise ConfigError(f"{name}={value!r}: accepts a non-empty name")
    return value.strip()


def _jwt_secret(name: str, value: str) -> str:
    """An HS256 secret of at least 32 bytes ("" : none); never echoed."""
    secret = value.strip()
    if secret and len(secret.encode()) < 32:
        raise ConfigError(f"{name}: accepts a secret of at least 32 bytes (it is shorter)")
    return secret


def _jwt_public_key(name: str, value: str) -> str:
    """An RS256 public key, PEM text or the path of a PEM file ("": none); checked here."""
    if not value.strip():
        return ""
    load_pem(value, name)
    return value.strip()


def load_pem(value: str, name: str) -> str:
    """PEM text given inline or as a file path; a ``ConfigError`` naming ``name`` else."""
    text = value.strip()
    if not text.startswith("-----BEGIN"):
        try:
            text = Path(text).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{name}: cannot read PEM file {value!r}: {exc.strerror}") from None
    if "-----BEGIN" not in text:
        raise ConfigError(f"{name}: accepts a PEM key (inline or the path of a .pem file)")
    return text


def _pg_dsn(name: str, value: str) -> str:
    """A libpq connection string: URI or ``key=value`` pairs ("": libpq's defaults).

    Neither the value nor psycopg's message (which quotes it) is shown: it may hold a
    password. psycopg is imported here, not at the top: it takes ~0.1 s to import.
    """
    from psycopg import Error
    from psycopg.conninfo import conninfo_to_dict

    try:
        conninfo_to_dict(value)
    except Error:
        raise ConfigError(
            f"{name}: not a PostgreSQL connection string (accepts "
            "postgresql://user@host:port/dbname or host=... dbname=... pairs)"
        ) from None  # the cause quotes the value
    return value.strip()


def _otel_endpoint(name: str, value: str) -> str:
    """An OTLP/HTTP collector address, ``http(s)://host[:port][/path]`` ("": tracing off)."""
    url = value.strip()
    if url and not _OTEL_URL_RE.match(url):
        raise ConfigError(
            f"{name}={value!r}: accepts an OTLP/HTTP address such as http://127.0.0.1:4318 "
            "(empty: tracing off)"
        )
    return url


_OTEL_URL_RE = re.compile(r"^https?://([A-Za-z0-9._-]+|\[[0-9A-Fa-f:]+\])(:\d{1,5})?(/\S*)?$")
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


def _parse(name: str, value: str, parse: Callable[[str], T], accepts: str) -> T:
    try:
        return parse(value)
    except WindowSpecError as exc:
        raise ConfigError(f"{name}={value!r}: {exc} (accepts {accepts})") from exc


_VARIABLES: dict[str, tuple[str, Callable[[str, str], object]]] = {
    "TRADEPULSE_WINDOWS": ("windows", _windows),
    "TRADEPULSE_MAX_FUTURE_SKEW": ("max_future_skew_ms", _duration),
    "TRADEPULSE_KAFKA_BOOTSTRAP": ("kafka_bootstrap", lambda _n, v: _bootstrap(v)),
    "TRADEPULSE_KAFKA_TOPIC": ("kafka_topic", _kafka_name),
    "TRADEPULSE_KAFKA_GROUP": ("kafka_group", _kafka_name),
    "TRADEPULSE_KAFKA_DLQ_TOPIC": ("kafka_dlq_topic", _kafka_name),
    "TRADEPULSE_REDIS_URL": ("redis_url", _redis_url),
    "TRADEPULSE_REDIS_PREFIX": ("redis_prefix", _text),
    "TRADEPULSE_CLOCK": ("clock", _clock),
    "TRADEPULSE_BATCH_SIZE": ("batch_size", _int_at_least(1)),
    "TRADEPULSE_BATCH_WAIT_MS": ("batch_wait_ms", _int_at_least(0)),
    "TRADEPULSE_MAINTENANCE_INTERVAL": ("maintenance_interval_ms", _duration),
    "TRADEPULSE_STALE_AFTER": ("stale_after_ms", _duration),
    "TRADEPULSE_HTTP_HOST": ("http_host", _host),
    "TRADEPULSE_HTTP_PORT": ("http_port", _port),
    "TRADEPULSE_BARS": ("bars", _flag),
    "TRADEPULSE_RULES": ("rules", _rules),
    "TRADEPULSE_SCAN_INTERVAL": ("scan_interval_ms", _positive_duration),
    "TRADEPULSE_BAR_GRACE": ("bar_grace_ms", _duration),
    "TRADEPULSE_PG_DSN": ("pg_dsn", _pg_dsn),
    "TRADEPULSE_PERSIST_GROUP": ("persist_group", _non_empty),
    "TRADEPULSE_PERSIST_CONSUMER": ("persist_consumer", _stripped),
    "TRADEPULSE_PERSIST_BATCH_SIZE": ("persist_batch_size", _int_at_least(1)),
    "TRADEPULSE_PERSIST_CLAIM_IDLE": ("persist_claim_idle_ms", _duration),
    "TRADEPULSE_PERSIST_HTTP_PORT": ("persist_http_port", _port),
    "TRADEPULSE_ALERTS_RETENTION": ("alerts_retention_ms", _duration),
    "TRADEPULSE_JWT_SECRET": ("jwt_secret", _jwt_secret),
    "TRADEPULSE_JWT_PUBLIC_KEY": ("jwt_public_key", _jwt_public_key),
    "TRADEPULSE_PUBLIC_MARKET_DATA": ("public_market_data", _flag),
    "TRADEPULSE_OTEL_ENDPOINT": ("otel_endpoint", _otel_endpoint),
    "TRADEPULSE_OTEL_SERVICE_NAME": ("otel_service_name", _stripped),
    "TRADEPULSE_API_CACHE_TTL": ("api_cache_ttl_ms", _duration),
    "TRADEPULSE_WS_HEARTBEAT": ("ws_heartbeat_ms", _positive_duration),
    "TRADEPULSE_WS_SEND_QUEUE": ("ws_send_queue", _int_at_least(1)),
    "TRADEPULSE_WS_RATE": ("ws_rate", _int_at_least(1)),
    "TRADEPULSE_WS_BURST": ("ws_burst", _int_at_least(1)),
    "TRADEPULSE_WS_MAX_PER_USER": ("ws_max_per_user", _int_at_least(1)),
    "TRADEPULSE_WS_MAX_FRAME": ("ws_max_frame_bytes", _int_at_least(64)),
    "TRADEPULSE_WS_MAX_SUBSCRIPTIONS": ("ws_max_subscriptions", _int_at_least(1)),
    "TRADEPULSE_WS_TOP_INTERVAL": ("ws_top_interval_ms", _positive_duration),
    "TRADEPULSE_WS_PREFS_TTL": ("ws_prefs_ttl_ms", _positive_duration),
    "LOG_LEVEL": ("log_level", _log_level),
    "TRADEPULSE_LOG_FORMAT": ("log_format", _log_format),
}
