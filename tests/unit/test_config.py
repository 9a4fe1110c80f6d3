"""Settings: defaults, environment over .env, and errors that name the variable."""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest
from rich.pretty import pretty_repr

from tradepulse.config import load_settings, redact_password
from tradepulse.core.errors import ConfigError


def test_defaults_without_environment(tmp_path: Path) -> None:
    s = load_settings({}, dotenv=tmp_path / "missing.env")
    assert [w.name for w in s.windows] == ["1min", "5min", "15min", "30min", "1hour"]
    assert (s.max_future_skew_ms, s.log_level) == (5_000, "INFO")


def test_environment_overrides_dotenv(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text('# comment\nTRADEPULSE_WINDOWS="1min,6hour"\nLOG_LEVEL=debug\n')
    s = load_settings({"LOG_LEVEL": "warning"}, dotenv=env_file)
    assert [w.duration_ms for w in s.windows] == [60_000, 21_600_000]
    assert s.log_level == "WARN"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TRADEPULSE_WINDOWS", "1min,banana"),
        ("TRADEPULSE_WINDOWS", ""),
        ("TRADEPULSE_WINDOWS", "60s,1min"),
        ("TRADEPULSE_MAX_FUTURE_SKEW", "soon"),
        ("LOG_LEVEL", "LOUD"),
        ("TRADEPULSE_KAFKA_BOOTSTRAP", "localhost"),
        ("TRADEPULSE_KAFKA_BOOTSTRAP", ""),
        ("TRADEPULSE_KAFKA_TOPIC", "bad topic!"),
        ("TRADEPULSE_KAFKA_GROUP", ""),
        ("TRADEPULSE_REDIS_URL", "http://localhost"),
        ("TRADEPULSE_CLOCK", "lunar"),
        ("TRADEPULSE_BATCH_SIZE", "0"),
        ("TRADEPULSE_BATCH_WAIT_MS", "soon"),
        ("TRADEPULSE_PG_DSN", "nonsense"),
        ("TRADEPULSE_PERSIST_GROUP", " "),
        ("TRADEPULSE_PERSIST_BATCH_SIZE", "0"),
        ("TRADEPULSE_PERSIST_BATCH_SIZE", "many"),
        ("TRADEPULSE_PERSIST_CLAIM_IDLE", "soon"),
        ("TRADEPULSE_PERSIST_CLAIM_IDLE", "0s"),
        ("TRADEPULSE_HTTP_PORT", "70000"),
        ("TRADEPULSE_HTTP_PORT", "http"),
        ("TRADEPULSE_HTTP_HOST", "my host"),
        ("TRADEPULSE_LOG_FORMAT", "xml"),
        ("TRADEPULSE_BARS", "maybe"),
        ("TRADEPULSE_BAR_GRACE", "a while"),
    ],
)
def test_bad_value_names_the_variable(name: str, value: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({name: value}, dotenv=tmp_path / "none")
    assert name in str(info.value)


def test_worker_operations_and_bar_settings_read(tmp_path: Path) -> None:
    env = {"TRADEPULSE_HTTP_PORT": "0", "TRADEPULSE_HTTP_HOST": "0.0.0.0",
           "TRADEPULSE_LOG_FORMAT": "TEXT", "TRADEPULSE_BARS": "off",
           "TRADEPULSE_BAR_GRACE": "500ms"}  # fmt: skip
    s = load_settings(env, dotenv=tmp_path / "none")
    assert (s.http_port, s.http_host, s.log_format) == (0, "0.0.0.0", "text")
    assert (s.bars, s.bar_grace_ms) == (False, 500)
    d = load_settings({}, dotenv=tmp_path / "none")
    assert (d.http_port, d.http_host, d.log_format, d.bars, d.bar_grace_ms) == (
        9100, "127.0.0.1", "json", True, 2_000)  # fmt: skip


def test_every_variable_is_documented_in_env_example() -> None:
    from tradepulse.config import _VARIABLES

    example = (Path(__file__).parents[2] / ".env.example").read_text()
    documented = {line.split("=", 1)[0].strip() for line in example.splitlines()
                  if "=" in line and not line.lstrip().startswith("#")}  # fmt: skip
    assert set(_VARIABLES) <= documented, set(_VARIABLES) - documented


def test_kafka_settings_read_and_normalized(tmp_path: Path) -> None:
    env = {
        "TRADEPULSE_KAFKA_BOOTSTRAP": " 127.0.0.1:9092 , [::1]:9093",
        "TRADEPULSE_KAFKA_TOPIC": "t.x",
    }
    s = load_settings(env, dotenv=tmp_path / "none")
    assert (s.kafka_bootstrap, s.kafka_topic) == ("127.0.0.1:9092,[::1]:9093", "t.x")


def test_worker_settings_defaults_and_overrides(tmp_path: Path) -> None:
    s = load_settings({"TRADEPULSE_KAFKA_TOPIC": "trades"}, dotenv=tmp_path / "none")
    assert (s.dlq_topic, s.kafka_group, s.clock, s.batch_size) == (
        "trades.dlq",
        "tradepulse",
        "wall",
        10_000,
    )
    env = {
        "TRADEPULSE_KAFKA_DLQ_TOPIC": "dead",
        "TRADEPULSE_CLOCK": "EVENT",
        "TRADEPULSE_BATCH_WAIT_MS": "0",
        "TRADEPULSE_REDIS_URL": "redis://127.0.0.1:6379/3",
        "TRADEPULSE_REDIS_PREFIX": "t:",
    }
    s = load_settings(env, dotenv=tmp_path / "none")
    assert (s.dlq_topic, s.clock, s.batch_wait_ms, s.redis_url, s.redis_prefix) == (
        "dead", "event", 0, "redis://127.0.0.1:6379/3", "t:",
    )  # fmt: skip


def test_history_settings_without_environment_take_defaults(tmp_path: Path) -> None:
    s = load_settings({}, dotenv=tmp_path / "none")
    assert s.pg_dsn == "postgresql://postgres@127.0.0.1:5432/test"
    assert (s.persist_group, s.persist_consumer, s.persist_batch_size) == (
        "tradepulse-persister", "", 500,
    )  # fmt: skip
    assert s.persist_claim_idle_ms == 60_000


def test_history_settings_from_environment_read_and_stripped(tmp_path: Path) -> None:
    env = {
        "TRADEPULSE_PG_DSN": " host=db port=5433 dbname=history ",
        "TRADEPULSE_PERSIST_GROUP": " archivers ",
        "TRADEPULSE_PERSIST_CONSUMER": " pod-1 ",
        "TRADEPULSE_PERSIST_BATCH_SIZE": "50",
        "TRADEPULSE_PERSIST_CLAIM_IDLE": "30s",
    }
    s = load_settings(env, dotenv=tmp_path / "none")
    assert (s.pg_dsn, s.persist_group, s.persist_consumer) == (
        "host=db port=5433 dbname=history", "archivers", "pod-1",
    )  # fmt: skip
    assert (s.persist_batch_size, s.persist_claim_idle_ms) == (50, 30_000)


@pytest.mark.parametrize(
    "dsn",
    [
        "host=db password=s3cret-pw port",  # a key without "="
        "postgresql://u:s3cret-pw@[::1/db",  # psycopg's message quotes the whole URI
        "postgresql://u:s3cret-pw@h/db?bogus=1",
    ],
)
def test_bad_pg_dsn_error_names_variable_and_hides_password(dsn: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"TRADEPULSE_PG_DSN": dsn}, dotenv=tmp_path / "none")
    message = str(info.value)
    assert "TRADEPULSE_PG_DSN" in message and "postgresql://user@host:port/dbname" in message
    assert "s3cret" not in "".join(traceback.format_exception(info.value))


def test_bad_redis_url_error_hides_password(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="TRADEPULSE_REDIS_URL") as info:
        load_settings({"TRADEPULSE_REDIS_URL": "http://:s3cret@cache:6379"}, dotenv=tmp_path / "x")
    assert "s3cret" not in str(info.value)


def test_settings_repr_hides_passwords_but_keeps_them_for_use(tmp_path: Path) -> None:
    env = {
        "TRADEPULSE_PG_DSN": "postgresql://app:s3cret@db:5432/history",
        "TRADEPULSE_REDIS_URL": "redis://:r3dis@cache:6379/0",
    }
    s = load_settings(env, dotenv=tmp_path / "none")
    assert (s.pg_dsn, s.redis_url) == (env["TRADEPULSE_PG_DSN"], env["TRADEPULSE_REDIS_URL"])
    for shown in (repr(s), str(s), pretty_repr(s)):
        assert "s3cret" not in shown and "r3dis" not in shown
        assert "postgresql://app:***@db:5432/history" in shown


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:s3cret@db/h", "postgresql://app:***@db/h"),
        ("postgresql://app@db/h", "postgresql://app@db/h"),
        ("postgresql://db:5432/h", "postgresql://db:5432/h"),
        ("postgresql://app@db/h?password=s3cret&sslmode=require",
         "postgresql://app@db/h?password=***&sslmode=require"),
        ("host=db password=s3cret dbname=h", "host=db password=*** dbname=h"),
        ("host=db password = 's3 cret' dbname=h", "host=db password = *** dbname=h"),
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
    ],
)  # fmt: skip
def test_redact_password_every_dsn_form_password_hidden(url: str, shown: str) -> None:
    assert redact_password(url) == shown


def test_otel_settings_default_off_and_read(tmp_path: Path) -> None:
    d = load_settings({}, dotenv=tmp_path / "none")
    assert (d.otel_endpoint, d.otel_service_name) == ("", "")
    env = {"TRADEPULSE_OTEL_ENDPOINT": " http://otel-collector:4318 ",
           "TRADEPULSE_OTEL_SERVICE_NAME": "tp-worker-eu"}  # fmt: skip
    s = load_settings(env, dotenv=tmp_path / "none")
    assert (s.otel_endpoint, s.otel_service_name) == ("http://otel-collector:4318", "tp-worker-eu")


@pytest.mark.parametrize("value", ["otel-collector:4318", "grpc://x:4317", "http://", "http://a b"])
def test_otel_endpoint_not_an_http_url_rejected_naming_the_variable(
    tmp_path: Path, value: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"TRADEPULSE_OTEL_ENDPOINT": value}, dotenv=tmp_path / "none")
    assert "TRADEPULSE_OTEL_ENDPOINT" in str(info.value)
